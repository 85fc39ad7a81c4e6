"""The downstream metrics of SiamDiff / GearNet, as the official evaluation defines them, and Trainer glue.

Every metric takes torch tensors (numpy arrays and lists are accepted too), computes in float64 and returns a Python
float. All are vectorised: one sort per call, no loop over thresholds, proteins or groups.

Definitions follow TorchDrug 0.2.1 `torchdrug/metrics/metric.py` (`area_under_roc`, `area_under_prc`, `f1_max`,
`spearmanr`, `accuracy`) and ATOM3D `examples/psr/cnn3d/train.py::compute_correlations` (per-target Spearman).
They agree with the official functions whenever predictions have no ties. With ties, TorchDrug's values depend on
the arbitrary order `argsort` gives tied scores (a threshold can fall between two equal scores); here a threshold
is only ever placed between distinct scores, which is what scikit-learn and scipy do (tested against both).
Undefined values (AUROC of a single class, Spearman of a constant) are NaN, where TorchDrug returns 0.

`compute_metrics_for_task` builds the `compute_metrics` callable of `transformers.Trainer` for each paper task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .protein.constants import IGNORE_INDEX

__all__ = [
    "TASK_METRICS",
    "accuracy",
    "auprc",
    "auprc_micro",
    "auroc",
    "binary_metrics",
    "compute_metrics_for_task",
    "f1_max",
    "mae",
    "mean_spearman",
    "multilabel_metrics",
    "regression_metrics",
    "residue_metrics",
    "rmse",
    "spearman",
]


def _tensor(x: Any, name: str) -> torch.Tensor:
    """Return `x` as a float64 CPU tensor (tensors, numpy arrays and lists)."""
    try:
        return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu().double()
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}") from err


def _pair(pred: Any, target: Any, ndim: int | None = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `pred`, `target` as float64 tensors of equal shape (flattened to 1-D when `ndim` is 1)."""
    pred, target = _tensor(pred, "pred"), _tensor(target, "target")
    if ndim == 1:
        pred, target = pred.reshape(-1), target.reshape(-1)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if ndim is not None and pred.ndim != ndim:
        raise ValueError(f"pred must be {ndim}-D, got shape {tuple(pred.shape)}")
    return pred, target


def _group_ends(sorted_values: torch.Tensor) -> torch.Tensor:
    """Return a bool mask of the last position of each run of equal values in a sorted 1-D tensor."""
    ends = torch.ones_like(sorted_values, dtype=torch.bool)
    ends[:-1] = sorted_values[1:] != sorted_values[:-1]
    return ends


def _mean_ranks(values: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Return 1-based ascending ranks of `values`, ties at their mean rank, ranked within each of `groups` if given."""
    n = values.shape[0]
    order = torch.argsort(values, stable=True)
    if groups is not None:
        order = order[torch.argsort(groups[order], stable=True)]  # sort by (group, value)
    position = torch.arange(n, dtype=torch.float64)
    sorted_values = values[order]
    new_run = torch.ones(n, dtype=torch.bool)
    new_run[1:] = sorted_values[1:] != sorted_values[:-1]
    if groups is not None:
        sorted_groups = groups[order]
        group_start = torch.ones(n, dtype=torch.bool)
        group_start[1:] = sorted_groups[1:] != sorted_groups[:-1]
        new_run |= group_start
        first_of_group = torch.cummax(torch.where(group_start, position, 0.0), 0).values
        position = position - first_of_group
    run = torch.cumsum(new_run, 0) - 1
    run_rank = torch.zeros(int(run[-1]) + 1 if n else 0, dtype=torch.float64).index_add_(0, run, position + 1)
    run_size = torch.bincount(run).double()
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[order] = (run_rank / run_size)[run]
    return ranks


# --- binary classification ----------------------------------------------------------------------------------------
def auroc(pred: Any, target: Any) -> float:
    """Area under the ROC curve of scores `pred` (n,) for binary `target` (n,); ties count one half.

    TorchDrug's `area_under_roc`: the fraction of (positive, negative) pairs whose positive is ranked higher
    (Mann-Whitney U / (P N)). NaN when `target` has a single class.
    """
    pred, target = _pair(pred, target)
    positive = target > 0.5
    num_pos, num_neg = int(positive.sum()), int((~positive).sum())
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    rank_sum = _mean_ranks(pred)[positive].sum()
    return float((rank_sum - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


def auprc(pred: Any, target: Any) -> float:
    """Area under the precision-recall curve (average precision) of scores `pred` (n,) for binary `target` (n,).

    TorchDrug's `area_under_prc`: the mean over positives of the precision at the positive's rank. Tied scores
    form one threshold (each positive of the tie gets the precision at the end of the tie, as scikit-learn's
    `average_precision_score`). NaN without positives.
    """
    pred, target = _pair(pred, target)
    positive = (target > 0.5).double()
    num_pos = positive.sum()
    if num_pos == 0:
        return float("nan")
    order = torch.argsort(pred, descending=True, stable=True)
    hits = torch.cumsum(positive[order], 0)
    ends = _group_ends(pred[order])
    hits_at_end = hits[ends]
    new_hits = torch.diff(hits_at_end, prepend=hits_at_end.new_zeros(1))
    precision = hits_at_end / (torch.nonzero(ends).flatten() + 1)
    return float((precision * new_hits).sum() / num_pos)


def auprc_micro(pred: Any, target: Any) -> float:
    """`auprc` over all (protein, term) pairs of `pred` (N, C) and multi-hot `target` (N, C) flattened.

    TorchDrug's `auprc@micro`, the "AUPR" column of the paper's EC results.
    """
    pred, target = _pair(pred, target, ndim=None)
    return auprc(pred.reshape(-1), target.reshape(-1))


def f1_max(pred: Any, target: Any) -> float:
    """Protein-centric Fmax of scores `pred` (N, C) against multi-hot `target` (N, C) (TorchDrug's `f1_max`).

    For a threshold t, a protein's predicted terms are those scoring >= t. Precision is averaged over the proteins
    with at least one predicted term, recall (0 for a protein without positive terms) over all N proteins, and
    F1 = 2 P R / (P + R); the result is the maximum over t. Every distinct score is a threshold (tied scores enter
    together). Computed as TorchDrug does, in one pass over the globally sorted scores: each score changes only its
    own protein's precision and recall, so running sums of those changes give the averages at every threshold.
    """
    pred, target = _pair(pred, target, ndim=2)
    num_proteins, num_terms = pred.shape
    if pred.numel() == 0:
        return float("nan")
    target = (target > 0.5).double()
    # per protein: precision and recall after its k best-scored terms (stable: ties keep column order)
    order = torch.argsort(pred, dim=1, descending=True, stable=True)
    hits = torch.cumsum(target.gather(1, order), 1)
    precision = hits / torch.arange(1, num_terms + 1, dtype=torch.float64)
    recall = hits / target.sum(1, keepdim=True).clamp(min=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(num_terms).expand(num_proteins, -1))
    # all scores, best first; a stable sort of the row-major scores meets each protein's terms in rank order
    flat = torch.argsort(pred.reshape(-1), descending=True, stable=True)
    protein, k = flat // num_terms, rank.reshape(-1)[flat]
    previous = (k - 1).clamp(min=0)
    started = k == 0
    delta_precision = precision[protein, k] - torch.where(started, 0.0, precision[protein, previous])
    delta_recall = recall[protein, k] - torch.where(started, 0.0, recall[protein, previous])
    mean_precision = torch.cumsum(delta_precision, 0) / torch.cumsum(started, 0)
    mean_recall = torch.cumsum(delta_recall, 0) / num_proteins
    f1 = 2 * mean_precision * mean_recall / (mean_precision + mean_recall + 1e-10)
    return float(f1[_group_ends(pred.reshape(-1)[flat])].max())


def accuracy(logits: Any, labels: Any) -> float:
    """Micro accuracy: the fraction of rows whose argmax of `logits` (n, C) equals `labels` (n,).

    Rows labelled -100 are ignored. A single logit column (n, 1) or 1-D logits are binary: class 1 where the
    logit is > 0 (probability > 0.5). TorchDrug's `accuracy` takes the argmax even of one column (always class 0),
    so its "acc" of a one-logit head (PIP) is the fraction of negatives; this function scores the binary decision.
    """
    logits, labels = _tensor(logits, "logits"), _tensor(labels, "labels").reshape(-1)
    if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
        predicted = (logits.reshape(-1) > 0).double()
    elif logits.ndim == 2:
        predicted = logits.argmax(-1).double()
    else:
        raise ValueError(f"logits must be (n, C) or (n,), got shape {tuple(logits.shape)}")
    if predicted.shape != labels.shape:
        raise ValueError(f"logits have {predicted.shape[0]} rows but labels {labels.shape[0]}")
    keep = labels != IGNORE_INDEX
    if not keep.any():
        return float("nan")
    return float((predicted[keep] == labels[keep]).double().mean())


# --- regression ---------------------------------------------------------------------------------------------------
def rmse(pred: Any, target: Any) -> float:
    """Root mean squared error."""
    pred, target = _pair(pred, target)
    return float(((pred - target) ** 2).mean().sqrt())


def mae(pred: Any, target: Any) -> float:
    """Mean absolute error."""
    pred, target = _pair(pred, target)
    return float((pred - target).abs().mean())


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = (x.square().sum() * y.square().sum()).sqrt()
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def spearman(pred: Any, target: Any) -> float:
    """Global Spearman correlation (Pearson correlation of ranks, ties at their mean rank), TorchDrug's `spearmanr`.

    NaN when either side is constant.
    """
    pred, target = _pair(pred, target)
    return _pearson(_mean_ranks(pred), _mean_ranks(target))


def _group_codes(groups: Any, n: int) -> torch.Tensor:
    """Return (n,) integer codes of group labels (strings, numbers, tuples)."""
    if isinstance(groups, torch.Tensor):
        groups = groups.detach().cpu().numpy()
    values = np.asarray(groups if not isinstance(groups, list | tuple) else [str(g) for g in groups])
    if values.ndim != 1 or values.shape[0] != n:
        raise ValueError(f"groups must hold one id per prediction ({n}), got shape {values.shape}")
    return torch.as_tensor(np.unique(values, return_inverse=True)[1].reshape(-1), dtype=torch.long)


def mean_spearman(pred: Any, target: Any, groups: Any, min_group_size: int = 3) -> float:
    """ATOM3D's per-target Spearman ("Mean rho" of PSR): Spearman within each group, then the mean over groups.

    Groups (e.g. PSR targets, one id per decoy) with fewer than `min_group_size` members are skipped, as are
    groups whose Spearman is undefined (constant predictions or labels: pandas' NaN, skipped by its mean), as in
    ATOM3D `examples/psr/cnn3d/train.py::compute_correlations`. Ranks are taken within groups in one sort.
    """
    pred, target = _pair(pred, target)
    codes = _group_codes(groups, pred.shape[0])
    if codes.numel() == 0:
        return float("nan")
    x, y = _mean_ranks(pred, codes), _mean_ranks(target, codes)
    num_groups = int(codes.max()) + 1

    def total(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(num_groups, dtype=torch.float64).index_add_(0, codes, values)

    size = total(torch.ones_like(x))
    mean_x, mean_y = total(x) / size, total(y) / size
    dx, dy = x - mean_x[codes], y - mean_y[codes]
    covariance, var_x, var_y = total(dx * dy), total(dx * dx), total(dy * dy)
    valid = (size >= min_group_size) & (var_x > 0) & (var_y > 0)
    if not valid.any():
        return float("nan")
    rho = covariance[valid] / (var_x[valid] * var_y[valid]).sqrt()
    return float(rho.mean())


# --- transformers.Trainer glue ------------------------------------------------------------------------------------
# Metrics reported per paper task, the first being the one the official configs select the best epoch by
# (SiamDiff `config/**/*.yaml` `eval_metric`; GearNet `config/downstream/GO-*/*.yaml`). Names as returned by the
# factories below (Trainer prefixes them with "eval_").
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "ec": ("f1_max", "auprc_micro"),
    "go-bp": ("f1_max", "auprc_micro"),
    "go-mf": ("f1_max", "auprc_micro"),
    "go-cc": ("f1_max", "auprc_micro"),
    "psr": ("spearman", "mean_spearman", "rmse", "mae"),
    "msp": ("auroc", "auprc"),
    "pip": ("auroc", "accuracy"),
    "res": ("accuracy",),
}


def _predictions_and_labels(eval_prediction: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (predictions, labels) numpy arrays of an `EvalPrediction` or a (predictions, labels) tuple."""
    if hasattr(eval_prediction, "predictions"):
        predictions, labels = eval_prediction.predictions, eval_prediction.label_ids
    else:
        predictions, labels = eval_prediction
    if isinstance(predictions, tuple | list):  # extra model outputs follow the logits
        predictions = predictions[0]
    if labels is None:
        raise ValueError("compute_metrics needs labels: the eval dataset has no `labels` column")
    return np.asarray(predictions), np.asarray(labels)


def multilabel_metrics() -> Callable[[Any], dict[str, float]]:
    """`compute_metrics` of multi-label protein tasks (EC, GO): `f1_max` and `auprc_micro` of the sigmoids."""

    def compute(eval_prediction: Any) -> dict[str, float]:
        logits, labels = _predictions_and_labels(eval_prediction)
        scores = torch.sigmoid(_tensor(logits, "predictions"))
        return {"f1_max": f1_max(scores, labels), "auprc_micro": auprc_micro(scores, labels)}

    return compute


def regression_metrics(groups: Sequence | np.ndarray | None = None) -> Callable[[Any], dict[str, float]]:
    """`compute_metrics` of regression (PSR): `spearman`, `rmse`, `mae`, and `mean_spearman` when `groups` is given.

    Args:
        groups: one group id per example of the eval dataset, in its order (PSR: ``eval_dataset["target"]``).
            Trainer evaluates in dataset order, so the i-th prediction belongs to the i-th id (keep
            ``dataloader_drop_last=False``).
    """

    def compute(eval_prediction: Any) -> dict[str, float]:
        pred, target = _predictions_and_labels(eval_prediction)
        pred, target = pred.reshape(-1), target.reshape(-1)
        metrics = {"spearman": spearman(pred, target), "rmse": rmse(pred, target), "mae": mae(pred, target)}
        if groups is not None:
            metrics["mean_spearman"] = mean_spearman(pred, target, groups)
        return metrics

    return compute


def binary_metrics(names: Sequence[str] = ("auroc", "auprc", "accuracy")) -> Callable[[Any], dict[str, float]]:
    """`compute_metrics` of binary tasks with one logit (MSP, PIP): any of `auroc`, `auprc`, `accuracy`."""
    functions = {"auroc": auroc, "auprc": auprc, "accuracy": accuracy}
    unknown = sorted(set(names) - set(functions))
    if unknown:
        raise ValueError(f"names: unknown binary metric(s) {unknown}; choose from {sorted(functions)}")

    def compute(eval_prediction: Any) -> dict[str, float]:
        logits, labels = _predictions_and_labels(eval_prediction)
        logits, labels = logits.reshape(-1), labels.reshape(-1)
        keep = labels != IGNORE_INDEX
        return {name: functions[name](logits[keep], labels[keep]) for name in names}

    return compute


def residue_metrics() -> Callable[[Any], dict[str, float]]:
    """`compute_metrics` of residue classification (RES): micro `accuracy` over residues whose label is not -100.

    Works with packed (L, C) logits and (L,) labels (the residue heads) and with padded (B, T, C) / (B, T) arrays
    (Trainer pads with -100 when it concatenates batches of different widths).
    """

    def compute(eval_prediction: Any) -> dict[str, float]:
        logits, labels = _predictions_and_labels(eval_prediction)
        labels = labels.reshape(-1)
        logits = logits.reshape(labels.shape[0], -1)
        return {"accuracy": accuracy(logits, labels)}

    return compute


def compute_metrics_for_task(task: str, groups: Sequence | np.ndarray | None = None) -> Callable[[Any], dict]:
    """Return the `compute_metrics` callable of `transformers.Trainer` for a paper task (see `TASK_METRICS`).

    Args:
        task: ``ec``, ``go-bp``, ``go-mf``, ``go-cc``, ``psr``, ``msp``, ``pip`` or ``res``.
        groups: PSR only: the eval dataset's target ids (``eval_dataset["target"]``) for `mean_spearman`.
    """
    task = task.lower()
    if task not in TASK_METRICS:
        raise ValueError(f"task: unknown task {task!r}; choose from {sorted(TASK_METRICS)}")
    if groups is not None and task != "psr":
        raise ValueError(f"groups: only the psr task uses group ids (mean_spearman), got task {task!r}")
    if task in ("ec", "go-bp", "go-mf", "go-cc"):
        return multilabel_metrics()
    if task == "psr":
        return regression_metrics(groups)
    if task == "res":
        return residue_metrics()
    return binary_metrics(TASK_METRICS[task])
