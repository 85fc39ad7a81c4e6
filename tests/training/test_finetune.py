"""Fine-tuning: the quickstart through the CLI (model folder reloads and reproduces the reported test metric),
seeds aggregation, best-epoch selection, exact resume, two CPU processes, paper configs and config errors.
A tiny random GearNet-Edge encoder and a few residue environments keep it quick."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from siamdiff_hf.cli import main
from siamdiff_hf.training.config_io import ConfigError
from siamdiff_hf.training.finetune_config import load_finetune_config
from siamdiff_hf.training.finetuning import (
    JSONLogCallback,
    aggregate,
    best_epoch_result,
    labelled_rows_per_example,
    training_arguments,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "finetune"
QUICKSTART = str(CONFIGS / "quickstart.yaml")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    """A tiny residue GearNet-Edge encoder folder with its processor (random weights)."""
    from siamdiff_hf import ProteinStructureProcessor
    from siamdiff_hf.models import GearNetConfig, GearNetModel

    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    GearNetModel(GearNetConfig(level="residue", hidden_dims=[16, 16])).save_pretrained(folder)
    ProteinStructureProcessor().save_pretrained(folder)
    return folder


def tiny(encoder: Path, output: Path, epochs: int = 2, targets: int = 4) -> list[str]:
    return [QUICKSTART, "-o", str(output), f"model.encoder={encoder}", f"training.num_train_epochs={epochs}",
            f"data.options.targets_per_protein={targets}", "training.per_device_train_batch_size=4"]  # fmt: skip


class FakeHubApi:
    """Stands in for `huggingface_hub.HfApi`: records the uploads."""

    def __init__(self):
        self.uploads = []

    def create_repo(self, repo_id, private=False, exist_ok=False, repo_type="model"):
        pass

    def upload_folder(self, folder_path, repo_id, repo_type="model", commit_message=""):
        folder = Path(folder_path)
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        self.uploads.append({"repo_id": repo_id, "files": files, "readme": (folder / "README.md").read_text()})
        return "https://hub.local/commit/1"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_split_accuracy(model, rows) -> float:
    from siamdiff_hf.protein.collator import ProteinDataCollator

    batch = ProteinDataCollator(label_level="residue")(list(rows))
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model.eval()(**batch).logits
    keep = labels != -100
    return float((logits[keep].argmax(-1) == labels[keep]).float().mean())


test_split_accuracy.__test__ = False  # a helper, not a test


@pytest.mark.slow
def test_quickstart_through_the_cli(encoder, tmp_path, capsys, monkeypatch):
    from transformers import AutoModelForTokenClassification

    import siamdiff_hf.hub
    import siamdiff_hf.training.finetuning as finetuning
    from siamdiff_hf.training.config import bundled_structures
    from siamdiff_hf.training.residue_identity import build_residue_identity

    api = FakeHubApi()
    monkeypatch.setattr(siamdiff_hf.hub, "HfApi", lambda token=None: api)
    reuses = []  # reuse_freed_memory (default false) on CPU runs: training/memory.py
    monkeypatch.setattr(finetuning, "reuse_freed_memory", lambda: reuses.append(True))
    output = tmp_path / "run"
    assert main(["finetune", *tiny(encoder, output), "--seeds", "0", "1", "--push-to-hub", "someone/ft",
                 "reuse_freed_memory=true"]) == 0  # fmt: skip
    (upload,) = api.uploads
    assert upload["repo_id"] == "someone/ft" and "model.safetensors" in upload["files"]
    assert upload["readme"] == (output / "model" / "README.md").read_text()
    printed = capsys.readouterr().out
    assert "pre-trained encoder" in printed and "random encoder" in printed

    summary = json.loads((output / "metrics.json").read_text())
    assert set(summary["finetuned"]["seeds"]) == set(summary["random_init"]["seeds"]) == {"0", "1"}
    # seeds aggregation: mean and sample std of the per-seed test metrics
    tests = [summary["finetuned"]["seeds"][s]["test"]["accuracy"] for s in ("0", "1")]
    assert summary["finetuned"]["mean"]["test"]["accuracy"] == pytest.approx(np.mean(tests))
    assert summary["finetuned"]["std"]["test"]["accuracy"] == pytest.approx(np.std(tests, ddof=1))
    # the reported epoch is the first with the best validation accuracy in the run's own log
    for seed in ("0", "1"):
        log = [r for r in read_jsonl(output / f"seed{seed}" / "log.jsonl") if "eval_valid_accuracy" in r]
        best = max(range(len(log)), key=lambda i: (log[i]["eval_valid_accuracy"], -i))
        assert summary["finetuned"]["seeds"][seed]["best_epoch"] == round(log[best]["epoch"])
        assert summary["finetuned"]["seeds"][seed]["test"]["num_scored"] == 4  # every test target, once

    # The exported model reloads with the Auto class and reproduces the reported test metric.
    exported = summary["model"]["seed"]
    model = AutoModelForTokenClassification.from_pretrained(output / "model")
    files = sorted(bundled_structures().glob("*.pdb.gz"))
    test_rows = build_residue_identity(files, targets_per_protein=4, seed=0)["test"]
    reported = summary["finetuned"]["seeds"][str(exported)]["test"]["accuracy"]
    assert test_split_accuracy(model, test_rows) == pytest.approx(reported)
    card = (output / "model" / "README.md").read_text()
    assert "model-index" in card and "residue-identity" in card and "AutoModelForTokenClassification" in card
    assert "nothing useful" in card  # trained on the six bundled chains: the card says so
    # rerunnable as written (overwrite_output_dir: true in the quickstart); memory reuse only when asked
    assert main(["finetune", *tiny(encoder, output, epochs=1), "compare_random_init=false"]) == 0
    assert reuses == [True]


def test_best_epoch_is_the_best_validation_epoch():
    log = [{"loss": 1.0, "epoch": 1.0}]
    for epoch, valid, test in [(1, 0.5, 0.40), (2, 0.7, 0.30), (3, 0.6, 0.90), (4, 0.7, 0.10)]:
        log += [{"epoch": float(epoch), "eval_valid_accuracy": valid, "eval_valid_runtime": 1.0},
                {"epoch": float(epoch), "eval_test_accuracy": test}]  # fmt: skip
    result = best_epoch_result(log, "accuracy")
    assert result["best_epoch"] == 2 and result["test"] == {"accuracy": 0.30}  # first of the tied best, not test's
    assert result["valid"] == {"accuracy": 0.7}  # timings are not results
    assert best_epoch_result(log, "accuracy", greater_is_better=False)["best_epoch"] == 1
    with pytest.raises(ValueError, match="eval_valid_f1_max"):
        best_epoch_result(log, "f1_max")


def test_evaluation_every_ceil_epochs_over_50_as_the_official_loop():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from siamdiff_hf.training.finetuning import EvaluateEvery, evaluation_interval

    assert [evaluation_interval(n) for n in (5, 50, 51, 200)] == [1, 1, 2, 4]
    args, callback, evaluated = TrainingArguments("/tmp/unused", num_train_epochs=10), EvaluateEvery(4), []
    for epoch in range(1, 11):
        control = TrainerControl(should_evaluate=True, should_save=True)  # what eval_strategy=epoch asks for
        control = callback.on_epoch_end(args, TrainerState(epoch=float(epoch)), control)
        assert control.should_save == control.should_evaluate
        evaluated += [epoch] if control.should_evaluate else []
    assert evaluated == [4, 8, 10]  # official: range(0, 10, 4) -> after epochs 4, 8 and the last


def test_seed_aggregation():
    runs = {0: {"valid": {"auroc": 0.6}, "test": {"auroc": 0.70, "auprc": 0.5}},
            1: {"valid": {"auroc": 0.8}, "test": {"auroc": 0.74, "auprc": 0.7}},
            2: {"valid": {"auroc": 0.7}, "test": {"auroc": 0.72}}}  # fmt: skip
    summary = aggregate(runs)
    assert summary["mean"]["test"] == {"auroc": pytest.approx(0.72)}  # metrics every seed has
    assert summary["std"]["test"]["auroc"] == pytest.approx(0.02)  # sample std (ddof=1)
    assert aggregate({0: runs[0]})["std"]["valid"]["auroc"] == 0.0


def test_residue_outputs_per_example():
    logits = torch.arange(10, dtype=torch.float32).reshape(5, 2)
    labels = torch.tensor([-100, 1, 0, -100, 1])
    batch = torch.tensor([0, 0, 1, 1, 1])
    out_logits, out_labels = labelled_rows_per_example(logits, labels, batch)
    assert out_labels.tolist() == [[1, -100], [0, 1]]
    assert out_logits[0, 0].tolist() == [2.0, 3.0] and out_logits[1].tolist() == [[4.0, 5.0], [8.0, 9.0]]
    assert (out_logits[0, 1] == -100).all()


def test_resume_from_a_trainer_checkpoint_is_exact(encoder, tmp_path, monkeypatch):
    settings = ["compare_random_init=false", "data.options.targets_per_protein=3"]
    straight = tmp_path / "straight"
    assert main(["finetune", *tiny(encoder, straight, epochs=3), *settings]) == 0

    resumed = tmp_path / "resumed"
    saves = {"n": 0}

    def stop_after_second_save(self, args, state, control, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:
            raise KeyboardInterrupt  # as a killed job, right after the epoch-2 checkpoint

    monkeypatch.setattr(JSONLogCallback, "on_save", stop_after_second_save, raising=False)
    assert main(["finetune", *tiny(encoder, resumed, epochs=3), *settings]) != 0
    monkeypatch.undo()
    assert not (resumed / "metrics.json").exists()
    assert main(["finetune", *tiny(encoder, resumed, epochs=3), *settings, "--resume"]) == 0

    expected = json.loads((straight / "metrics.json").read_text())["finetuned"]["seeds"]["0"]
    got = json.loads((resumed / "metrics.json").read_text())["finetuned"]["seeds"]["0"]
    assert got == expected  # bit-exact (one thread)
    a, b = load_file(straight / "model" / "model.safetensors"), load_file(resumed / "model" / "model.safetensors")
    for key, value in a.items():
        torch.testing.assert_close(b[key], value, atol=0, rtol=0, msg=key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_evaluate_every_example_once(encoder, tmp_path):
    from transformers import AutoModelForTokenClassification

    from siamdiff_hf.training.config import bundled_structures
    from siamdiff_hf.training.residue_identity import build_residue_identity

    output = tmp_path / "ddp"
    launcher = Path(sys.executable).with_name("accelerate")
    command = [
        str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
        "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()), "-m", "siamdiff_hf", "finetune",
        *tiny(encoder, output, epochs=2, targets=5), "compare_random_init=false",
        "training.per_device_eval_batch_size=2",
    ]  # fmt: skip
    result = subprocess.run(command, env={**ENV, "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True,
                            timeout=500)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    seed = json.loads((output / "metrics.json").read_text())["finetuned"]["seeds"]["0"]
    # 5 test targets over 2 processes x batches of 2: the sampler pads, the gather drops the repeats
    assert seed["test"]["num_scored"] == seed["valid"]["num_scored"] == 5
    model = AutoModelForTokenClassification.from_pretrained(output / "model")
    splits = build_residue_identity(sorted(bundled_structures().glob("*.pdb.gz")), targets_per_protein=5, seed=0)
    for split in ("valid", "test"):
        assert test_split_accuracy(model, splits[split]) == pytest.approx(seed[split]["accuracy"]), split


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_paper_configs_validate(path: Path, capsys):
    assert main(["finetune", str(path), "--dry-run"]) == 0
    config = load_finetune_config(path, check_paths=False)
    if path.stem == "quickstart":
        return
    assert config.seeds == [0, 1, 2] and config.training["learning_rate"] == 1e-4
    assert config.model.head["num_mlp_layer"] == 3 and not config.model.freeze_encoder
    # the global batch holds on 1 to 8 processes (at least one protein per device)
    for processes in (p for p in (1, 2, 4, 8) if config.data.global_batch_size % p == 0):
        args = training_arguments(config, 0, "/tmp/unused", num_processes=processes)
        per_step = args.per_device_train_batch_size * processes * args.gradient_accumulation_steps
        assert per_step == config.data.global_batch_size


def test_protocol_arguments():
    config = load_finetune_config(CONFIGS / "ec_gearnet_edge_residue.yaml", check_paths=False)
    args = training_arguments(config, 1, "/tmp/unused", num_processes=1)
    assert args.metric_for_best_model == "valid_f1_max" and args.greater_is_better and args.load_best_model_at_end
    assert args.lr_scheduler_kwargs == {"mode": "max", "factor": 0.6, "patience": 5}
    assert args.eval_strategy == "epoch" and args.seed == 1 and args.gradient_accumulation_steps == 4
    assert args.learning_rate == 1e-4 and args.weight_decay == 0.0 and not args.remove_unused_columns


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        (["training.num_train_epoch=3"], "training.num_train_epoch", "not a transformers.TrainingArguments field"),
        (["training.seed=3"], "training.seed", "seeds"),
        (["training.eval_strategy=sometimes"], "training", "invalid TrainingArguments"),
        (["data.task=ecc"], "data.task", "unknown task"),
        (["data.tsk=ec"], "data.tsk", "unknown key"),
        (["model.encoder="], "model.encoder", "missing"),
        (["model.encoder=/no/such/encoder"], "model.encoder", "no such encoder folder"),
        (["model.cache_embeddings=true"], "model.cache_embeddings", "freeze_encoder"),
        (["model.head.num_labels=3"], "model.head.num_labels", "task table"),
        (["seeds=[]"], "seeds", "missing"),
        (["mixed_precision=fp8"], "mixed_precision", "must be one of"),
        (["reuse_freed_memory=3"], "reuse_freed_memory", "expected true or false"),
        (
            ["data.global_batch_size=6", "training.per_device_train_batch_size=4"],
            "data.global_batch_size",
            "not a multiple",
        ),
        (["data.processor.crop=3"], "data.processor.crop", "unknown key"),
        (["data.options.target_per_protein=3"], "data.options.target_per_protein", "unknown key"),
        (["model.head.num_mlp_layers=2"], "model.head.num_mlp_layers", "num_mlp_layer"),
        (["data.task=ec"], "data.root", "missing"),
        (
            ["model.encoder=me/encoder", "data.task=ec", "data.options={}", "data.root=/no/such/data"],
            "data.root",
            "no such file",
        ),
    ],
)
def test_bad_config_names_the_key(overrides, key, words):
    with pytest.raises(ConfigError) as info:
        load_finetune_config(QUICKSTART, overrides)
    assert info.value.key == key and words in str(info.value)


def test_cli_reports_config_errors(capsys):
    assert main(["finetune", QUICKSTART, "training.num_train_epoch=3"]) == 2
    assert "training.num_train_epoch" in capsys.readouterr().err


def test_cli_reports_invalid_yaml_in_one_line(tmp_path, capsys):
    config = tmp_path / "broken.yaml"
    config.write_text("model:\n  encoder: [outputs/quickstart/encoder\n")
    assert main(["finetune", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(config) in err and "not valid YAML" in err and "line " in err


def test_cached_embeddings_train_the_head_as_the_frozen_encoder_does(encoder, tmp_path):
    settings = ["compare_random_init=false", "data.options.targets_per_protein=3", "model.freeze_encoder=true"]
    frozen, cached = tmp_path / "frozen", tmp_path / "cached"
    assert main(["finetune", *tiny(encoder, frozen, epochs=2), *settings]) == 0
    assert main(["finetune", *tiny(encoder, cached, epochs=2), *settings, "model.cache_embeddings=true"]) == 0
    a, b = load_file(frozen / "model" / "model.safetensors"), load_file(cached / "model" / "model.safetensors")
    original = load_file(encoder / "model.safetensors")
    for key, value in original.items():  # the encoder did not move
        assert torch.equal(a[f"gearnet.{key}"], value) and torch.equal(b[f"gearnet.{key}"], value), key
    for key in (k for k in a if k.startswith("mlp.")):  # the same head training, from cached inputs
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=1e-4, msg=key)
    results = [json.loads((run / "metrics.json").read_text())["finetuned"]["seeds"]["0"] for run in (frozen, cached)]
    assert results[0]["test"]["accuracy"] == results[1]["test"]["accuracy"]
