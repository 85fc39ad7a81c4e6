"""The pre-training model of a run, built from the config's ``model:`` section for any registered objective.

An objective is a `PreTrainedModel` registered with `AutoModelForPreTraining` whose config nests the encoder's
(``encoder_config``) and whose forward is one training step returning a `ModelOutput` with ``loss`` first; its
other scalar tensor fields are the metrics the loop logs. SiamDiff is one; the loop needs nothing else about it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from accelerate.utils import set_seed
from torch import nn

from .config import SCHEDULE_KEYS, PretrainConfig


def build_stage_model(config: PretrainConfig, index: int) -> nn.Module:
    """Return the model stage ``index`` starts from: the previous stage's model (encoder and heads) with this
    stage's schedule, or for the first stage a new model (optionally initialised from ``init_from``/``encoder_from``
    or, for ESM-GearNet, ``sequence_model_from``)."""
    from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

    set_seed(config.seed + index)  # identical initial weights on every rank
    stage = config.stages[index]
    schedule = {k: getattr(stage, k) for k in SCHEDULE_KEYS if getattr(stage, k) is not None}
    if index > 0:
        previous = Path(config.output_dir) / config.stage_name(index - 1) / "model"
        return AutoModelForPreTraining.from_pretrained(previous, **schedule).train()
    settings = {**config.objective_settings, **schedule}
    if config.model.init_from:
        return AutoModelForPreTraining.from_pretrained(config.model.init_from, **settings).train()
    encoder_settings = dict(config.model.encoder)
    encoder = None
    if config.model.encoder_from:  # pretrained encoder weights; `model.encoder` keys override its config
        encoder_settings.pop("model_type", None)
        encoder = AutoModel.from_pretrained(config.model.encoder_from, **encoder_settings)
    elif config.model.sequence_model_from:  # ESM-GearNet: pre-trained ESM-2, new GearNet
        from ..models.esm_gearnet import EsmGearNetModel

        kwargs = {k: v for k, v in encoder_settings.items() if k not in ("model_type", "esm_config")}
        encoder = EsmGearNetModel.from_esm_pretrained(config.model.sequence_model_from, **kwargs)
    encoder_config = encoder.config if encoder is not None else encoder_settings
    objective_config = AutoConfig.for_model(config.model.objective, encoder_config=encoder_config, **settings)
    model = AutoModelForPreTraining.from_config(objective_config)
    if encoder is not None:
        encoder_of(model).load_state_dict(encoder.state_dict())
    return model.train()


def encoder_of(model: nn.Module) -> nn.Module:
    """Return the encoder inside a pre-training model (the submodule its ``base_model_prefix`` names)."""
    return getattr(model, model.base_model_prefix)


def takes_generator(model: nn.Module) -> bool:
    """Return whether the objective's forward accepts ``generator`` (the loop then passes a per-step one)."""
    return "generator" in inspect.signature(model.forward).parameters


def objective_title(config: PretrainConfig) -> str:
    """Return the objective's name as shown in model cards: SiamDiff, DiffPreT, or the model class's stem."""
    from transformers import CONFIG_MAPPING, MODEL_FOR_PRETRAINING_MAPPING

    if config.model.objective == "siamdiff":
        return "SiamDiff" if config.objective_settings.get("use_mutual_information", True) else "DiffPreT"
    model_class = MODEL_FOR_PRETRAINING_MAPPING[CONFIG_MAPPING[config.model.objective]]
    return model_class.__name__.removesuffix("ForPreTraining")


def scalar_metrics(output: Any) -> dict[str, float]:
    """Return every scalar (0-dimensional) tensor field of an objective's output, ``loss`` first, as floats."""
    return {name: float(value.detach()) for name, value in output.items()
            if hasattr(value, "ndim") and value.ndim == 0}  # fmt: skip
