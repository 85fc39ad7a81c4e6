"""Proteins/s of the whole pre-training loop (stream, parse, crop, collate, SiamDiff step, optimizer, logging).

Runs `siamdiff_hf.training.pretrain` itself on short single-stage versions of two run configs:

* ``quickstart``: configs/quickstart.yaml as shipped (small residue GearNet-Edge, batch 4, bundled chains);
* ``paper_residue``: configs/siamdiff_gearnet_edge_residue.yaml (GearNet-Edge 6 x 512, batch 16, crop 150), reading
  the PDB chains in ``../shared/data/pdb_dssp`` when present (else the bundled ones), fp32 and bf16 autocast.

Each run is a fresh ``python -m siamdiff_hf pretrain`` process (accelerate's state, mixed precision included, is
fixed once per process). Throughput is taken from the run's own JSONL log, after ``warmup`` steps, so it counts
everything between two steps. Writes benchmarks/results/pretrain_throughput.json.

    python benchmarks/pretrain_throughput.py [--steps 20 4] [--threads 2] [--setups quickstart paper_residue]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import ROOT, write_results

from siamdiff_hf.training import load_config

SHARED_PDB = Path(os.environ.get("SIAMDIFF_SHARED_DATA", ROOT.parent / "shared" / "data")) / "pdb_dssp"


def setups(steps: tuple[int, int]) -> dict[str, dict]:
    """Return {name: {config, overrides, warmup}} of the benchmarked runs."""
    pdb = str(SHARED_PDB) if SHARED_PDB.exists() else "bundled"
    paper = {
        "config": "configs/siamdiff_gearnet_edge_residue.yaml",
        "overrides": [f"data.sources=[{pdb}]", "data.files_per_shard=1", f"stages=[{{max_steps: {steps[1]}}}]"],
        "warmup": 1,
    }
    quickstart = {"config": "configs/quickstart.yaml", "overrides": [f"stages=[{{max_steps: {steps[0]}}}]"]}
    return {
        "quickstart": {**quickstart, "warmup": 3},
        "paper_residue_fp32": {**paper, "overrides": [*paper["overrides"], "training.mixed_precision=no"]},
        "paper_residue_bf16": {**paper, "overrides": [*paper["overrides"], "training.mixed_precision=bf16"]},
    }


def run(name: str, setup: dict, device: str, threads: int) -> dict:
    """Run one setup in a temporary folder (its own process) and return its throughput."""
    with tempfile.TemporaryDirectory() as folder:
        overrides = [
            *setup["overrides"], f"output_dir={folder}", "logging.log_every=1", "logging.report_to=[none]",
            "logging.progress_bar=false", "checkpointing.every_n_steps=null", f"training.cpu={device == 'cpu'}",
        ]  # fmt: skip
        config = load_config(ROOT / setup["config"], overrides)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
        command = [sys.executable, "-m", "siamdiff_hf", "pretrain", str(ROOT / setup["config"]), *overrides]
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        log = [json.loads(line) for line in (Path(folder) / "logs" / "train_log.jsonl").read_text().splitlines()]
        steps = [r for r in log if "loss" in r]
    first, last = steps[setup["warmup"] - 1], steps[-1]
    seconds = last["time"] - first["time"]
    timed_steps = last["step"] - first["step"]
    timed = steps[setup["warmup"] - 1 :]
    # the median step is robust to other jobs sharing the CPU for a while
    step_seconds = sorted(b["time"] - a["time"] for a, b in itertools.pairwise(timed))
    median_step = step_seconds[len(step_seconds) // 2]
    proteins_per_step = (last["proteins"] - first["proteins"]) / timed_steps
    return {
        "setup": name,
        "config": setup["config"],
        "overrides": setup["overrides"],
        "encoder": config.model.encoder,
        "batch_size": config.data.batch_size,
        "crop_length": config.crop_length,
        "mixed_precision": config.training.mixed_precision,
        "data": config.data.sources,
        "timed_steps": timed_steps,
        "seconds_per_step": seconds / timed_steps,
        "proteins_per_second": (last["proteins"] - first["proteins"]) / seconds,
        "median_seconds_per_step": median_step,
        "proteins_per_second_at_median_step": proteins_per_step / median_step,
        "final_loss": last["loss"],
        "wall_s_including_startup_and_export": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs=2, default=(20, 4), help="steps of quickstart and paper runs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--setups", nargs="+", default=None, help="subset of the setups to run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for name, setup in setups(tuple(args.steps)).items():
        if args.setups and not any(name.startswith(s) for s in args.setups):
            continue
        try:
            result = run(name, setup, args.device, args.threads)
        except subprocess.CalledProcessError as error:  # e.g. killed for memory: record it, go on
            result = {"setup": name, "error": f"run failed with exit status {error.returncode}"}
        else:
            print(
                f"{name}: {result['proteins_per_second']:.2f} proteins/s, {result['seconds_per_step']:.2f} s/step "
                f"(median step {result['median_seconds_per_step']:.2f} s)"
            )
        results.append(result)
        load = os.getloadavg()[0]  # other jobs on a shared machine skew the numbers: keep the load with them
        write_results("pretrain_throughput", {"device": args.device, "threads": args.threads, "load_average_1min": load,
                                              "results": results})  # fmt: skip


if __name__ == "__main__":
    main()
