"""Data pipeline throughput: parsing against gemmi, tar and Parquet streaming per worker, worker memory.

Reads the AlphaFold DB models in ``../shared/data/afdb`` (beside the repository; override with
``SIAMDIFF_SHARED_DATA``), else the PDB chains in ``tests/data``. Measured side by side in one run:

* ``parse``: `parse_structure(path)` against ``gemmi.read_structure(path)`` on the same files (PDB and mmCIF,
  plain and gzipped), interleaved A, B, A, B over ``--repeats`` rounds; the ratio of the medians is the figure
  (target: within 2x). Biopython (the reference backend) is timed once for scale.
* ``tar``: an AFDB-layout tar of AFDB-sized models (300-500 residues, replicated under fresh ids) streamed by
  `load_afdb` in one process (= one worker), as raw examples and as the collated, cropped batches a SiamDiff step
  consumes (`ProteinStructureProcessor.collate`, 16 proteins cropped to 150 residues); target >= 300/s per worker.
* ``parquet``: the same structures after `prepare_afdb`, raw and collated, in the default ``arrays`` layout and
  the ``packed`` one; target >= 1,000/s per worker.
* ``memory``: resident memory of one process streaming ``--long`` structures from Parquet (and a shorter tar
  stream), sampled along the way: it must stay flat.

Stream rates are the median and the best of five passes (all recorded): the same pass varies by up to 1.6x here
within minutes (not CPU steal: the process's CPU time varies with its wall time).

The machine may be shared: the JSON records the load average; compare ratios, not absolute rates.
Writes ``benchmarks/results/data_pipeline.json`` (``data_pipeline_quick.json`` with ``--quick``, whose 28-structure
Parquet stream fits in one decoded batch and so does not time Parquet decoding). Usage:
``python benchmarks/data_pipeline.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, write_results

from siamdiff_hf.data import load_afdb, prepare_afdb
from siamdiff_hf.protein import ProteinStructureProcessor, parse_structure
from siamdiff_hf.protein.formats import entry_id, is_gzipped, structure_format

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIAMDIFF_SHARED_DATA", REPO.parent / "shared" / "data"))
BATCH, CROP = 16, 150  # the paper's residue-level SiamDiff batch


def model_files() -> dict[str, dict[str, bytes]]:
    """Return {entry id: {format: plain bytes}} of the AFDB models (or the test chains)."""
    folder = SHARED / "afdb"
    paths = sorted(folder.iterdir()) if folder.is_dir() else sorted((REPO / "tests" / "data").glob("*.pdb.gz"))
    models: dict[str, dict[str, bytes]] = {}
    for path in paths:
        fmt = structure_format(path.name)
        if path.is_file() and fmt is not None:
            data = path.read_bytes()
            models.setdefault(entry_id(path.name), {})[fmt] = gzip.decompress(data) if is_gzipped(data) else data
    return models


def bench_parse(models: dict[str, dict[str, bytes]], folder: Path, repeats: int) -> dict:
    """Time parse_structure and gemmi.read_structure on the same files, interleaved; return per-case stats."""
    import gemmi

    results = {}
    for fmt in ("pdb", "cif"):
        for gz in (False, True):
            case = f"{fmt}{'.gz' if gz else ''}"
            paths = []
            for key, formats in models.items():
                if fmt in formats:
                    path = folder / f"{key}.{case}"
                    path.write_bytes(gzip.compress(formats[fmt], 6) if gz else formats[fmt])
                    paths.append(path)
            if not paths:
                continue
            atoms = sum(gemmi.read_structure(str(p))[0].count_atom_sites() for p in paths)
            ours, theirs = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                for p in paths:
                    gemmi.read_structure(str(p))
                theirs.append((time.perf_counter() - start) / len(paths))
                start = time.perf_counter()
                for p in paths:
                    parse_structure(p)
                ours.append((time.perf_counter() - start) / len(paths))
            start = time.perf_counter()
            for p in paths[:8]:
                parse_structure(p, backend="biopython")
            biopython = (time.perf_counter() - start) / min(8, len(paths))
            results[case] = {
                "files": len(paths), "mean_atoms": round(atoms / len(paths)),
                "gemmi_read_structure_ms": round(1e3 * statistics.median(theirs), 3),
                "parse_structure_ms": round(1e3 * statistics.median(ours), 3),
                "ratio_median": round(statistics.median(ours) / statistics.median(theirs), 2),
                "ratio_best": round(min(ours) / min(theirs), 2),
                "biopython_ms": round(1e3 * biopython, 2),
            }  # fmt: skip
            print(case, results[case], flush=True)
    return results


def write_tar(path: Path, models: dict[str, dict[str, bytes]], copies: int) -> int:
    """Write ``copies`` replicas of ``models`` (fresh ids, gzipped cif + pdb per entry) in AFDB's tar layout."""
    count = 0
    with tarfile.open(path, "w") as archive:
        for copy in range(copies):
            for key, formats in models.items():
                new_id = key.replace("-F", f"R{copy}-F", 1)
                for fmt in ("cif", "pdb"):
                    if fmt in formats:
                        data = gzip.compress(formats[fmt], 6)
                        info = tarfile.TarInfo(f"{new_id}.{fmt}.gz")
                        info.size = len(data)
                        archive.addfile(info, io.BytesIO(data))
                count += 1
    return count


def median_of(measure, dataset, passes: int = 5) -> dict:
    """Return the pass of ``measure(dataset)`` with the median rate, every pass's rate and the best one.

    The machine is noisy: the same code streams at rates up to 1.6x apart minutes apart, and interference only ever
    slows a pass down, so the best pass is the closest to what the code itself costs (as `timeit` advises for its
    minimum); the median is what a pass gave typically while this run lasted."""
    runs = sorted((measure(dataset) for _ in range(passes)), key=lambda run: run["structures_per_s"])
    rates = [run["structures_per_s"] for run in runs]
    return {**runs[len(runs) // 2], "passes_structures_per_s": rates, "best_structures_per_s": rates[-1]}


def rate(dataset, limit: int | None = None) -> dict:
    """Iterate ``dataset`` in this process (one worker); return structures/s and residues/s after the first one."""
    count = residues = 0
    first = None
    for example in dataset:
        if first is None:
            first = time.perf_counter()
            continue
        count += 1
        residues += int(example["length"])
        if limit is not None and count >= limit:
            break
    seconds = time.perf_counter() - first
    return {"structures": count, "seconds": round(seconds, 3), "structures_per_s": round(count / seconds, 1),
            "residues_per_s": round(residues / seconds)}  # fmt: skip


def collated_rate(dataset, limit: int | None = None) -> dict:
    """Stream ``dataset`` into cropped, packed torch batches (what the SiamDiff step consumes); structures/s."""
    processor = ProteinStructureProcessor(crop_length=CROP, random_crop=True)
    batch, count, first = [], 0, None
    for example in dataset:
        if first is None:
            first = time.perf_counter()
            continue
        batch.append(example)
        if len(batch) == BATCH:
            inputs = processor.collate(batch)
            assert inputs["batch"].max() == BATCH - 1
            count += BATCH
            batch = []
            if limit is not None and count >= limit:
                break
    seconds = time.perf_counter() - first
    return {"structures": count, "batch": BATCH, "crop": CROP, "seconds": round(seconds, 3),
            "structures_per_s": round(count / seconds, 1)}  # fmt: skip


def rss_mb() -> float:
    """Return this process's resident memory in MB (/proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_profile(dataset, total: int, samples: int = 10) -> dict:
    """Stream ``total`` structures (cycling over ``dataset``) and sample resident memory ``samples`` times."""
    every = max(1, total // samples)
    trace, count = [], 0
    while count < total:
        for _ in dataset:
            count += 1
            if count % every == 0:
                trace.append(round(rss_mb(), 1))
            if count >= total:
                break
    growth = trace[-1] - trace[len(trace) // 2] if len(trace) > 1 else 0.0
    return {"structures": count, "rss_mb": trace, "growth_second_half_mb": round(growth, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of the parse comparison")
    parser.add_argument("--copies", type=int, default=20, help="replicas of the AFDB-sized models in the tar")
    parser.add_argument("--long", type=int, default=10_000, help="structures of the memory stream")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and structures (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.copies, args.long = 2, 2, 300
    torch.set_num_threads(1)
    models = model_files()
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        results: dict = {"source": str(SHARED / "afdb"), "distinct_models": len(models),
                         "settings": {"quick": args.quick, "repeats": args.repeats, "copies": args.copies,
                                      "long": args.long},
                         "load_average_before": load_before}  # fmt: skip
        results["parse"] = bench_parse(models, tmp_path, args.repeats)

        lengths = {key: parse_structure(next(iter(f.values())), format=next(iter(f))).length
                   for key, f in models.items()}  # fmt: skip
        sized = {key: f for key, f in models.items() if 300 <= lengths[key] <= 500} or models
        tar = tmp_path / "UP000000000_0_BENCH_v4.tar"
        entries = write_tar(tar, sized, args.copies)
        results["afdb_sized"] = {"models": len(sized), "tar_entries": entries,
                                 "mean_length": round(float(np.mean([lengths[k] for k in sized])), 1)}  # fmt: skip
        for prefer in ("cif", "pdb"):
            # the tar of the models that have this format (AFDB's tars hold both; the local models may not)
            chosen = {key: f for key, f in sized.items() if prefer in f}
            copies = -(-args.copies * len(sized) // max(len(chosen), 1))  # about as many entries as the pdb tar
            path = tar if len(chosen) == len(sized) else tmp_path / f"UP000000001_0_{prefer.upper()}_v4.tar"
            if path != tar:
                write_tar(path, chosen, copies)
            mean_length = round(float(np.mean([lengths[k] for k in chosen])), 1)
            results[f"tar_{prefer}_models"] = {"models": len(chosen), "copies": copies, "mean_length": mean_length}
            results[f"tar_{prefer}_1_worker"] = median_of(rate, load_afdb(path, prefer=prefer))
            results[f"tar_{prefer}_1_worker_collated"] = median_of(collated_rate, load_afdb(path, prefer=prefer))
            print(prefer, results[f"tar_{prefer}_1_worker"], results[f"tar_{prefer}_1_worker_collated"], flush=True)

        start = time.perf_counter()
        summary = prepare_afdb(tar, tmp_path / "parquet", shard_size=1000, prefer="pdb", progress=False)
        seconds = time.perf_counter() - start
        results["prepare_afdb_1_proc"] = {"kept": summary.kept, "failed": summary.failed,
                                          "seconds": round(seconds, 2),
                                          "structures_per_s": round(summary.kept / seconds, 1)}  # fmt: skip
        parquet = load_afdb(tmp_path / "parquet")
        results["parquet_1_worker"] = median_of(rate, parquet)
        results["parquet_1_worker_collated"] = median_of(collated_rate, parquet)
        print(results["parquet_1_worker"], results["parquet_1_worker_collated"], flush=True)

        prepare_afdb(tar, tmp_path / "packed", shard_size=1000, prefer="pdb", layout="packed", progress=False)
        packed = load_afdb(tmp_path / "packed")
        results["parquet_packed_1_worker"] = median_of(rate, packed)
        results["parquet_packed_1_worker_collated"] = median_of(collated_rate, packed)
        print("packed", results["parquet_packed_1_worker"], results["parquet_packed_1_worker_collated"], flush=True)

        results["memory_parquet"] = memory_profile(parquet, args.long)
        results["memory_tar"] = memory_profile(load_afdb(tar, prefer="pdb"), max(args.long // 10, entries))
        print(results["memory_parquet"], results["memory_tar"], flush=True)
    streams = {f"tar_{p}{c}": (f"tar_{p}_1_worker{c}", 300) for p in ("cif", "pdb") for c in ("", "_collated")}
    streams |= {"parquet_arrays_collated": ("parquet_1_worker_collated", 1000),
                "parquet_packed_collated": ("parquet_packed_1_worker_collated", 1000)}  # fmt: skip
    results["targets"] = {
        "parse_within_2x_of_gemmi (median, best)": {
            case: [r["ratio_median"] <= 2, r["ratio_best"] <= 2] for case, r in results["parse"].items()
        },
        "stream_rate_per_worker (median, best pass)": {
            name: [results[key]["structures_per_s"] >= goal, results[key]["best_structures_per_s"] >= goal]
            for name, (key, goal) in streams.items()
        },
    }
    results["note"] = (
        "Measured side by side in one run; the machine may be shared (see load averages): ratios hold, absolute "
        "rates scale with the load. Per worker = one process, torch 1 thread."
    )
    write_results("data_pipeline_quick" if args.quick else "data_pipeline", results)  # a smoke run keeps the figures


if __name__ == "__main__":
    main()
