"""Shared helpers for the benchmarks: real structures at the paper's batch shapes, timing, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from siamdiff_hf import Protein, ProteinStructureProcessor, parse_structure

ROOT = Path(__file__).resolve().parents[1]
SHARED_AFDB = ROOT.parent / "shared" / "data" / "afdb"
RESULTS = ROOT / "benchmarks" / "results"


def structure_files() -> list[Path]:
    """Return real structures: the AlphaFold DB models beside the repo when present, else the bundled chains."""
    files = sorted(SHARED_AFDB.glob("*.pdb")) if SHARED_AFDB.exists() else []
    return files or sorted((ROOT / "tests" / "data").glob("*.pdb.gz"))


def load_proteins(min_length: int = 0) -> list[Protein]:
    """Return the parsed structures with at least ``min_length`` residues (all of them if none is that long)."""
    proteins = [parse_structure(f) for f in structure_files()]
    long_enough = [p for p in proteins if p.length >= min_length]
    return long_enough or proteins


def batch_of(num_proteins: int, crop: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Return a packed batch of ``num_proteins`` real structures randomly cropped to ``crop`` residues."""
    proteins = load_proteins(crop)
    items = [proteins[i % len(proteins)] for i in range(num_proteins)]
    processor = ProteinStructureProcessor(crop_length=crop, random_crop=True)
    return dict(processor(items, return_tensors="pt", generator=seed))


def timeit(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> dict[str, float]:
    """Return median/min wall seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def environment() -> dict[str, object]:
    """Return the machine facts a reader needs to compare numbers."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_results(name: str, results: dict) -> Path:
    """Write ``results`` (plus the environment) to benchmarks/results/NAME.json and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **results}, indent=2, default=float))
    print(f"wrote {path}")
    return path
