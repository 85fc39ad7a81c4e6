"""The model card of a fine-tuned model: results as ``model-index`` metadata (shown by the Hub), the data source,
the base encoder and the run's config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .finetune_config import LOCAL_TASKS, FinetuneConfig, task_info

# Hub task types of the head levels (the Hub's `model-index` vocabulary)
HUB_TASK_TYPES = {"protein": "text-classification", "residue": "token-classification", "pair": "text-classification"}
AUTO_CLASSES = {"protein": "AutoModelForSequenceClassification", "residue": "AutoModelForTokenClassification"}


def finetune_model_card(config: FinetuneConfig, summary: dict[str, Any], folder: Path) -> Any:
    """Return the `huggingface_hub.ModelCard` of a fine-tuned model folder from the run's summary."""
    from huggingface_hub import EvalResult
    from transformers import AutoConfig

    from ..hub import BUNDLED_DATA_WARNING, build_model_card
    from .config import BUNDLED_SOURCE

    task = task_info(config.data.task)
    model_config = AutoConfig.from_pretrained(folder)
    finetuned = summary["finetuned"]
    seeds = sorted(finetuned["seeds"], key=int)
    test_mean, test_std = finetuned["mean"]["test"], finetuned["std"]["test"]
    reported = [name for name in task.metrics if name in test_mean] or sorted(test_mean)
    metrics = {f"test {name}": f"{test_mean[name]:.4f} ± {test_std[name]:.4f}" for name in reported}
    metrics.update({f"valid {task.metric}": f"{finetuned['mean']['valid'].get(task.metric, float('nan')):.4f}"})
    if "random_init" in summary:
        baseline = summary["random_init"]["mean"]["test"]
        metrics.update({f"test {n}, random encoder": f"{baseline[n]:.4f}" for n in reported if n in baseline})
    base = config.model.encoder
    settings = {
        "task": f"{task.name} ({task.level} level, {task.problem_type}, {task.num_labels} labels)",
        "data": task.source,
        "base encoder": "random initialisation" if config.model.random_init else base,
        "selection": f"best validation {task.metric} epoch; its test metrics (seeds {', '.join(seeds)})",
        "exported seed": str(summary["model"]["seed"]),
        "encoder": "frozen" + (" (cached embeddings)" if config.model.cache_embeddings else "")
        if config.model.freeze_encoder else "fine-tuned",
        "config": json.dumps({"data": config.data.__dict__, "model": config.model.__dict__,
                              "training": config.training}, default=str),
    }  # fmt: skip
    card = build_model_card(
        model_config,
        title=config.export.title or f"{type(model_config).__name__.removesuffix('Config')} fine-tuned on {task.name}",
        description=config.export.description or (
            f"A {model_config.model_type} structure encoder with a {task.level}-level head, fine-tuned on "
            f"{task.name} ({task.source}) with siamdiff-hf following the SiamDiff downstream protocol. Results: "
            f"test metrics at the best validation epoch, mean ± std over seeds {', '.join(seeds)}."
        ),
        repo_id=config.export.push_to_hub or "path/to/this/folder",
        settings=settings, metrics=metrics,
        base_model=None if config.model.random_init or Path(base).exists() else base,
        tags=["fine-tuned", task.name],
        warning=BUNDLED_DATA_WARNING if task.name in LOCAL_TASKS and BUNDLED_SOURCE in config.data.structures else None,
    )  # fmt: skip
    card.data.model_name = card.data.model_name or config.export.push_to_hub or folder.name
    card.data.pipeline_tag = None
    card.data.eval_results = [
        EvalResult(task_type=HUB_TASK_TYPES[task.level], task_name=task.name, dataset_type=f"siamdiff-hf/{task.name}",
                   dataset_name=task.source, dataset_split="test", metric_type=name, metric_name=f"test {name}",
                   metric_value=round(float(test_mean[name]), 4))
        for name in reported
    ]  # fmt: skip
    auto = AUTO_CLASSES.get(task.level)
    if auto:  # the generic card shows the encoder's use; a fine-tuned model loads with its head's Auto class
        card.text = card.text.replace("import AutoModel\n", f"import {auto}\n").replace(
            "AutoModel.from_pretrained", f"{auto}.from_pretrained").replace(
            "outputs.protein_embeddings", "outputs.logits")  # fmt: skip
    return card
