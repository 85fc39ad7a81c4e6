"""Denoising score matching on pairwise distances: pre-training configuration."""

from __future__ import annotations

import math

import torch
from transformers import PretrainedConfig

from ..pretraining_utils import PreTrainingConfig


def log_linear_levels(begin: float, end: float, num_levels: int) -> torch.Tensor:
    """Return (num_levels,) float64 noise scales spaced log-linearly from `begin` to `end` (both included)."""
    return torch.exp(torch.linspace(math.log(begin), math.log(end), num_levels, dtype=torch.float64))


class DenoisingScoreMatchingConfig(PreTrainingConfig):
    r"""Configuration of `DenoisingScoreMatchingForPreTraining`: an encoder plus SiamDiff-shaped edge heads.

    Args:
        encoder_config, level: the encoder, as for every objective (`PreTrainingConfig`).
        sigma_begin, sigma_end, num_noise_level (defaults 0.01, 10.0, 50): noise scales in Angstrom, log-linear
            (paper App. D).
        num_mlp_layer (`int`, defaults to 3): depth of the `struct_mlp` and `dist_mlp` heads (SiamDiff's).
    """

    model_type = "denoising_score_matching"

    def __init__(
        self,
        encoder_config: PretrainedConfig | dict | None = None,
        level: str | None = None,
        sigma_begin: float = 0.01,
        sigma_end: float = 10.0,
        num_noise_level: int = 50,
        num_mlp_layer: int = 3,
        **kwargs,
    ):
        if not 0 < sigma_begin <= sigma_end or num_noise_level < 1:
            raise ValueError("need 0 < sigma_begin <= sigma_end and num_noise_level >= 1")
        self.sigma_begin, self.sigma_end, self.num_noise_level = sigma_begin, sigma_end, num_noise_level
        self.num_mlp_layer = num_mlp_layer
        super().__init__(encoder_config, level, **kwargs)

    @property
    def sigmas(self) -> torch.Tensor:
        """(num_noise_level,) float64 noise scales."""
        return log_linear_levels(self.sigma_begin, self.sigma_end, self.num_noise_level)
