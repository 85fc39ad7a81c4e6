"""Angle prediction pre-training configuration (the dihedral one is the same with its own model type)."""

from __future__ import annotations

from transformers import PretrainedConfig

from ..pretraining_utils import PreTrainingConfig


class AnglePredictionConfig(PreTrainingConfig):
    r"""Configuration of `AnglePredictionForPreTraining`: an encoder plus a binned-angle head.

    Args:
        encoder_config, level: the encoder, as for every objective (`PreTrainingConfig`).
        num_sample (`int`, defaults to 512): paths drawn per protein (paper App. D; GearNet
            `config/pretrain/angle_gearnet_edge.yaml` and `dihedral_gearnet_edge.yaml`).
        num_class (`int`, defaults to 8): equal bins of [0, pi] the angle is classified into.
        num_mlp_layer (`int`, defaults to 2): depth of the head (GearNet's configs).
    """

    model_type = "angle_prediction"

    def __init__(
        self,
        encoder_config: PretrainedConfig | dict | None = None,
        level: str | None = None,
        num_sample: int = 512,
        num_class: int = 8,
        num_mlp_layer: int = 2,
        **kwargs,
    ):
        if num_sample < 1 or num_class < 2:
            raise ValueError(f"need num_sample >= 1 and num_class >= 2, got {num_sample} and {num_class}")
        self.num_sample, self.num_class, self.num_mlp_layer = num_sample, num_class, num_mlp_layer
        super().__init__(encoder_config, level, **kwargs)
