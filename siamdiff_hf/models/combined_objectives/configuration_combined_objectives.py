"""A weighted sum of pre-training objectives on one encoder (paper Table 8): configuration."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

from ..pretraining_utils import PreTrainingConfig

DEFAULT_OBJECTIVES = ({"objective": "residue_type_prediction"}, {"objective": "distance_prediction"})


class CombinedObjectivesConfig(PreTrainingConfig):
    r"""Configuration of `CombinedObjectivesForPreTraining`: one encoder, the heads of several objectives.

    Args:
        encoder_config (`PretrainedConfig` or `dict`, *optional*): any registered encoder's configuration (a dict
            needs its `model_type`); defaults to the residue GearNet-Edge. Every objective uses it.
        level (`str`, *optional*): accepted for old configs; must equal the encoder's level.
        objectives (`list[dict]`, *optional*): one dict per objective: ``objective`` (its `model_type`, e.g.
            `"distance_prediction"`), optional ``weight`` (default 1.0) and that objective's settings. Defaults
            to residue type + distance prediction (the paper's Table 8 rows combine residue type prediction with
            distance, angle or dihedral prediction).
    """

    model_type = "combined_objectives"

    def __init__(
        self,
        encoder_config: PretrainedConfig | dict | None = None,
        level: str | None = None,
        objectives: list[dict[str, Any]] | None = None,
        **kwargs,
    ):
        super().__init__(encoder_config, level, **kwargs)
        self.objectives = [dict(o) for o in (objectives if objectives is not None else DEFAULT_OBJECTIVES)]
        if not self.objectives:
            raise ValueError("objectives is empty: give at least one {'objective': <model_type>, ...}")
        for i, entry in enumerate(self.objectives):
            name = entry.get("objective")
            if name is None or name == self.model_type:
                raise ValueError(f"objectives[{i}] needs an 'objective' (a pre-training model_type), got {name!r}")
        self.objective_configs()  # validates each objective's settings now

    def objective_configs(self) -> list[tuple[float, PretrainedConfig]]:
        """Return (weight, config) of each objective, every config over this config's encoder."""
        built = []
        for entry in self.objectives:
            settings = {k: v for k, v in entry.items() if k not in ("objective", "weight")}
            config = AutoConfig.for_model(entry["objective"], encoder_config=self.encoder_config, **settings)
            built.append((float(entry.get("weight", 1.0)), config))
        return built
