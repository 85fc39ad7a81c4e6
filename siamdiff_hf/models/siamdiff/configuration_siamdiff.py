"""SiamDiff / DiffPreT pre-training configuration."""

from __future__ import annotations

import math

from transformers import AutoConfig, PretrainedConfig

from ..gearnet import GearNetConfig

# Two-stage recipe of the paper (reference siamdiff_torchdrug §1.1): stage 2 starts from stage 1's weights.
STAGES: dict[int, dict] = {
    1: dict(beta_start=1e-3, beta_end=0.1, num_timesteps=100, gamma=0.5),
    2: dict(beta_start=1e-4, beta_end=1e-4, num_timesteps=5, gamma=0.2),
}


class SiamDiffConfig(PretrainedConfig):
    r"""Configuration of `SiamDiffForPreTraining`: an encoder plus the SiamDiff objective.

    Args:
        encoder_config (`PretrainedConfig` or `dict`, *optional*): configuration of any registered encoder
            (`GearNetConfig`, ...); a dict needs its `model_type`. Defaults to the residue GearNet-Edge.
        level (`str`, *optional*): `"residue"` or `"atom"`; defaults to the encoder's level.
        use_mutual_information (`bool`, defaults to `True`): SiamDiff (two trajectories, cross prediction);
            `False` is DiffPreT (one trajectory, every loss counted twice, as the official code does).
        beta_start, beta_end, num_timesteps (defaults 1e-3, 0.1, 100): sigmoid beta schedule of the structure
            noise (stage 1; stage 2 is 1e-4, 1e-4, 5; see `STAGES`).
        gamma (`float`, defaults to 0.5): weight of the structure loss; the sequence loss gets `1 - gamma`.
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
    sub_configs = {"encoder_config": AutoConfig}

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
        **kwargs,
    ):
        if encoder_config is None:
            encoder_config = GearNetConfig()
        elif isinstance(encoder_config, dict):
            encoder_config = dict(encoder_config)
            if "model_type" not in encoder_config:
                raise ValueError("encoder_config as a dict needs its 'model_type' (e.g. 'gearnet')")
            encoder_config = AutoConfig.for_model(encoder_config.pop("model_type"), **encoder_config)
        self.encoder_config = encoder_config
        self.level = level or getattr(encoder_config, "level", "residue")
        if self.level not in ("residue", "atom"):
            raise ValueError(f"level must be 'residue' or 'atom', got {self.level!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        self.use_mutual_information = use_mutual_information
        self.beta_start, self.beta_end, self.num_timesteps = beta_start, beta_end, num_timesteps
        self.gamma = gamma
        self.min_mask_rate, self.max_mask_rate = min_mask_rate, max_mask_rate
        self.num_mlp_layer = num_mlp_layer
        self.official_atom_masking = official_atom_masking
        self.conformer_std = conformer_std if conformer_std is not None else self.default_conformer_std(self.level)
        self.skip_proline, self.resample_clashes, self.clash_distance = skip_proline, resample_clashes, clash_distance
        super().__init__(**kwargs)

    @staticmethod
    def default_conformer_std(level: str) -> float:
        """Return the paper's conformer noise: 0.3 A Gaussian (residue) or 0.1 pi rad torsion (atom)."""
        return 0.3 if level == "residue" else 0.1 * math.pi
