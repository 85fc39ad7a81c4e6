"""Downstream metrics against brute-force loops over their definitions, scikit-learn and scipy, on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn import metrics as skm
from transformers import EvalPrediction

from siamdiff_hf import metrics as M


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def scores(shape, generator, ties: bool) -> np.ndarray:
    """Random scores; with `ties` rounded to one decimal so that many are equal."""
    x = generator.random(shape)
    return np.round(x, 1) if ties else x


# --- brute-force definitions -------------------------------------------------------------------------------------
def f1_max_brute(pred: np.ndarray, target: np.ndarray) -> float:
    """Loop over every distinct score as threshold and over proteins (TorchDrug's definition)."""
    best = 0.0
    for t in np.unique(pred):
        precisions, recalls = [], []
        for p, y in zip(pred, target):
            predicted = p >= t
            tp = float((predicted & (y > 0)).sum())
            if predicted.any():
                precisions.append(tp / predicted.sum())
            recalls.append(tp / y.sum() if y.sum() > 0 else 0.0)
        precision = np.mean(precisions) if precisions else 0.0
        recall = np.mean(recalls)
        best = max(best, 2 * precision * recall / (precision + recall + 1e-10))
    return best


def auroc_brute(pred: np.ndarray, target: np.ndarray) -> float:
    positives, negatives = pred[target == 1], pred[target == 0]
    wins = [(p > n) + 0.5 * (p == n) for p in positives for n in negatives]
    return float(np.mean(wins))


def auprc_torchdrug_brute(pred: np.ndarray, target: np.ndarray) -> float:
    """TorchDrug's definition without ties: mean over positives of the precision at the positive's rank."""
    order = np.argsort(-pred)
    hits, precisions = 0, []
    for rank, i in enumerate(order, start=1):
        if target[i]:
            hits += 1
            precisions.append(hits / rank)
    return float(np.mean(precisions))


# --- classification metrics ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_max_matches_brute_force(seed, ties):
    g = rng(seed)
    pred = scores((12, 9), g, ties)
    target = (g.random((12, 9)) < 0.3).astype(float)
    target[:3] = 0  # proteins without any positive label count in recall (as 0)
    assert M.f1_max(torch.as_tensor(pred), torch.as_tensor(target)) == pytest.approx(f1_max_brute(pred, target))


def test_f1_max_perfect_and_known_value():
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    assert M.f1_max(target * 0.9 + 0.05, target) == pytest.approx(1.0)
    # threshold 0.7: both proteins predict one true term: P = 1, R = (1 + 1/2) / 2, F1 = 6/7 (lower ones do worse)
    pred = torch.tensor([[0.9, 0.1, 0.1], [0.2, 0.7, 0.1]])
    assert M.f1_max(pred, target) == pytest.approx(6 / 7)
    assert f1_max_brute(pred.numpy(), target.numpy()) == pytest.approx(6 / 7)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_auprc_match_scikit_learn(seed, ties):
    g = rng(seed)
    pred = scores(200, g, ties)
    target = (g.random(200) < 0.35).astype(int)
    assert M.auroc(torch.as_tensor(pred), torch.as_tensor(target)) == pytest.approx(skm.roc_auc_score(target, pred))
    assert M.auroc(pred, target) == pytest.approx(auroc_brute(pred, target))
    assert M.auprc(pred, target) == pytest.approx(skm.average_precision_score(target, pred))
    if not ties:
        assert M.auprc(pred, target) == pytest.approx(auprc_torchdrug_brute(pred, target))


def test_auprc_micro_is_flattened_average_precision():
    g = rng(3)
    pred, target = scores((20, 7), g, True), (g.random((20, 7)) < 0.2).astype(int)
    expected = skm.average_precision_score(target, pred, average="micro")
    assert M.auprc_micro(torch.as_tensor(pred), torch.as_tensor(target)) == pytest.approx(expected)
    assert expected == pytest.approx(skm.average_precision_score(target.ravel(), pred.ravel()))


def test_degenerate_scores_and_labels():
    """All-equal scores, proteins or data sets without a positive, a single class: one threshold, defined values."""
    target = np.array([[1.0, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    flat = np.full(target.shape, 0.5)  # one threshold: every term predicted; P = mean(1/4, 2/4, 0), R = mean(1, 1, 0)
    assert M.f1_max(torch.as_tensor(flat), torch.as_tensor(target)) == pytest.approx(4 / 11)
    assert f1_max_brute(flat, target) == pytest.approx(4 / 11)
    assert M.f1_max(torch.rand(4, 6), torch.zeros(4, 6)) == 0.0  # no positive anywhere: recall 0
    assert math.isnan(M.f1_max(torch.zeros(0, 6), torch.zeros(0, 6)))
    g = rng(9)
    labels = (g.random(40) < 0.3).astype(int)
    same = np.full(40, 0.7)
    assert M.auroc(same, labels) == pytest.approx(skm.roc_auc_score(labels, same)) == pytest.approx(0.5)
    assert M.auprc(same, labels) == pytest.approx(skm.average_precision_score(labels, same))
    assert M.auprc(same, labels) == pytest.approx(labels.mean())
    assert M.auprc(g.random(10), np.ones(10)) == pytest.approx(1.0)
    assert math.isnan(M.spearman(np.arange(5.0), np.ones(5)))
    assert math.isnan(M.mean_spearman(g.random(6), g.random(6), ["a", "a", "b", "b", "c", "c"]))  # all too small
    assert math.isnan(M.accuracy(g.normal(size=(4, 3)), np.full(4, -100)))


def test_undefined_binary_metrics_are_nan():
    assert math.isnan(M.auroc(torch.rand(5), torch.ones(5)))
    assert math.isnan(M.auroc(torch.rand(5), torch.zeros(5)))
    assert math.isnan(M.auprc(torch.rand(5), torch.zeros(5)))
    out = M.compute_metrics_for_task("msp")((np.random.default_rng(0).normal(size=(6, 1)), np.zeros(6)))
    assert math.isnan(out["auroc"]) and math.isnan(out["auprc"])  # an eval split of one class scores NaN, no error
    with pytest.raises(ValueError, match="same shape"):
        M.auroc(torch.rand(5), torch.ones(4))


def test_accuracy_multiclass_binary_and_ignored_rows():
    g = rng(4)
    logits = g.normal(size=(50, 20))
    labels = g.integers(0, 20, 50)
    labels[::5] = -100
    keep = labels != -100
    assert M.accuracy(torch.as_tensor(logits), torch.as_tensor(labels)) == pytest.approx(
        skm.accuracy_score(labels[keep], logits[keep].argmax(-1))
    )
    binary_logits, binary_labels = g.normal(size=(40, 1)), g.integers(0, 2, 40)
    expected = skm.accuracy_score(binary_labels, (binary_logits[:, 0] > 0).astype(int))
    assert M.accuracy(binary_logits, binary_labels) == pytest.approx(expected)


# --- regression metrics -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ties", [False, True])
def test_spearman_rmse_mae_match_scipy_and_numpy(ties):
    g = rng(5)
    pred, target = scores(300, g, ties), scores(300, g, ties)
    target = target + 0.5 * pred
    assert M.spearman(torch.as_tensor(pred), torch.as_tensor(target)) == pytest.approx(
        stats.spearmanr(pred, target).statistic
    )
    assert M.rmse(pred, target) == pytest.approx(np.sqrt(np.mean((pred - target) ** 2)))
    assert M.mae(pred, target) == pytest.approx(np.mean(np.abs(pred - target)))
    assert math.isnan(M.spearman(np.ones(5), np.arange(5)))


def mean_spearman_brute(pred, target, groups) -> float:
    values = []
    for group in np.unique(groups):
        member = groups == group
        if member.sum() < 3:
            continue
        rho = stats.spearmanr(pred[member], target[member]).statistic
        if not np.isnan(rho):
            values.append(rho)
    return float(np.mean(values))


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@pytest.mark.parametrize("ties", [False, True])
def test_mean_spearman_matches_per_group_scipy(ties):
    g = rng(6)
    groups = g.integers(0, 15, 400).astype(str)
    groups[:2] = "pair"  # a group with 2 members: skipped
    groups[2:6] = "flat"  # a group with constant predictions: undefined, skipped
    pred, target = scores(400, g, ties), scores(400, g, ties)
    target = target + 0.3 * pred
    pred[2:6] = 0.5
    expected = mean_spearman_brute(pred, target, groups)
    assert M.mean_spearman(torch.as_tensor(pred), torch.as_tensor(target), list(groups)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="groups"):
        M.mean_spearman(pred, target, list(groups[:-1]))


# --- compute_metrics factories -------------------------------------------------------------------------------------
def test_compute_metrics_per_task():
    g = rng(7)
    logits, labels = g.normal(size=(30, 8)), (g.random((30, 8)) < 0.3).astype(np.float32)
    out = M.compute_metrics_for_task("ec")(EvalPrediction(predictions=logits, label_ids=labels))
    assert out == {
        "f1_max": pytest.approx(f1_max_brute(1 / (1 + np.exp(-logits)), labels)),
        "auprc_micro": pytest.approx(skm.average_precision_score(labels.ravel(), logits.ravel())),
    }
    pred, gdt, targets = g.random((40, 1)), g.random(40), np.repeat(np.arange(8).astype(str), 5)
    out = M.compute_metrics_for_task("psr", groups=targets)(EvalPrediction(predictions=pred, label_ids=gdt))
    assert out["spearman"] == pytest.approx(stats.spearmanr(pred[:, 0], gdt).statistic)
    assert out["mean_spearman"] == pytest.approx(mean_spearman_brute(pred[:, 0], gdt, targets))
    assert set(out) == set(M.TASK_METRICS["psr"])
    binary, y = g.normal(size=(25, 1)), g.integers(0, 2, 25).astype(np.float32)
    out = M.compute_metrics_for_task("pip")(EvalPrediction(predictions=(binary,), label_ids=y))
    assert out["auroc"] == pytest.approx(skm.roc_auc_score(y, binary[:, 0])) and set(out) == {"auroc", "accuracy"}
    assert set(M.compute_metrics_for_task("msp")((binary, y))) == {"auroc", "auprc"}


def test_residue_metrics_mask_minus_100_and_padding():
    g = rng(8)
    logits, labels = g.normal(size=(60, 20)), np.full(60, -100)
    labels[[3, 17, 42]] = [logits[3].argmax(), logits[17].argmax(), (logits[42].argmax() + 1) % 20]
    out = M.compute_metrics_for_task("res")(EvalPrediction(predictions=logits, label_ids=labels))
    assert out == {"accuracy": pytest.approx(2 / 3)}
    padded_logits = np.concatenate([logits.reshape(3, 20, 20), np.full((3, 5, 20), -100.0)], axis=1)
    padded_labels = np.concatenate([labels.reshape(3, 20), np.full((3, 5), -100)], axis=1)
    out = M.compute_metrics_for_task("res")((padded_logits, padded_labels))
    assert out == {"accuracy": pytest.approx(2 / 3)}


def test_compute_metrics_bad_arguments():
    with pytest.raises(ValueError, match="task"):
        M.compute_metrics_for_task("fold")
    with pytest.raises(ValueError, match="groups"):
        M.compute_metrics_for_task("ec", groups=["a"])
