"""Data pipeline throughput: structures/s from an AFDB tar shard (gemmi, Biopython) and from Parquet.

Reads the AlphaFold DB models in ``../shared/data/afdb`` (beside the repository; override with
``SIAMDIFF_SHARED_DATA``) and skips when they are absent. The models are packed into AFDB-layout tars (``.cif.gz``
and ``.pdb.gz`` per entry where the folder has both), replicated under fresh ids to get stable timings, then read

* in the main process (one worker) and through a DataLoader with 2 workers (2 shards), for each backend;
* after ``prepare_afdb`` as Parquet, plain and with ``with_format("numpy")``.

Writes ``benchmarks/results/data_pipeline.json``. Usage: ``python benchmarks/data_pipeline.py [--copies N]``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import platform
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from siamdiff_hf.data import load_afdb, prepare_afdb
from siamdiff_hf.data.sources import entry_id, structure_format

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIAMDIFF_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "benchmarks" / "results" / "data_pipeline.json"


def afdb_models(folder: Path) -> dict[str, dict[str, bytes]]:
    """Return {entry id: {format: gzipped bytes}} for the AFDB model files directly in ``folder``."""
    models: dict[str, dict[str, bytes]] = {}
    for path in sorted(folder.iterdir()):
        fmt = structure_format(path.name)
        if not path.is_file() or fmt is None or not path.name.startswith("AF-"):
            continue
        data = path.read_bytes()
        models.setdefault(entry_id(path.name), {})[fmt] = data if data[:2] == b"\x1f\x8b" else gzip.compress(data, 6)
    return models


def write_tar(path: Path, models: dict[str, dict[str, bytes]], copies: int, offset: int = 0) -> int:
    """Write ``copies`` replicas of ``models`` (fresh ids) in AFDB's tar layout; return the number of entries."""
    count = 0
    with tarfile.open(path, "w") as archive:
        for copy in range(offset, offset + copies):
            for key, formats in models.items():
                new_id = key.replace("-F", f"R{copy}-F", 1)
                for fmt in ("cif", "pdb"):
                    if fmt in formats:
                        info = tarfile.TarInfo(f"{new_id}.{fmt}.gz")
                        info.size = len(formats[fmt])
                        archive.addfile(info, io.BytesIO(formats[fmt]))
                count += 1
    return count


def rate(dataset, workers: int = 0, limit: int | None = None) -> dict:
    """Iterate ``dataset`` (optionally through a DataLoader); return steady-state structures/s and residues/s.

    The clock starts at the first example, so worker start-up (reported apart as ``startup_s``) is excluded.
    """
    iterable = dataset
    if workers:
        iterable = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=lambda x: x)
    start = time.perf_counter()
    first = None
    count = residues = 0
    for example in iterable:
        if first is None:
            first = time.perf_counter()
        else:
            count += 1
            residues += int(example["length"])
        if limit is not None and count >= limit:
            break
    seconds = time.perf_counter() - first
    return {"structures": count, "seconds": round(seconds, 3), "startup_s": round(first - start, 3),
            "structures_per_s": round(count / seconds, 1), "residues_per_s": round(residues / seconds)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=6, help="replicas of the AFDB folder per tar shard")
    parser.add_argument("--biopython-limit", type=int, default=60, help="structures timed with Biopython")
    args = parser.parse_args()
    folder = SHARED / "afdb"
    if not folder.is_dir():
        print(f"skipped: {folder} not found")
        return
    torch.set_num_threads(1)
    models = afdb_models(folder)
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()},
        "source": str(folder),
        "distinct_models": len(models),
        "entries_with_both_formats": sum(len(f) == 2 for f in models.values()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        tars = [tmp_path / f"UP0000000{i}_0_BENCH_v4.tar" for i in range(2)]
        per_tar = [write_tar(t, models, args.copies, offset=i * args.copies) for i, t in enumerate(tars)]
        results["tar_entries"] = per_tar
        lengths = [int(e["length"]) for e in load_afdb(tars[0], prefer="pdb")]
        results["mean_length"] = round(float(np.mean(lengths)), 1)
        for prefer in ("pdb", "cif"):
            results[f"tar_gemmi_{prefer}_1_worker"] = rate(load_afdb(tars[0], prefer=prefer))
            results[f"tar_gemmi_{prefer}_2_workers"] = rate(load_afdb(tars, prefer=prefer), workers=2)
            bio = load_afdb(tars[0], prefer=prefer, backend="biopython")
            results[f"tar_biopython_{prefer}_1_worker"] = rate(bio, limit=args.biopython_limit)
            bio2 = load_afdb(tars, prefer=prefer, backend="biopython")
            results[f"tar_biopython_{prefer}_2_workers"] = rate(bio2, workers=2, limit=args.biopython_limit)
        start = time.perf_counter()
        summary = prepare_afdb(tars, tmp_path / "parquet", num_proc=2, shard_size=100, prefer="pdb", progress=False)
        seconds = time.perf_counter() - start
        results["prepare_afdb_2_proc"] = {"kept": summary.kept, "failed": summary.failed, "seconds": round(seconds, 2),
                                          "structures_per_s": round(summary.kept / seconds, 1)}  # fmt: skip
        parquet = load_afdb(tmp_path / "parquet")
        results["parquet_1_worker"] = rate(parquet)
        results["parquet_2_workers"] = rate(parquet, workers=2)
        results["parquet_numpy_1_worker"] = rate(parquet.with_format("numpy"))
        results["parquet_torch_2_workers"] = rate(parquet.with_format("torch"), workers=2)
    # Consumption: DESIGN §12 measured TorchDrug's residue GearNet-Edge at 16 x 150 residues: 20.8 s per
    # forward+backward on this CPU (0.77 proteins/s). A GPU step of the paper's residue setup is assumed at
    # ~0.1 s for 16-32 proteins of 150 residues, i.e. ~160-320 proteins/s per GPU.
    slowest_gemmi = min(results[f"tar_gemmi_{p}_1_worker"]["structures_per_s"] for p in ("pdb", "cif"))
    results["consumption"] = {
        "cpu_residue_step_proteins_per_s": round(16 / 20.8, 2),
        "gpu_residue_step_proteins_per_s_assumed": [160, 320],
        "workers_needed_per_gpu_tar_gemmi": round(320 / slowest_gemmi, 2),
        "workers_needed_per_gpu_parquet": round(320 / results["parquet_1_worker"]["structures_per_s"], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
