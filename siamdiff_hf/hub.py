"""Model cards and Hub uploads for exported encoders, pre-training and fine-tuned models."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

CITATION = """@inproceedings{zhang2023siamdiff,
  title     = {Pre-Training Protein Encoders via Siamese Sequence-Structure Diffusion Trajectory Prediction},
  author    = {Zhang, Zuobai and Xu, Minghao and Lozano, Aur{\\'e}lie and Chenthamarakshan, Vijil and Das, Payel
               and Tang, Jian},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2023}
}"""

# What a model trained on the package's bundled structures (the quickstart) can and cannot do.
BUNDLED_DATA_WARNING = (
    "This model was trained on the six PDB chains bundled with siamdiff-hf (the quickstart). Six proteins teach "
    "an encoder nothing useful: use it to try the pipeline, not as features."
)

_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}
{% if warning %}
> **Warning:** {{ warning }}
{% endif %}
{{ description }}

## Use

```python
{{ usage }}
```

## Architecture

```json
{{ architecture }}
```
{% if settings %}
## Training settings

| setting | value |
|---|---|
{% for key, value in settings.items() %}| {{ key }} | {{ value }} |
{% endfor %}{% endif %}{% if results %}
## Results

| task | dataset | split | metric | value |
|---|---|---|---|---|
{% for row in results %}| {{ row | join(" | ") }} |
{% endfor %}{% endif %}{% if metrics %}
## Final metrics

| metric | value |
|---|---|
{% for key, value in metrics.items() %}| {{ key }} | {{ value }} |
{% endfor %}{% endif %}{% if run_statistics %}
## Training run

| statistic | value |
|---|---|
{% for key, value in run_statistics.items() %}| {{ key }} | {{ value }} |
{% endfor %}{% endif %}
## Citation

```bibtex
{{ citation }}
```
"""

# Logged values that describe the run rather than the objective: steps, epochs, counts, learning rate, speed.
_RUN_STATISTIC = re.compile(r"(^|_)(lr|learning_rate|steps?|epoch|proteins|skipped\w*|grad_norm)$|per_second|_per_s$")

# Hub ids of the released ESM-2 models (fair-esm `esm/pretrained.py` names = `facebook/` repos), by
# (layers, hidden size).
_ESM2_HUB_IDS = {
    (6, 320): "facebook/esm2_t6_8M_UR50D",
    (12, 480): "facebook/esm2_t12_35M_UR50D",
    (30, 640): "facebook/esm2_t30_150M_UR50D",
    (33, 1280): "facebook/esm2_t33_650M_UR50D",
    (36, 2560): "facebook/esm2_t36_3B_UR50D",
    (48, 5120): "facebook/esm2_t48_15B_UR50D",
}


def model_title(config: Any) -> str:
    """Return a readable name of an encoder config, e.g. ``GearNet-Edge (residue level, 6 x 512)``."""
    config = getattr(config, "encoder_config", config)
    model_type = config.model_type
    if model_type == "gearnet":
        edges = getattr(config, "edge_message_passing", bool(getattr(config, "edge_input_dim", 0)))
        dims = list(config.hidden_dims)
        width = f"{len(dims)} x {dims[0]}" if len(set(dims)) == 1 else "-".join(map(str, dims))
        return f"GearNet{'-Edge' if edges else ''} ({config.level} level, {width})"
    if model_type == "gvp":
        return f"GVP-GNN (atom level, {config.num_layers} layers)"
    if model_type == "esm_gearnet":
        esm = config.esm_config
        return f"ESM-2 ({esm.num_hidden_layers} layers, {esm.hidden_size} wide) + {model_title(config.gearnet_config)}"
    return model_type


def esm_base_model(config: Any) -> str | None:
    """Return the Hub id of the released ESM-2 inside an ESM-GearNet / ESM config, or None (no ESM, other size)."""
    config = getattr(config, "encoder_config", config)
    esm = getattr(config, "esm_config", config)
    if getattr(esm, "model_type", None) != "esm":
        return None
    return _ESM2_HUB_IDS.get((esm.num_hidden_layers, esm.hidden_size))


def _usage(config: Any, auto_class: str, repo_id: str, pretraining: bool) -> str:
    if auto_class == "AutoModel":
        result = f"outputs.protein_embeddings  # (num_proteins, {getattr(config, 'output_dim', 'D')})"
    elif pretraining:
        result = "outputs.loss  # one SiamDiff step: loss, structure_loss, sequence_loss, sequence_accuracy"
    else:
        result = "outputs.logits"
    return f"""import siamdiff_hf  # registers the model classes with transformers
from transformers import {auto_class}
from siamdiff_hf import ProteinStructureProcessor

processor = ProteinStructureProcessor.from_pretrained("{repo_id}")
model = {auto_class}.from_pretrained("{repo_id}")
outputs = model(**processor(["my_protein.pdb"], return_tensors="pt"))
{result}"""


def _result_row(r: EvalResult) -> list[Any]:
    name = r.metric_name or r.metric_type
    return [r.task_name or r.task_type, r.dataset_name, r.dataset_split or "", name, _format(r.metric_value)]


def _format(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple, dict)):
        return f"`{json.dumps(value, default=str)}`"
    return value


def _eval_result(result: EvalResult | Mapping[str, Any]) -> EvalResult:
    return result if isinstance(result, EvalResult) else EvalResult(**result)


def build_model_card(
    config: Any,
    *,
    title: str | None = None,
    description: str,
    repo_id: str = "path/to/this/folder",
    settings: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    datasets: Sequence[str] | None = None,
    base_model: str | None = None,
    tags: Sequence[str] | None = None,
    results: Sequence[EvalResult | Mapping[str, Any]] | None = None,
    warning: str | None = None,
    pipeline_tag: str | None = "feature-extraction",
    auto_class: str | None = None,
    usage: str | None = None,
) -> ModelCard:
    """Return a `huggingface_hub.ModelCard` describing an exported model, its run settings and final metrics.

    Args:
        config: the model's config (an encoder's, a `SiamDiffConfig`, or a task model's).
        title: the card's heading; default `model_title(config)`.
        description: a paragraph under the title.
        settings: run settings (table); lists and dicts are shown as JSON.
        metrics: logged final values; the objective's metrics go to "Final metrics", run statistics (steps,
            epochs, counts, learning rate, throughput) to their own "Training run" table.
        datasets, base_model: Hub ids for the card's metadata (`base_model`: the model this one was converted
            or fine-tuned from). Local paths are left out (the Hub accepts only repo ids).
        results: evaluation results for the card's ``model-index`` (and a "Results" table): `EvalResult`s or dicts
            of its fields, e.g. ``{"task_type": "text-classification", "task_name": "EC", "dataset_type": "ec",
            "dataset_name": "EC (DeepFRI split)", "dataset_split": "test", "metric_type": "f1",
            "metric_name": "Fmax", "metric_value": 0.83}``.
        warning: a caution shown under the title (`BUNDLED_DATA_WARNING` for models trained on the bundled set).
        pipeline_tag: the Hub pipeline (None for pre-training models).
        auto_class: the transformers class of the usage snippet; default from the config (``AutoModel`` for
            encoders, ``AutoModelForPreTraining`` for configs with an ``encoder_config``), e.g.
            ``AutoModelForSequenceClassification`` for a fine-tuned model.
        usage: the whole usage snippet (Python), replacing the default one.
    """
    pretraining = hasattr(config, "encoder_config")
    auto_class = auto_class or ("AutoModelForPreTraining" if pretraining else "AutoModel")
    usage = usage or _usage(config, auto_class, repo_id, pretraining)
    evals = [_eval_result(r) for r in results or ()]
    if title is None:
        title = f"{model_title(config)}, {config.model_type} pre-training model" if pretraining else model_title(config)
    encoder_type = getattr(getattr(config, "encoder_config", None), "model_type", None)
    all_tags = ["siamdiff-hf", "protein", "protein-structure", config.model_type, encoder_type, *(tags or [])]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline_tag,
        license="apache-2.0",
        tags=list(dict.fromkeys(tag for tag in all_tags if tag)),
        datasets=[d for d in datasets or () if _is_hub_id(d)] or None,
        base_model=base_model if base_model and _is_hub_id(base_model) else None,
        model_name=title if evals else None,
        eval_results=evals or None,
    )
    architecture = {k: v for k, v in config.to_diff_dict().items() if k != "transformers_version"}
    metrics = dict(metrics or {})
    run_statistics = {k: _format(metrics.pop(k)) for k in list(metrics) if _RUN_STATISTIC.search(k)}
    return ModelCard.from_template(
        card_data,
        template_str=_TEMPLATE,
        title=title,
        warning=warning,
        description=description,
        repo_id=repo_id,
        usage=usage.strip(),
        architecture=json.dumps(architecture, indent=2, default=str),
        settings={k: _format(v) for k, v in (settings or {}).items()},
        results=[_result_row(r) for r in evals],
        metrics={k: _format(v) for k, v in metrics.items()},
        run_statistics=run_statistics,
        citation=CITATION,
    )


def _is_hub_id(name: str) -> bool:
    """Whether ``name`` looks like a Hub repo id (``owner/name``), not a local path."""
    return bool(re.fullmatch(r"[\w.\-]+/[\w.\-]+", name)) and not Path(name).exists()


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload siamdiff-hf model", api: HfApi | None = None) -> str:  # fmt: skip
    """Upload an exported folder (weights, configs and *our* README.md model card) to a Hub model repo.

    transformers' `push_to_hub` writes its own README.md over ours, so the folder is uploaded as it is instead.
    Returns the URL of the commit.
    """
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder} has no config.json: export a model with save_pretrained first")
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=commit_message)
    return str(getattr(info, "commit_url", info))
