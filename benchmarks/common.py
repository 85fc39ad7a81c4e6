"""Shared helpers for the benchmarks: real structures at the paper's batch shapes, timing, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from siamdiff_hf import Protein

ROOT = Path(__file__).resolve().parents[1]
SHARED_AFDB = ROOT.parent / "shared" / "data" / "afdb"
RESULTS = ROOT / "benchmarks" / "results"


def structure_files() -> list[Path]:
    """Return real structures: the AlphaFold DB models beside the repo when present, else the bundled chains."""
    files = sorted(SHARED_AFDB.glob("*.pdb")) if SHARED_AFDB.exists() else []
    return files or sorted((ROOT / "tests" / "data").glob("*.pdb.gz"))


def load_proteins(min_length: int = 0) -> list[Protein]:
    """Return the parsed structures with at least ``min_length`` residues (all of them if none is that long)."""
    from siamdiff_hf import parse_structure

    proteins = [parse_structure(f) for f in structure_files()]
    long_enough = [p for p in proteins if p.length >= min_length]
    return long_enough or proteins


def batch_of(num_proteins: int, crop: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Return a packed batch of ``num_proteins`` real structures randomly cropped to ``crop`` residues."""
    from siamdiff_hf import ProteinStructureProcessor

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


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flag(name: str) -> bool | None:
    """Return torch's answer to ``torch.cpu._is_<name>_supported()`` (private API: None where it is missing)."""
    check = getattr(torch.cpu, f"_is_{name}_supported", None)
    return bool(check()) if check is not None else None


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): elsewhere bf16 autocast is emulated and slow."""
    return bool(_cpu_flag("avx512_bf16") or _cpu_flag("amx_tile"))


def load_average() -> list[float] | None:
    """Return the 1/5/15-minute load averages (/proc/loadavg): timings under load are noisy."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def environment() -> dict[str, object]:
    """Return the machine facts a reader needs to compare numbers: CPU model and ISA, native BF16, torch, threads."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": _cpu_flag("avx512_bf16"),
        "amx_tile": _cpu_flag("amx_tile"),
        "native_bf16": native_bf16(),
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_results(name: str, results: dict) -> Path:
    """Write ``results`` (plus the environment, taken at the end of the run) to benchmarks/results/NAME.json.

    Every benchmark that writes JSON goes through here, so each result file says on which CPU (model, ISA, native
    BF16), torch version and thread count it was measured, and under which load.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **results}, indent=2, default=float))
    print(f"wrote {path}")
    return path
