"""Distance prediction pre-training configuration."""

from __future__ import annotations

from transformers import PretrainedConfig

from ..pretraining_utils import PreTrainingConfig


class DistancePredictionConfig(PreTrainingConfig):
    r"""Configuration of `DistancePredictionForPreTraining`: an encoder plus an edge-length head.

    Args:
        encoder_config, level: the encoder, as for every objective (`PreTrainingConfig`).
        num_sample (`int`, defaults to 256): edges drawn per protein (paper App. D; GearNet
            `config/pretrain/dis_gearnet_edge.yaml`).
        num_mlp_layer (`int`, defaults to 2): depth of the head (GearNet's config).
    """

    model_type = "distance_prediction"

    def __init__(
        self,
        encoder_config: PretrainedConfig | dict | None = None,
        level: str | None = None,
        num_sample: int = 256,
        num_mlp_layer: int = 2,
        **kwargs,
    ):
        if num_sample < 1:
            raise ValueError(f"num_sample must be >= 1, got {num_sample}")
        self.num_sample, self.num_mlp_layer = num_sample, num_mlp_layer
        super().__init__(encoder_config, level, **kwargs)
