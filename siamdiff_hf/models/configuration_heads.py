"""Options of the fine-tuning heads (`models/heads.py`), stored in every encoder configuration.

`num_labels` and `problem_type` are `PretrainedConfig`'s own. The options below ride along in the encoder's config
(so `AutoModelForSequenceClassification.from_pretrained(encoder_dir, num_labels=..., num_mlp_layer=2)` works and
a saved head reloads with its settings); a bare encoder ignores them.
"""

from __future__ import annotations

from typing import Any

POOLINGS = ("mean", "ca")
# transformers' `PretrainedConfig.problem_type` values (annotated there, not checked: a misspelt one would silently
# select no loss in transformers' heads, and BCE here)
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# The official downstream head: TorchDrug's `MultiLayerPerceptron` with `num_mlp_layer=3` (SiamDiff
# `config/{res,atom}/*.yaml`), no dropout (TorchDrug `torchdrug/layers/common.py` defaults).
HEAD_DEFAULTS: dict[str, Any] = dict(
    num_mlp_layer=3, classifier_dropout=0.0, freeze_encoder=False, residue_pooling="ca", pair_pooling="mean",
    regression_mean=None, regression_std=None,
)  # fmt: skip

HEAD_OPTIONS_DOC = """
        num_mlp_layer (`int`, defaults to 3): fine-tuning heads: layers of the MLP on top of the encoder (hidden
            width = the encoder's output width, ReLU, no batch norm), TorchDrug's `MultiLayerPerceptron` as the
            official downstream tasks use it.
        classifier_dropout (`float`, defaults to 0.0): fine-tuning heads: dropout after each hidden layer of the MLP
            (TorchDrug's placement; official value 0).
        freeze_encoder (`bool`, defaults to `False`): fine-tuning heads: the encoder gets `requires_grad=False`,
            stays in eval mode (batch-norm statistics fixed) and runs without gradients; only the MLP trains.
        residue_pooling (`str`, defaults to `"ca"`): residue heads, which node represents a residue: `"ca"` the node
            at its CA atom (official RES, SiamDiff `siamdiff/task.py`), `"mean"` the mean of its nodes. Identical at
            residue level.
        pair_pooling (`str`, defaults to `"mean"`): pair heads, each side's embedding: `"mean"` over the nodes of
            the selected residues (official MSP), `"ca"` the nodes at the selected residues' CA atoms (official
            PIP; averaged if several residues are selected).
        regression_mean, regression_std (`float` or `list[float]`, *optional*): regression heads: standardise the
            targets as the official PSR task does (TorchDrug `PropertyPrediction(normalization=True)`): the MLP
            predicts ``(y - mean) / std``, the loss is the MSE in that scale and `logits` are de-standardised
            (``mlp * std + mean``). Use the training labels' mean and (unbiased) std. Unset: plain MSE."""


def set_head_options(config: Any, kwargs: dict[str, Any]) -> None:
    """Pop the head options from an encoder config's `kwargs` (defaults when absent), validate and set them.

    `problem_type` stays in `kwargs` (it is `PretrainedConfig`'s own) but is checked here.
    """
    if kwargs.get("problem_type") not in (None, *PROBLEM_TYPES):
        raise ValueError(f"problem_type must be one of {PROBLEM_TYPES} or None, got {kwargs['problem_type']!r}")
    for key, default in HEAD_DEFAULTS.items():
        setattr(config, key, kwargs.pop(key, default))
    if int(config.num_mlp_layer) < 1:
        raise ValueError(f"num_mlp_layer must be at least 1, got {config.num_mlp_layer}")
    if not 0.0 <= float(config.classifier_dropout) < 1.0:
        raise ValueError(f"classifier_dropout must lie in [0, 1), got {config.classifier_dropout}")
    for key in ("residue_pooling", "pair_pooling"):
        if getattr(config, key) not in POOLINGS:
            raise ValueError(f"{key} must be one of {POOLINGS}, got {getattr(config, key)!r}")
    if (config.regression_mean is None) != (config.regression_std is None):
        raise ValueError("regression_mean and regression_std must be given together (or neither)")
    if config.regression_std is not None and min(_as_list(config.regression_std)) <= 0:
        raise ValueError(f"regression_std must be positive, got {config.regression_std}")
    config.num_mlp_layer = int(config.num_mlp_layer)
    config.classifier_dropout = float(config.classifier_dropout)
    config.freeze_encoder = bool(config.freeze_encoder)


def _as_list(value: Any) -> list[float]:
    return [float(v) for v in value] if isinstance(value, list | tuple) else [float(value)]
