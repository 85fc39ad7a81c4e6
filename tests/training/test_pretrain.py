"""Pre-training runs end to end: the CLI, exports and model card, Hub upload path, exact resume with rotation,
SIGTERM, and two processes on the CPU. Tiny encoders and few steps keep it quick."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import siamdiff_hf.hub
from siamdiff_hf import ProteinStructureProcessor
from siamdiff_hf.cli import main
from siamdiff_hf.training import list_checkpoints
from siamdiff_hf.training.checkpoints import StopRequest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "configs" / "quickstart.yaml")
STRUCTURE = ROOT / "tests" / "data" / "2xcjA.pdb.gz"
TINY = [
    "model.encoder.hidden_dims=[16,16]", "data.batch_size=2", "data.crop_length=60", "logging.log_every=1",
    "logging.progress_bar=false", "logging.record_ids=true", "logging.report_to=[none]",
]  # fmt: skip
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


class FakeHubApi:
    """Stands in for `huggingface_hub.HfApi`: records what would be created and uploaded."""

    def __init__(self):
        self.repos, self.uploads = [], []

    def create_repo(self, repo_id, private=False, exist_ok=False, repo_type="model"):
        self.repos.append((repo_id, private, repo_type))

    def upload_folder(self, folder_path, repo_id, repo_type="model", commit_message=""):
        folder = Path(folder_path)
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        self.uploads.append({"repo_id": repo_id, "files": files, "readme": (folder / "README.md").read_text()})
        return type("CommitInfo", (), {"commit_url": f"https://hub.local/{repo_id}/commit/1"})()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ids_by_step(output_dir: Path, rank: int = 0) -> dict[tuple, list[str]]:
    records = read_jsonl(output_dir / "logs" / f"ids_rank{rank}.jsonl")
    return {(r["stage"], r["step"], r["micro"]): r["ids"] for r in records}


def checkpoint_names(output_dir: Path) -> list[str]:
    return [p.name for p in list_checkpoints(output_dir / "checkpoints", complete_only=False)]


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """The quickstart config through the CLI (shortened), pushed to a stand-in Hub."""
    output_dir = tmp_path_factory.mktemp("quickstart")
    api = FakeHubApi()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(siamdiff_hf.hub, "HfApi", lambda token=None: api)
        code = main(["pretrain", QUICKSTART, f"output_dir={output_dir}", *TINY, "stages.0.max_steps=3",
                     "stages.1.max_steps=2", "checkpointing.every_n_steps=2", "training.gradient_accumulation_steps=2",
                     "training.max_grad_norm=1.0", "optimizer.lr_scheduler=cosine", "optimizer.warmup_steps=1",
                     "--push-to-hub", "someone/tiny"])  # fmt: skip
    assert code == 0
    return output_dir, api


def test_quickstart_exports_an_encoder_that_embeds(quickstart_run):
    output_dir, _ = quickstart_run
    model = AutoModel.from_pretrained(output_dir / "encoder")
    processor = ProteinStructureProcessor.from_pretrained(output_dir / "encoder")
    assert type(model).__name__ == "GearNetModel" and processor.crop_length is None and not processor.random_crop
    with torch.no_grad():
        outputs = model(**processor([STRUCTURE], return_tensors="pt"))
    assert outputs.protein_embeddings.shape == (1, 32) and torch.isfinite(outputs.protein_embeddings).all()
    assert outputs.residue_embeddings.shape[0] == 84  # the whole chain: no crop at inference
    # Stage exports: the whole pre-training model and the encoder, each stage with its own schedule.
    for name, (timesteps, gamma) in {"stage1": (100, 0.5), "stage2": (5, 0.2)}.items():
        config = json.loads((output_dir / name / "model" / "config.json").read_text())
        assert (config["num_timesteps"], config["gamma"]) == (timesteps, gamma)
        assert (output_dir / name / "encoder" / "README.md").exists()
        assert (output_dir / name / "model" / "preprocessor_config.json").exists()
        encoder = load_file(output_dir / name / "encoder" / "model.safetensors")
        whole = load_file(output_dir / name / "model" / "model.safetensors")
        assert sorted(f"encoder.{k}" for k in encoder) == sorted(k for k in whole if k.startswith("encoder."))
        assert all(torch.equal(v, whole[f"encoder.{k}"]) for k, v in encoder.items())
    final = load_file(output_dir / "encoder" / "model.safetensors")
    assert final.keys() == encoder.keys() and all(torch.equal(v, encoder[k]) for k, v in final.items())


def test_quickstart_logs_and_rotation(quickstart_run):
    output_dir, _ = quickstart_run
    log = [r for r in read_jsonl(output_dir / "logs" / "train_log.jsonl") if "loss" in r]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]  # global steps over both stages
    assert {"skipped_files", "proteins_per_second", "sequence_accuracy", "learning_rate"} <= set(log[0])
    assert log[-1]["skipped_files"] == 0 and log[-1]["proteins"] == 8  # 2 steps x 2 accumulated batches of 2
    assert log[0]["learning_rate"] == pytest.approx(1e-4) and log[1]["learning_rate"] < 1e-4  # warmup, cosine
    # every 2 steps and at each stage end, keeping 2: stage1 2, 3, stage2 2 (periodic and final)
    assert checkpoint_names(output_dir) == ["stage1-step00000003", "stage2-step00000002"]


def test_logged_config_keeps_lists_and_bundled_runs_warn(quickstart_run):
    output_dir, _ = quickstart_run
    start = read_jsonl(output_dir / "logs" / "train_log.jsonl")[0]
    assert start["event"] == "start"
    assert start["config"]["data"]["sources"] == ["bundled"]  # nested and a list, not a JSON string
    assert isinstance(start["config"]["model"]["encoder"]["hidden_dims"], list)
    summary = json.loads((output_dir / "stage1" / "model" / "training_summary.json").read_text())
    assert isinstance(summary["settings"]["encoder"]["hidden_dims"], list)
    card = (output_dir / "encoder" / "README.md").read_text()
    assert f"> **Warning:** {siamdiff_hf.hub.BUNDLED_DATA_WARNING}" in card  # bundled data: the card always warns


def test_model_card_lists_the_run(quickstart_run):
    output_dir, _ = quickstart_run
    card = (output_dir / "encoder" / "README.md").read_text()
    final = [r for r in read_jsonl(output_dir / "logs" / "train_log.jsonl") if "loss" in r][-1]
    assert "library_name: transformers" in card and "siamdiff" in card and "gearnet" in card
    assert "stage1: 3 steps (beta_start=0.001, beta_end=0.1, num_timesteps=100, gamma=0.5)" in card
    assert "stage2: 2 steps (beta_start=0.0001, beta_end=0.0001, num_timesteps=5, gamma=0.2)" in card
    assert "2 per process x 1 processes x 2 accumulation = 4 proteins per step" in card and "bundled" in card
    assert "| total_steps | 5 |" in card and "| stage_steps | 2 |" in card
    assert f"| loss | {final['loss']:.4g} |" in card
    assert f"| sequence_accuracy | {final['sequence_accuracy']:.4g} |" in card
    assert "someone/tiny" in card and "@inproceedings{zhang2023siamdiff" in card


def test_push_uploads_our_card(quickstart_run, monkeypatch):
    output_dir, api = quickstart_run
    # --push-to-hub during the run
    assert api.repos == [("someone/tiny", False, "model")]
    (upload,) = api.uploads
    assert upload["repo_id"] == "someone/tiny"
    assert upload["files"] == ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    assert upload["readme"] == (output_dir / "encoder" / "README.md").read_text()
    # `siamdiff-hf push DIR REPO_ID` for an existing export
    other = FakeHubApi()
    monkeypatch.setattr(siamdiff_hf.hub, "HfApi", lambda token=None: other)
    assert main(["push", str(output_dir / "stage1" / "encoder"), "someone/stage1", "--private"]) == 0
    assert other.repos == [("someone/stage1", True, "model")]
    assert other.uploads[0]["readme"] == (output_dir / "stage1" / "encoder" / "README.md").read_text()
    assert main(["push", str(output_dir / "logs"), "someone/nothing"]) == 2  # no config.json: not an export


def test_fresh_run_refuses_an_used_output_dir(quickstart_run, capsys):
    output_dir, _ = quickstart_run
    # overwrite_output_dir=false: the default of run configs (the quickstart's own config sets true, to rerun)
    assert main(["pretrain", QUICKSTART, f"output_dir={output_dir}", *TINY, "overwrite_output_dir=false"]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_is_exact_and_rotation_survives(tmp_path, monkeypatch):
    settings = [*TINY, "stages.0.max_steps=4", "stages.1.max_steps=3", "checkpointing.every_n_steps=2",
                "checkpointing.keep=2"]  # fmt: skip
    straight = tmp_path / "straight"
    assert main(["pretrain", QUICKSTART, f"output_dir={straight}", *settings]) == 0
    assert checkpoint_names(straight) == ["stage2-step00000002", "stage2-step00000003"]

    # Same run, stopped as by SIGTERM after stage 1 step 3 and after stage 2 step 2, resumed each time.
    resumed = tmp_path / "resumed"
    calls = {"n": 0}

    def stop_at_third_step(self, accelerator):
        calls["n"] += 1
        if calls["n"] == 3:
            self.signum = signal.SIGTERM
        return calls["n"] == 3

    monkeypatch.setattr(StopRequest, "requested", stop_at_third_step)
    assert main(["pretrain", QUICKSTART, f"output_dir={resumed}", *settings]) == 128 + signal.SIGTERM
    assert checkpoint_names(resumed) == ["stage1-step00000002", "stage1-step00000003"]
    calls["n"] = 0
    assert main(["pretrain", QUICKSTART, f"output_dir={resumed}", *settings, "--resume"]) == 128 + signal.SIGTERM
    assert checkpoint_names(resumed) == ["stage1-step00000004", "stage2-step00000002"]
    calls["n"] = 0
    assert main(["pretrain", QUICKSTART, f"output_dir={resumed}", *settings, "--resume", "latest"]) == 0
    assert checkpoint_names(resumed) == ["stage2-step00000002", "stage2-step00000003"]

    assert ids_by_step(resumed) == ids_by_step(straight)  # same data order, crops follow the ids
    for stage in ("stage1", "stage2"):
        expected = load_file(straight / stage / "model" / "model.safetensors")
        got = load_file(resumed / stage / "model" / "model.safetensors")
        assert expected.keys() == got.keys()
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, atol=1e-6, rtol=0, msg=f"{stage} {key}")
    steps = [r["step"] for r in read_jsonl(resumed / "logs" / "train_log.jsonl") if "loss" in r]
    assert steps == list(range(1, 8))


def test_sigterm_saves_a_checkpoint_then_resume_finishes(tmp_path):
    output_dir = tmp_path / "run"
    settings = [*TINY, "stages.1.max_steps=1", "checkpointing.every_n_steps=1000"]
    command = [sys.executable, "-m", "siamdiff_hf", "pretrain", QUICKSTART, f"output_dir={output_dir}", *settings,
               "stages.0.max_steps=10000"]  # fmt: skip
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ids_log = output_dir / "logs" / "ids_rank0.jsonl"
    deadline = time.monotonic() + 240
    while not (ids_log.exists() and len(ids_log.read_text().splitlines()) >= 2):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "checkpoint saved" in stderr
    (checkpoint,) = list_checkpoints(output_dir / "checkpoints")
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["stage"] == 0 and state["step"] >= 2
    assert (checkpoint / "data_state_rank0.json").exists() and (checkpoint / "model.safetensors").exists()

    step = state["step"]
    code = main(["pretrain", QUICKSTART, f"output_dir={output_dir}", *settings, f"stages.0.max_steps={step + 1}",
                 "--resume", str(checkpoint)])  # fmt: skip
    assert code == 0
    assert (output_dir / "encoder" / "model.safetensors").exists()
    steps = [(r["stage"], r["step"]) for r in read_jsonl(ids_log)]
    assert steps == [(0, s) for s in range(1, step + 2)] + [(1, 1)]  # no step repeated or skipped


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_on_cpu(tmp_path):
    output_dir = tmp_path / "ddp"
    launcher = Path(sys.executable).with_name("accelerate")
    command = [
        str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(Path(__file__).with_name("_two_process_run.py")), QUICKSTART, f"output_dir={output_dir}", *TINY,
        "training.cpu=true", "stages.0.max_steps=3", "stages.1.max_steps=1", "checkpointing.every_n_steps=1000",
    ]  # fmt: skip
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]

    # two ranks ran, each on its own proteins
    state = json.loads((list_checkpoints(output_dir / "checkpoints")[-1] / "trainer_state.json").read_text())
    assert state["num_processes"] == 2
    # Each epoch the ranks split the (reshuffled) shards: within an epoch they never share a protein.
    seen: dict[tuple, list[set]] = {}
    for rank in (0, 1):
        for record in read_jsonl(output_dir / "logs" / f"ids_rank{rank}.jsonl"):
            seen.setdefault((record["stage"], record["epoch"]), [set(), set()])[rank].update(record["ids"])
    for rank0, rank1 in seen.values():
        assert rank0 and rank1 and not rank0 & rank1
    assert seen[0, 0][0] | seen[0, 0][1] == {p.name[:5] for p in (ROOT / "tests" / "data").glob("*.pdb.gz")}
    # identical parameters on both ranks after every stage
    for stage in (1, 2):
        ranks = [torch.load(output_dir / f"parameters_stage{stage}_rank{r}.pt") for r in (0, 1)]
        assert ranks[0]["num_processes"] == ranks[1]["num_processes"] == 2
        for key, value in ranks[0]["parameters"].items():
            torch.testing.assert_close(ranks[1]["parameters"][key], value, atol=0, rtol=0, msg=key)
    assert AutoModel.from_pretrained(output_dir / "encoder") is not None


def test_any_registered_objective_runs(tmp_path):
    """A baseline objective through the same loop: its own scalar outputs are logged, its encoder exported."""
    output_dir = tmp_path / "rtp"
    code = main(["pretrain", QUICKSTART, f"output_dir={output_dir}", *TINY, "model.objective=residue_type_prediction",
                 "model.siamdiff={}", "stages=[{max_steps: 2}]", "checkpointing.every_n_steps=null"])  # fmt: skip
    assert code == 0
    log = [r for r in read_jsonl(output_dir / "logs" / "train_log.jsonl") if "loss" in r]
    assert [r["step"] for r in log] == [1, 2] and "structure_loss" not in log[0]
    assert len(set(log[0]) - {"step", "time", "stage", "loss", "proteins", "skipped_files", "epoch", "learning_rate",
                              "proteins_per_second"}) >= 1  # the objective's own metrics  # fmt: skip
    assert type(AutoModel.from_pretrained(output_dir / "encoder")).__name__ == "GearNetModel"
    assert "ResidueTypePrediction" in (output_dir / "encoder" / "README.md").read_text()


def test_workers_parse_ahead_with_prefetch_factor(tmp_path):
    """data.num_workers + data.prefetch_factor: worker processes parse batches ahead, all structures delivered."""
    from accelerate import Accelerator

    from siamdiff_hf.training import load_config
    from siamdiff_hf.training.stream import make_stream

    overrides = [*TINY, f"output_dir={tmp_path}", "data.num_workers=2", "data.prefetch_factor=3",
                 "data.files_per_shard=2", "data.shuffle=false"]  # fmt: skip
    config = load_config(QUICKSTART, overrides)
    stream = make_stream(config, Accelerator(cpu=True))
    seen = set()
    while stream.epoch == 0:
        inputs, ids = next(stream)
        assert inputs["batch"].max() < config.data.batch_size
        seen.update(ids)
    assert stream._loader.num_workers == 2 and stream._loader.prefetch_factor == 3
    assert len(seen) == len(list((ROOT / "siamdiff_hf" / "resources" / "structures").glob("*.pdb.gz")))


@pytest.mark.parametrize("prefer", ["pdb", "cif"])
def test_data_prefer_picks_the_file_read_where_an_entry_has_both(tmp_path, prefer):
    """data.prefer reaches the stream: one entry id with a .pdb and a .cif of different chains (to tell them apart)."""
    import gzip

    import numpy as np
    from accelerate import Accelerator
    from testing_utils import mmcif_from_pdb

    from siamdiff_hf import parse_structure
    from siamdiff_hf.training import load_config
    from siamdiff_hf.training.stream import make_stream

    bundled = ROOT / "siamdiff_hf" / "resources" / "structures"
    files = {
        "pdb": gzip.decompress((bundled / "2xcjA.pdb.gz").read_bytes()),
        "cif": mmcif_from_pdb(bundled / "1mr1D.pdb.gz"),
    }
    for fmt, data in files.items():
        (tmp_path / f"AF-QBOTH-F1-model_v4.{fmt}").write_bytes(data)
    overrides = [*TINY, f"output_dir={tmp_path / 'out'}", f"data.sources=[{tmp_path}]", f"data.prefer={prefer}",
                 "data.batch_size=1", "data.random_crop=false", "data.shuffle=false"]  # fmt: skip
    config = load_config(QUICKSTART, overrides)
    inputs, ids = next(make_stream(config, Accelerator(cpu=True)))
    expected = parse_structure(files[prefer], format=prefer).residue_type[:60]
    assert ids == ["AF-QBOTH-F1-model_v4"]
    np.testing.assert_array_equal(inputs["residue_type"].numpy(), expected)


@pytest.mark.parametrize("setting, calls", [("true", 1), ("false", 0)])
def test_cpu_runs_reuse_freed_memory_when_asked(tmp_path, monkeypatch, setting, calls):
    """training.reuse_freed_memory (default false) makes a CPU run keep freed blocks (`training/memory.py`)."""
    import siamdiff_hf.training.loop as loop

    called = []
    monkeypatch.setattr(loop, "reuse_freed_memory", lambda: called.append(True))
    code = main(["pretrain", QUICKSTART, f"output_dir={tmp_path}", *TINY, "stages=[{max_steps: 1}]",
                 "checkpointing.every_n_steps=null", f"training.reuse_freed_memory={setting}"])  # fmt: skip
    assert code == 0 and len(called) == calls
