"""Downstream readers: rows/s of the first conversion and of cached loads, and collated batches/s per worker.

For each task a small dataset is written in its released format from the bundled chains (tests/data), as the
tests build them (ATOM3D LMDBs for PSR/MSP/PIP/RES, PIP and RES items by the tests' `pip_item`/`res_item`, a
DeepFRI folder for EC), then:

- ``convert_rows_per_s``: `load_downstream` into an empty cache (one process), rows / wall seconds;
- ``cached_rows_per_s``: a second `load_downstream` (the Arrow cache is mapped) plus reading every row as numpy;
- ``collated_batches_per_s``: rows -> `ProteinDataCollator` (H2's, the fine-tuning step's input) at the official
  batch size, in one process (one DataLoader worker's rate);
- ``atom_frame_vs_parser``: `protein_from_atoms` on ATOM3D frames against `parse_structure` on the same chains,
  interleaved (A, B, A, B), the ratio of the two; plus the real ATOM3D LMDB beside the repo when present.

Timings on a shared, loaded machine are noisy: compare the ratios, not the absolute figures.

    .venv/bin/python benchmarks/downstream_data.py [--scale 4]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "data"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _downstream_fixtures as F  # noqa: E402
import numpy as np  # noqa: E402
from common import write_results  # noqa: E402

from siamdiff_hf.data.atom3d import Atom3DLMDB, AtomFrame, protein_from_atoms  # noqa: E402
from siamdiff_hf.data.downstream import DownstreamDataWarning, load_downstream  # noqa: E402
from siamdiff_hf.protein import constants as C  # noqa: E402
from siamdiff_hf.protein import parse_structure  # noqa: E402

CHAINS = ("1dx5I", "1mr1D", "2xcjA", "2xdgA", "3e8mA", "3ny7A")
BATCH = {"ec": 8, "psr": 8, "msp": 8, "pip": 8, "res": 64}  # official per-step batches (SiamDiff configs)
SHARED_LMDB = ROOT.parent / "shared" / "data" / "atom3d_lmdb"


def _shifted(rows, rng):
    shift = rng.normal(size=3)
    out = [list(r) for r in rows]
    for r in out:
        r[F.col("x")], r[F.col("y")], r[F.col("z")] = (r[F.col(a)] + s for a, s in zip("xyz", shift))
    return out


def build_sources(root: Path, scale: int) -> dict[str, Path]:
    """Write every task's released format under ``root``; ``scale`` multiplies the number of items."""
    rng = np.random.default_rng(0)
    rows = {name: F.atom_rows(F.DATA / f"{name}.pdb.gz", ensemble=name) for name in CHAINS}
    psr = [
        {"atoms": F.frame(_shifted(rows[n], rng)), "id": str((n, f"{n}TS{d}")), "scores": {"gdt_ts": rng.uniform()}}
        for d in range(2 * scale)
        for n in CHAINS
    ]
    msp = []
    for n in CHAINS * scale:
        reference = parse_structure(F.DATA / f"{n}.pdb.gz")
        k = int(rng.integers(reference.length))
        mutated = [list(r) for r in rows[n]]
        for r in mutated:
            if r[F.col("residue")] == reference.residue_number[k]:
                r[F.col("resname")] = "GLY" if reference.residue_type[k] else "ALA"
        msp.append({"original_atoms": F.frame(rows[n]), "mutated_atoms": F.frame(mutated), "id": n, "label": "1"})
    pip_item, _ = F.pip_item()
    res = [_res_like(rows[n], 16 * scale) for n in CHAINS[:2]]
    sources = {
        "psr": F.write_atom3d_lmdb(root / "psr" / "train", psr),
        "msp": F.write_atom3d_lmdb(root / "msp" / "train", msp),
        "pip": F.write_atom3d_lmdb(root / "pip" / "train", [pip_item] * scale),
        "res": F.write_atom3d_lmdb(root / "res" / "train", res),
    }
    ec = {f"{n.upper()[:4]}-{n[4]}{i}": f"{n}.pdb.gz" for i in range(2 * scale) for n in CHAINS}
    annotations = {pdb: "1.1.1.1" for pdb in ec}
    sources["ec"] = F.write_deepfri(root / "ec", "ec", {"train": ec}, annotations, ["1.1.1.1", "2.7.11.1"], {})
    return sources


def _res_like(rows, count):
    """A RES item (`res_item`) with the first ``count`` residues of the chain as its environments."""
    cas = [r for r in rows if r[F.col("name")] == "CA" and r[F.col("hetero")] == " "]
    targets = [(r[F.col("chain")], r[F.col("residue")], r[F.col("resname")]) for r in cas[:count]]
    return F.res_item(rows, targets, item_id="r")


def measure_task(task: str, source: Path, cache: Path) -> dict:
    from siamdiff_hf.protein.collator import ProteinDataCollator

    root = source if task == "ec" else source.parent
    start = time.perf_counter()
    ds = load_downstream(task, root, "train", cache_dir=cache)
    convert = time.perf_counter() - start
    start = time.perf_counter()
    cached = load_downstream(task, root, "train", cache_dir=cache).with_format("numpy")
    rows = [cached[i] for i in range(len(cached))]
    read = time.perf_counter() - start
    collator = ProteinDataCollator(label_level="residue" if task == "res" else None)
    size = BATCH[task]
    batches = [rows[i : i + size] for i in range(0, len(rows), size)] or [rows]
    collator(batches[0])
    start = time.perf_counter()
    for batch in batches:
        collator(batch)
    collate = time.perf_counter() - start
    return {
        "rows": len(ds),
        "residues_per_row": float(np.mean([r["length" if "length" in r else "length_1"] for r in rows])),
        "convert_s": convert,
        "convert_rows_per_s": len(ds) / convert,
        "cached_load_and_read_s": read,
        "cached_rows_per_s": len(ds) / read,
        "batch_size": size,
        "collated_batches_per_s": len(batches) / collate,
    }


def atom_frame_vs_parser(repeats: int = 5) -> dict:
    """Time `protein_from_atoms` (ATOM3D frame) and `parse_structure` (file) on the same chains, interleaved."""
    frames = {n: AtomFrame.from_split(F.atom_frame(F.DATA / f"{n}.pdb.gz")) for n in CHAINS}
    paths = {n: F.DATA / f"{n}.pdb.gz" for n in CHAINS}
    frame_times, parse_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for n in CHAINS:
            protein_from_atoms(frames[n])
        frame_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for n in CHAINS:
            parse_structure(paths[n])
        parse_times.append(time.perf_counter() - start)
    frame_s, parse_s = statistics.median(frame_times), statistics.median(parse_times)
    return {
        "structures": len(CHAINS),
        "atom_frame_structures_per_s": len(CHAINS) / frame_s,
        "parse_structure_structures_per_s": len(CHAINS) / parse_s,
        "atom_frame_over_parser_time": frame_s / parse_s,
    }


def real_lmdb() -> dict | None:
    """Decode + convert every item of the real ATOM3D LMDB beside the repo (4 PDB entries), items/s."""
    if not (SHARED_LMDB / "data.mdb").exists():
        return None
    db = Atom3DLMDB(SHARED_LMDB)
    start = time.perf_counter()
    residues = 0
    for i in range(len(db)):
        residues += protein_from_atoms(db.item(i)["atoms"]).length
    elapsed = time.perf_counter() - start
    return {"items": len(db), "residues": residues, "items_per_s": len(db) / elapsed, "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=4, help="items multiplier of the synthetic datasets")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DownstreamDataWarning)
    work = Path(tempfile.mkdtemp(prefix="downstream_bench_"))
    try:
        sources = build_sources(work / "src", args.scale)
        tasks = {task: measure_task(task, source, work / "cache") for task, source in sources.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "note": "one process; the machine was shared and loaded when measured: compare ratios, not absolutes",
        "scale": args.scale,
        "tasks": tasks,
        "atom_frame_vs_parser": atom_frame_vs_parser(),
        "real_atom3d_lmdb": real_lmdb(),
        "atom37_slots": C.NUM_ATOM37,
    }
    write_results("downstream_data", results)
    for task, r in tasks.items():
        convert, cached, collate = r["convert_rows_per_s"], r["cached_rows_per_s"], r["collated_batches_per_s"]
        print(f"{task:4s} rows {r['rows']:4d}  convert {convert:8.1f} rows/s  cached {cached:8.1f} rows/s  "
              f"collate {collate:7.1f} batches/s")  # fmt: skip
    print(results["atom_frame_vs_parser"], results["real_atom3d_lmdb"])


if __name__ == "__main__":
    main()
