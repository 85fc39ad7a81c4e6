"""Dihedral prediction pre-training configuration: the angle prediction settings under their own model type."""

from __future__ import annotations

from transformers import PretrainedConfig

from ..angle_prediction import AnglePredictionConfig


class DihedralPredictionConfig(AnglePredictionConfig):
    r"""Configuration of `DihedralPredictionForPreTraining`; the arguments of `AnglePredictionConfig`.

    Args:
        encoder_config, level: the encoder, as for every objective.
        num_sample (`int`, defaults to 512): edge triplets drawn per protein (paper App. D; GearNet
            `config/pretrain/dihedral_gearnet_edge.yaml`).
        num_class (`int`, defaults to 8): equal bins of [0, pi] the (unsigned) dihedral is classified into.
        num_mlp_layer (`int`, defaults to 2): depth of the head.
    """

    model_type = "dihedral_prediction"

    def __init__(
        self,
        encoder_config: PretrainedConfig | dict | None = None,
        level: str | None = None,
        num_sample: int = 512,
        num_class: int = 8,
        num_mlp_layer: int = 2,
        **kwargs,
    ):
        # Spelt out, not inherited: transformers 5 makes each config class a dataclass and generates an `__init__`
        # for one without its own, which would bypass AnglePredictionConfig's (encoder_config left a dict, the
        # level read as residue, no validation).
        super().__init__(encoder_config, level, num_sample, num_class, num_mlp_layer, **kwargs)
