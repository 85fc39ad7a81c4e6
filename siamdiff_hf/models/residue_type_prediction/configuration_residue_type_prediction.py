"""Residue type prediction (masked residue types) pre-training configuration."""

from __future__ import annotations

from transformers import PretrainedConfig

from ..pretraining_utils import PreTrainingConfig


class ResidueTypePredictionConfig(PreTrainingConfig):
    r"""Configuration of `ResidueTypePredictionForPreTraining`: an encoder plus a residue-type head.

    Args:
        encoder_config, level: the encoder, as for every objective (`PreTrainingConfig`).
        mask_rate (`float`, defaults to 0.15): fraction of each protein's residues drawn for masking (paper App. D;
            GearNet `config/pretrain/attr_gearnet_edge.yaml`).
        num_mlp_layer (`int`, defaults to 2): depth of the head (GearNet's config).
    """

    model_type = "residue_type_prediction"

    def __init__(
        self,
        encoder_config: PretrainedConfig | dict | None = None,
        level: str | None = None,
        mask_rate: float = 0.15,
        num_mlp_layer: int = 2,
        **kwargs,
    ):
        if not 0.0 < mask_rate <= 1.0:
            raise ValueError(f"mask_rate must lie in (0, 1], got {mask_rate}")
        self.mask_rate, self.num_mlp_layer = mask_rate, num_mlp_layer
        super().__init__(encoder_config, level, **kwargs)
