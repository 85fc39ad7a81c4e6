"""SiamDiff / DiffPreT pre-training configuration."""

from __future__ import annotations

import math

from transformers import PretrainedConfig

from ...diffusion import STAGE_PRESETS
from ..pretraining_utils import PreTrainingConfig

# The paper's two-stage recipe (SiamDiff `config/pretrain/gearnet_1st.yaml` then `gearnet_2nd.yaml`; stage 2 starts
# from stage 1's weights). One table: `siamdiff_hf.diffusion.STAGE_PRESETS`, named here for the config's users.
STAGES = STAGE_PRESETS


class SiamDiffConfig(PreTrainingConfig):
    r"""Configuration of `SiamDiffForPreTraining`: an encoder plus the SiamDiff objective.

    Args:
        encoder_config (`PretrainedConfig` or `dict`, *optional*): configuration of any registered encoder
            (`GearNetConfig`, ...); a dict needs its `model_type`. Defaults to the residue GearNet-Edge. Its `level`
            (`"residue"` or `"atom"`) is the objective's level (`config.level` reads it).
        level (`str`, *optional*): accepted for older configs; must equal the encoder's level.
        use_mutual_information (`bool`, defaults to `True`): SiamDiff (two trajectories, cross prediction);
            `False` is DiffPreT (one trajectory, every loss counted twice, as the official code does).
        beta_start, beta_end, num_timesteps (defaults 1e-3, 0.1, 100): sigmoid beta schedule of the structure
            noise (stage 1; stage 2 is 1e-4, 1e-4, 5; see `STAGES`).
        gamma (`float`, defaults to 0.5): weight of the structure loss when both diffusions run; the sequence loss
            gets `1 - gamma`. With one diffusion switched off, the other's loss has weight 1.
        sequence_diffusion, structure_diffusion (`bool`, *optional*): switch the sequence (masking) or structure
            (coordinate noise) diffusion off (paper Table 3 "w/o seq. diff." / "w/o struct. diff.", Table 9
            "Sequence / Structure Diffusion" with `use_mutual_information=False`). Unset, they follow the official
            rule that `gamma = 1` turns sequence diffusion off and `gamma = 0` structure diffusion (SiamDiff
            `siamdiff/task.py` tests `gamma < 1` and `gamma > 0`); set, they must agree with a `gamma` of 0 or 1.
        fixed_timestep (`int`, *optional*): always use this noise level (0-based) instead of drawing one per
            protein: the paper's Table 3 "w/ small noise" (level 1 of 100: `fixed_timestep=0`) and "w/ large noise"
            (level 100: `fixed_timestep=99`).
        min_mask_rate, max_mask_rate (defaults 0.15, 1.0): sequence mask rate `min + (max - min)(t+1)/T`.
        num_mlp_layer (`int`, defaults to 3): depth of the `struct_mlp`, `dist_mlp` and `seq_mlp` heads.
        official_atom_masking (`bool`, defaults to `False`): at atom level, zero the residue one-hot of *every*
            atom, as the official code (and so the published atom checkpoints) did by mistake.
        conformer_std (`float`, *optional*): siamese conformer noise: Gaussian std in Angstrom at residue level
            (default 0.3), torsion std in radians at atom level (default 0.1 pi).
        skip_proline, resample_clashes (`bool`, default `True`): atom-level conformer extras the paper states
            (no torsion noise on proline; resample residues whose rotated atoms clash). Off = official code.
        clash_distance (`float`, defaults to 2.0): Angstrom below which two newly close atoms clash.
    """

    model_type = "siamdiff"

    def __init__(
        self,
        encoder_config: PretrainedConfig | dict | None = None,
        level: str | None = None,
        use_mutual_information: bool = True,
        beta_start: float = 1e-3,
        beta_end: float = 0.1,
        num_timesteps: int = 100,
        gamma: float = 0.5,
        min_mask_rate: float = 0.15,
        max_mask_rate: float = 1.0,
        num_mlp_layer: int = 3,
        official_atom_masking: bool = False,
        conformer_std: float | None = None,
        skip_proline: bool = True,
        resample_clashes: bool = True,
        clash_distance: float = 2.0,
        sequence_diffusion: bool | None = None,
        structure_diffusion: bool | None = None,
        fixed_timestep: int | None = None,
        **kwargs,
    ):
        super().__init__(encoder_config, level, **kwargs)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        self.sequence_diffusion = _switch("sequence_diffusion", sequence_diffusion, gamma < 1.0, gamma)
        self.structure_diffusion = _switch("structure_diffusion", structure_diffusion, gamma > 0.0, gamma)
        if not (self.sequence_diffusion or self.structure_diffusion):
            raise ValueError("sequence_diffusion and structure_diffusion are both off: nothing to learn")
        if fixed_timestep is not None and not 0 <= fixed_timestep < num_timesteps:
            raise ValueError(f"fixed_timestep must lie in [0, num_timesteps={num_timesteps}), got {fixed_timestep}")
        self.fixed_timestep = fixed_timestep
        self.use_mutual_information = use_mutual_information
        self.beta_start, self.beta_end, self.num_timesteps = beta_start, beta_end, num_timesteps
        self.gamma = gamma
        self.min_mask_rate, self.max_mask_rate = min_mask_rate, max_mask_rate
        self.num_mlp_layer = num_mlp_layer
        self.official_atom_masking = official_atom_masking
        self.conformer_std = conformer_std if conformer_std is not None else self.default_conformer_std(self.level)
        self.skip_proline, self.resample_clashes, self.clash_distance = skip_proline, resample_clashes, clash_distance

    @property
    def loss_weights(self) -> tuple[float, float]:
        """Return the (structure, sequence) loss weights: (gamma, 1 - gamma), or 1 for the only diffusion left."""
        if not self.sequence_diffusion:
            return 1.0, 0.0
        if not self.structure_diffusion:
            return 0.0, 1.0
        return self.gamma, 1.0 - self.gamma

    @staticmethod
    def default_conformer_std(level: str) -> float:
        """Return the paper's conformer noise: 0.3 A Gaussian (residue) or 0.1 pi rad torsion (atom)."""
        return 0.3 if level == "residue" else 0.1 * math.pi


def _switch(name: str, value: bool | None, by_gamma: bool, gamma: float) -> bool:
    """Return an explicit diffusion switch, or the one `gamma` implies; an explicit one must not contradict it."""
    if value is None:
        return by_gamma
    if value and not by_gamma:
        raise ValueError(f"{name}=True with gamma={gamma}: that loss would have weight 0")
    return bool(value)
