"""Torsional diffusion on side-chain torsions (paper Table 9): pre-training configuration."""

from __future__ import annotations

import math

import torch
from transformers import PretrainedConfig

from ..denoising_score_matching.configuration_denoising_score_matching import log_linear_levels
from ..pretraining_utils import PreTrainingConfig


class TorsionalDiffusionConfig(PreTrainingConfig):
    r"""Configuration of `TorsionalDiffusionForPreTraining`: an atom-level encoder plus a torsion-score head.

    The paper gives no numbers for this variant; the noise scales are those of torsional diffusion (Jing et al.
    2022, `sigma_min = 0.01 pi`, `sigma_max = pi`), on 50 log-linear levels as denoising score matching here.

    Args:
        encoder_config (`PretrainedConfig` or `dict`, *optional*): an atom-level encoder's configuration (a dict
            needs its `model_type`); defaults to the atom GearNet-Edge.
        level (`str`, *optional*): accepted for old configs; must be `"atom"`, the encoder's level.
        sigma_begin, sigma_end, num_noise_level (defaults 0.01 pi, pi, 50): wrapped-Gaussian scales in radians.
        skip_proline (`bool`, defaults to `True`): never noise proline (rotating its chis opens the ring), as
            SiamDiff's conformer does.
        num_mlp_layer (`int`, defaults to 3): depth of the head.
    """

    model_type = "torsional_diffusion"

    def __init__(
        self,
        encoder_config: PretrainedConfig | dict | None = None,
        level: str | None = None,
        sigma_begin: float = 0.01 * math.pi,
        sigma_end: float = math.pi,
        num_noise_level: int = 50,
        skip_proline: bool = True,
        num_mlp_layer: int = 3,
        **kwargs,
    ):
        if encoder_config is None:
            encoder_config = {"model_type": "gearnet", "level": "atom"}
        if not 0 < sigma_begin <= sigma_end or num_noise_level < 1:
            raise ValueError("need 0 < sigma_begin <= sigma_end and num_noise_level >= 1")
        self.sigma_begin, self.sigma_end, self.num_noise_level = sigma_begin, sigma_end, num_noise_level
        self.skip_proline, self.num_mlp_layer = skip_proline, num_mlp_layer
        super().__init__(encoder_config, level, **kwargs)
        if self.level != "atom":
            raise ValueError("torsional diffusion needs an atom-level encoder (side-chain atoms are its inputs)")

    @property
    def sigmas(self) -> torch.Tensor:
        """(num_noise_level,) float64 noise scales in radians."""
        return log_linear_levels(self.sigma_begin, self.sigma_end, self.num_noise_level)
