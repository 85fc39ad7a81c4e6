"""Exports of a pre-training stage: the whole pre-training model, the encoder alone with its processor config and
a model card listing the run's settings and final metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from torch import nn

from ..hub import BUNDLED_DATA_WARNING, build_model_card
from .config import BUNDLED_SOURCE, SCHEDULE_KEYS, PretrainConfig
from .objective import encoder_of, objective_title
from .stream import make_processor


def export_stage(accelerator: Accelerator, config: PretrainConfig, index: int, model: nn.Module,
                 metrics: dict[str, float], repo_id: str | None = None) -> Path:  # fmt: skip
    """Save ``{stage}/model`` (whole pre-training model) and ``{stage}/encoder`` (encoder, processor config and
    model card); return the stage folder. The encoder is the submodule named by the objective's
    ``base_model_prefix`` (``encoder`` for every objective of the package)."""
    stage_dir = Path(config.output_dir) / config.stage_name(index)
    state = accelerator.get_state_dict(model)  # collective: gathers the full weights under FSDP/DeepSpeed
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        encoder = encoder_of(unwrapped)
        processor = make_processor(config, training=False)
        prefix = f"{unwrapped.base_model_prefix}."
        encoder_state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        unwrapped.save_pretrained(stage_dir / "model", state_dict=dict(state))  # it empties the dict it gets
        encoder.save_pretrained(stage_dir / "encoder", state_dict=encoder_state)
        for folder in ("model", "encoder"):
            processor.save_pretrained(stage_dir / folder)
        settings = run_settings(config, index, accelerator)
        steps = config.stages[index].max_steps
        # metrics of the last log window of this stage; proteins and epoch count from the stage start
        card_metrics = {"total_steps": config.global_step(index, steps), "stage_steps": steps, **metrics}
        summary = {"settings": settings, "metrics": card_metrics}
        (stage_dir / "model" / "training_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        card = build_model_card(
            encoder.config,
            title=config.export.title or f"{objective_title(config)} {encoder.config.model_type} encoder",
            description=config.export.description or _card_description(config, index),
            repo_id=repo_id or config.export.push_to_hub or "path/to/this/folder",
            settings=settings, metrics=card_metrics, datasets=_hub_datasets(config),
            base_model=config.model.encoder_from or config.model.init_from,
            tags=[objective_title(config).lower(), f"{config.level}-level"],
            warning=BUNDLED_DATA_WARNING if BUNDLED_SOURCE in config.data.sources else None,
        )  # fmt: skip
        card.save(stage_dir / "encoder" / "README.md")
    accelerator.wait_for_everyone()
    return stage_dir


def run_settings(config: PretrainConfig, last_stage: int, accelerator: Accelerator) -> dict[str, Any]:
    """Return the run's settings as shown in the model card (stages up to ``last_stage``)."""
    data, opt, train = config.data, config.optimizer, config.training
    stages = []
    for i in range(last_stage + 1):
        s = config.stages[i]
        schedule = ", ".join(f"{k}={getattr(s, k)}" for k in SCHEDULE_KEYS if getattr(s, k) is not None)
        stages.append(f"{config.stage_name(i)}: {s.max_steps} steps" + (f" ({schedule})" if schedule else ""))
    per_step = data.batch_size * accelerator.num_processes * train.gradient_accumulation_steps
    return {
        "objective": objective_title(config),
        "encoder": dict(config.model.encoder),  # the model card shows it as JSON; the summary keeps lists as lists
        "stages": "; ".join(stages),
        "data sources": ", ".join(data.sources),
        "crop": f"{config.crop_length} residues, {'random' if data.random_crop else 'first'} window",
        "batch": f"{data.batch_size} per process x {accelerator.num_processes} processes x "
                 f"{train.gradient_accumulation_steps} accumulation = {per_step} proteins per step",
        "optimizer": f"{opt.name} lr {opt.learning_rate:g}, weight decay {opt.weight_decay:g}, {opt.lr_scheduler} "
                     f"schedule, warmup {opt.warmup_steps}",
        "gradient clipping": train.max_grad_norm or "none",
        "mixed precision": accelerator.mixed_precision,
        "hardware": f"{accelerator.num_processes} x {accelerator.device.type}",
        "seed": config.seed,
    }  # fmt: skip


def _card_description(config: PretrainConfig, index: int) -> str:
    cite = " (Zhang et al., NeurIPS 2023)" if config.model.objective == "siamdiff" else ""
    return (f"A {config.level}-level protein structure encoder pre-trained with {objective_title(config)}{cite} "
            f"using siamdiff-hf; this export ends stage {index + 1} of {len(config.stages)} "
            f"({config.stage_name(index)}).")  # fmt: skip


def _hub_datasets(config: PretrainConfig) -> list[str] | None:
    found = [s[len("hf://datasets/"):].split("@")[0].split("/", 2)[:2] for s in config.data.sources
             if s.startswith("hf://datasets/")]  # fmt: skip
    return ["/".join(parts) for parts in found] or None
