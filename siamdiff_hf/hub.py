"""Model cards and Hub uploads for exported encoders and pre-training models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, ModelCard, ModelCardData

CITATION = """@inproceedings{zhang2023siamdiff,
  title     = {Pre-Training Protein Encoders via Siamese Sequence-Structure Diffusion Trajectory Prediction},
  author    = {Zhang, Zuobai and Xu, Minghao and Lozano, Aur{\\'e}lie and Chenthamarakshan, Vijil and Das, Payel
               and Tang, Jian},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2023}
}"""

_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ description }}

## Use

```python
import siamdiff_hf  # registers the model classes with transformers
from transformers import AutoModel
from siamdiff_hf import ProteinStructureProcessor

processor = ProteinStructureProcessor.from_pretrained("{{ repo_id }}")
model = AutoModel.from_pretrained("{{ repo_id }}")
outputs = model(**processor(["my_protein.pdb"], return_tensors="pt"))
outputs.protein_embeddings  # (num_proteins, {{ output_dim }})
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
{% endfor %}{% endif %}{% if metrics %}
## Final metrics

| metric | value |
|---|---|
{% for key, value in metrics.items() %}| {{ key }} | {{ value }} |
{% endfor %}{% endif %}
## Citation

```bibtex
{{ citation }}
```
"""


def build_model_card(
    config: Any,
    *,
    title: str,
    description: str,
    repo_id: str = "path/to/this/folder",
    settings: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    datasets: list[str] | None = None,
    base_model: str | None = None,
    tags: list[str] | None = None,
) -> ModelCard:
    """Return a `huggingface_hub.ModelCard` describing an exported model, its run settings and final metrics."""
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="feature-extraction",
        license="apache-2.0",
        tags=["siamdiff-hf", "protein", "protein-structure", config.model_type, *(tags or [])],
        datasets=datasets,
        base_model=base_model,
    )
    architecture = {k: v for k, v in config.to_diff_dict().items() if k != "transformers_version"}
    return ModelCard.from_template(
        card_data,
        template_str=_TEMPLATE,
        title=title,
        description=description,
        repo_id=repo_id,
        output_dim=getattr(config, "output_dim", "D"),
        architecture=json.dumps(architecture, indent=2, default=str),
        settings=settings or {},
        metrics={k: f"{v:.4g}" if isinstance(v, float) else v for k, v in (metrics or {}).items()},
        citation=CITATION,
    )


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
