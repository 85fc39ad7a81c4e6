"""`load_downstream`: the paper's fine-tuning benchmarks read from their released files into Arrow datasets.

Tasks (`TASKS` holds each one's level, loss semantics, number of labels and selection metric):

========  ======================================================  =========================================
task      released files                                          one row
========  ======================================================  =========================================
ec        DeepFRI ``nrPDB-EC_2020.04`` (TorchDrug EnzymeCommission)  a chain, 538-way multi-hot ``labels``
go-bp/mf  DeepFRI ``nrPDB-GO_2019.06.18`` (TorchDrug GeneOntology)   a chain, 1943 / 489 / 320-way multi-hot
/cc
psr       ATOM3D ``PSR-split-by-year`` LMDB                        a decoy, ``labels`` = GDT-TS, ids
                                                                   ``target`` and ``decoy``
msp       ATOM3D ``MSP-split-by-sequence-identity-30`` LMDB        (original, mutated) pair, label 1/0
pip       ATOM3D ``PPI-DIPS-split`` LMDB                           (residue, residue) pair crop, label 1/0
res       ATOM3D ``RES-split-by-cath-topology`` LMDB               an environment, ``labels`` per residue
========  ======================================================  =========================================

Row schema (every array a plain list, so ``with_format("numpy"|"torch")`` or the heads' collator take them as
they are). A structure is ``id`` string, ``residue_type`` list<int64> (L) (TorchDrug ids, 20 = unknown),
``atom_positions`` (L, 37, 3) float32 and ``atom_mask`` (L, 37) bool (atom37), ``chain_id`` / ``insertion_code``
list<string> (L), ``residue_number`` list<int64> (L), ``b_factor`` list<float32> (L), ``length`` int32. Pair
tasks carry two structures with suffixes ``_1`` / ``_2`` and ``selection_1`` / ``selection_2`` list<int64>: the
residue rows (0-based within that side) the pair head pools. `load_downstream`'s docstring says how each task is
prepared, as the official code (DeepGraphLearning/SiamDiff `siamdiff/dataset.py`) prepares it.

Conversion runs once (``num_proc`` processes, datasets' progress bar) and is cached as Arrow under ``cache_dir``
keyed by task, split, options, and the size and modification time of every source file; a second load maps the
cached files. Items that cannot be used are skipped and counted; the counts are logged, raised as one
`DownstreamDataWarning`, and returned with ``return_report=True``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import math
import os
import shutil
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from datasets import Array2D, Array3D, Dataset, Features, List, Value, concatenate_datasets
from datasets.exceptions import DatasetGenerationError

from siamdiff_hf.data.atom3d import Atom3DLMDB, AtomFrame, CorruptItemError, protein_from_atoms
from siamdiff_hf.data.deepfri import SPLITS, read_split
from siamdiff_hf.protein import InvalidStructureError, Protein, parse_structure
from siamdiff_hf.protein import constants as C

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when rows change for the same inputs: it is part of the cache key


class DownstreamDataWarning(UserWarning):
    """Items of a downstream dataset were skipped (the message counts them by reason)."""


# --- the task table ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DownstreamTask:
    """What a fine-tuning run needs to know about a task (transformers' ``problem_type`` semantics).

    Attributes:
        name: the `load_downstream` task name.
        level: ``"protein"`` (one label per structure), ``"residue"`` (per residue, -100 = ignored) or ``"pair"``.
        problem_type: ``"multi_label_classification"`` (BCE with logits), ``"regression"`` (MSE) or
            ``"single_label_classification"`` (cross-entropy).
        num_labels: the head's output size.
        metric: the official model-selection metric (the best validation epoch by it is tested).
        metrics: every metric the official configs evaluate.
        greater_is_better: for ``metric``.
        source: the released files.
        official_sizes: (train, valid, test) rows the official loader reports at its defaults, where stated
            (TorchDrug 0.2.1 `EnzymeCommission` / `GeneOntology` docstrings, test cutoff 0.95).
    """

    name: str
    level: str
    problem_type: str
    num_labels: int
    metric: str
    metrics: tuple[str, ...]
    greater_is_better: bool
    source: str
    official_sizes: tuple[int, int, int] | None = None


_GO_SIZES = (27_496, 3_053, 2_991)
_GO = "DeepFRI nrPDB-GO_2019.06.18 (TorchDrug GeneOntology, Zenodo 6622158 GeneOntology.zip)"
TASKS: dict[str, DownstreamTask] = {
    # EC/GO: TorchDrug `tasks.MultipleBinaryClassification`, metrics ("auprc@micro", "f1_max"), selection f1_max
    # (SiamDiff `config/res/ec_gearnet.yaml`; GearNet `config/downstream/GO-*/gearnet_edge.yaml`).
    "ec": DownstreamTask(
        "ec",
        "protein",
        "multi_label_classification",
        538,
        "f1_max",
        ("f1_max", "auprc_micro"),
        True,
        "DeepFRI nrPDB-EC_2020.04 (TorchDrug EnzymeCommission, Zenodo 6622158 EnzymeCommission.zip)",
        (15_011, 1_664, 1_840),
    ),
    "go-bp": DownstreamTask(
        "go-bp",
        "protein",
        "multi_label_classification",
        1943,
        "f1_max",
        ("f1_max", "auprc_micro"),
        True,
        _GO,
        _GO_SIZES,
    ),
    "go-mf": DownstreamTask(
        "go-mf",
        "protein",
        "multi_label_classification",
        489,
        "f1_max",
        ("f1_max", "auprc_micro"),
        True,
        _GO,
        _GO_SIZES,
    ),
    "go-cc": DownstreamTask(
        "go-cc",
        "protein",
        "multi_label_classification",
        320,
        "f1_max",
        ("f1_max", "auprc_micro"),
        True,
        _GO,
        _GO_SIZES,
    ),
    # PSR: TorchDrug PropertyPrediction metrics ("mae", "rmse", "spearmanr"), selection spearmanr (global); the
    # per-target mean Spearman (ATOM3D `examples/psr`) needs the `target` column.
    "psr": DownstreamTask(
        "psr",
        "protein",
        "regression",
        1,
        "spearman",
        ("spearman", "mean_spearman", "mae", "rmse"),
        True,
        "ATOM3D PSR-split-by-year (Zenodo 4915648)",
    ),
    # MSP / PIP: one logit, BCE (SiamDiff `siamdiff/task.py` MSP/PIP), metrics ("auroc", "auprc") / ("auroc", "acc").
    "msp": DownstreamTask(
        "msp",
        "pair",
        "multi_label_classification",
        1,
        "auroc",
        ("auroc", "auprc"),
        True,
        "ATOM3D MSP-split-by-sequence-identity-30 (Zenodo 4962515)",
    ),
    "pip": DownstreamTask(
        "pip",
        "pair",
        "multi_label_classification",
        1,
        "auroc",
        ("auroc", "accuracy"),
        True,
        "ATOM3D PPI-DIPS-split (Zenodo 4911102)",
    ),
    # RES: 20-way cross-entropy at the target residue, selection micro accuracy (SiamDiff `config/atom/res_*.yaml`).
    "res": DownstreamTask(
        "res",
        "residue",
        "single_label_classification",
        C.NUM_RESIDUE_TYPES,
        "accuracy",
        ("accuracy",),
        True,
        "ATOM3D RES-split-by-cath-topology (Zenodo 5026743)",
    ),
}

# Options each task takes, with their defaults (the official settings).
TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "ec": {"test_cutoff": 0.95, "structure_dir": None, "backend": "gemmi"},
    "psr": {},
    "msp": {"max_length": 400},
    "pip": {"num_positives": 10, "negative_ratio": 1, "radius": 30.0, "seed": 0},
    "res": {"target_match": "number"},
}
for _branch in ("go-bp", "go-mf", "go-cc"):
    TASK_OPTIONS[_branch] = TASK_OPTIONS["ec"]
_COMMON_OPTIONS = {"max_items": None}
ATOM3D_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


# --- features ---------------------------------------------------------------------------------------------------


def _structure_features(suffix: str = "") -> dict[str, Any]:
    return {
        f"id{suffix}": Value("string"),
        f"residue_type{suffix}": List(Value("int64")),
        f"atom_positions{suffix}": Array3D(shape=(None, C.NUM_ATOM37, 3), dtype="float32"),
        f"atom_mask{suffix}": Array2D(shape=(None, C.NUM_ATOM37), dtype="bool"),
        f"chain_id{suffix}": List(Value("string")),
        f"residue_number{suffix}": List(Value("int64")),
        f"insertion_code{suffix}": List(Value("string")),
        f"b_factor{suffix}": List(Value("float32")),
        f"length{suffix}": Value("int32"),
    }


def downstream_features(task: str, num_labels: int | None = None) -> Features:
    """Return the `datasets.Features` of ``task``'s rows (``num_labels`` overrides EC/GO's class count)."""
    info = _task(task)
    if task in ("ec", "go-bp", "go-mf", "go-cc"):
        n = num_labels or info.num_labels
        return Features({**_structure_features(), "labels": List(Value("float32"), length=n)})
    if task == "psr":
        return Features(
            {**_structure_features(), "labels": Value("float32"), "target": Value("string"), "decoy": Value("string")}
        )
    if task == "res":
        return Features({
            **_structure_features(), "labels": List(Value("int64")), "hidden_residue_types": List(Value("bool")),
            "target_residue": Value("string"),
        })  # fmt: skip
    pair = {**_structure_features("_1"), **_structure_features("_2")}
    name = "mutation" if task == "msp" else "ensemble"
    return Features({
        "id": Value("string"), **pair, "selection_1": List(Value("int64")), "selection_2": List(Value("int64")),
        "labels": Value("float32"), name: Value("string"),
    })  # fmt: skip


def _task(task: str) -> DownstreamTask:
    if task not in TASKS:
        raise ValueError(f"unknown downstream task {task!r}; choose from {sorted(TASKS)}")
    return TASKS[task]


def structure_columns(protein: Protein, suffix: str = "") -> dict[str, Any]:
    """Return a `Protein` as the structure columns of a row (names with ``suffix``)."""
    return {
        f"id{suffix}": protein.id,
        f"residue_type{suffix}": protein.residue_type,
        f"atom_positions{suffix}": protein.atom_positions,
        f"atom_mask{suffix}": protein.atom_mask,
        f"chain_id{suffix}": protein.chain_id.tolist(),
        f"residue_number{suffix}": protein.residue_number,
        f"insertion_code{suffix}": protein.insertion_code.tolist(),
        f"b_factor{suffix}": protein.b_factor,
        f"length{suffix}": np.int32(protein.length),
    }


# --- per-task conversion ------------------------------------------------------------------------------------------


class _Skips:
    """Counts what a conversion worker skipped; logs the first few of each reason with their detail."""

    LOGGED_PER_REASON = 5

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def skip(self, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        if self.counts[reason] <= self.LOGGED_PER_REASON:
            logger.warning("skipped (%s): %s", reason, detail)


def _generate_rows(units: list[list[Any]], spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield the rows of ``units`` (LMDB item indices or chain ids); writes this worker's counts at the end."""
    skips = _Skips()
    convert = _CONVERTERS[spec["task"]]
    source = Atom3DLMDB(spec["source"]) if spec["kind"] == "lmdb" else spec
    try:
        for unit in units:
            for key in unit:
                skips.counts["items"] += 1
                for row in convert(source, key, spec["options"], skips):
                    skips.counts["rows"] += 1
                    yield row
    finally:
        if isinstance(source, Atom3DLMDB):
            source.close()
        report = Path(spec["report_dir"]) / f"{uuid.uuid4().hex}.json"
        report.write_text(json.dumps(dict(skips.counts)))


def _lmdb_item(lmdb: Atom3DLMDB, index: int, skips: _Skips) -> dict[str, Any] | None:
    try:
        return lmdb.item(index)
    except CorruptItemError as err:
        skips.skip("corrupt_item", str(err))
        return None


def _frame(item: dict[str, Any], key: str, name: str, skips: _Skips) -> AtomFrame | None:
    value = item.get(key)
    if not isinstance(value, AtomFrame):
        skips.skip("corrupt_item", f"{name}: no {key!r} atom frame")
        return None
    return value


def _item_frames(
    lmdb: Atom3DLMDB, index: int, keys: tuple[str, ...], skips: _Skips
) -> tuple[dict[str, Any], str, list[AtomFrame]] | None:
    """Return item ``index``, its name for messages and its atom frames ``keys``; None once one is unreadable."""
    item = _lmdb_item(lmdb, index, skips)
    name = f"{lmdb.path}[{index}]"
    if item is None:
        return None
    frames = []
    for key in keys:
        frame = _frame(item, key, name, skips)
        if frame is None:
            return None
        frames.append(frame)
    return item, name, frames


def _protein(frame: AtomFrame, name: str, id: str, skips: _Skips) -> Protein | None:
    try:
        protein = protein_from_atoms(frame, id=id, source=name)
    except InvalidStructureError as err:
        skips.skip("invalid_structure", str(err))
        return None
    skips.counts["residues_without_ca"] += protein.num_missing_ca
    return protein


def _convert_deepfri(spec: dict[str, Any], chain: str, options: dict[str, Any], skips: _Skips):
    """EC/GO: the chain's structure (its chain selected from a multi-chain file) and its multi-hot terms."""
    path = spec["files"][chain]
    try:
        protein = parse_structure(path, backend=options["backend"], id=chain)
        wanted = chain.split("-")[-1] if "-" in chain else None
        if wanted is not None and len(protein.chains) > 1 and wanted in protein.chains:
            protein = protein.select_chains(wanted)
    except InvalidStructureError as err:
        skips.skip("invalid_structure", str(err))
        return
    skips.counts["residues_without_ca"] += protein.num_missing_ca
    labels = np.zeros(spec["num_labels"], dtype=np.float32)
    labels[spec["positives"][chain]] = 1.0
    yield {**structure_columns(protein), "labels": labels}


def _convert_psr(lmdb: Atom3DLMDB, index: int, options: dict[str, Any], skips: _Skips):
    """PSR: one decoy; label ``scores["gdt_ts"]``; ``target``/``decoy`` from ATOM3D's id ``"('T0759', 'decoy')"``."""
    read = _item_frames(lmdb, index, ("atoms",), skips)
    if read is None:
        return
    item, name, (frame,) = read
    try:
        gdt_ts = float(item["scores"]["gdt_ts"])
    except (KeyError, TypeError, ValueError):
        skips.skip("corrupt_item", f"{name}: no scores['gdt_ts']")
        return
    target, decoy = _target_and_decoy(item)
    protein = _protein(frame, name, f"{target}/{decoy}", skips)
    if protein is not None:
        yield {**structure_columns(protein), "labels": np.float32(gdt_ts), "target": target, "decoy": decoy}


def _target_and_decoy(item: dict[str, Any]) -> tuple[str, str]:
    """Return (target, decoy): ATOM3D stores ``str((target, decoy))`` as the id, made from the decoy's file path
    ``.../<target>/<decoy>.pdb`` (atom3d `examples/psr/dataset/prepare_lmdb.py`, `util.py`), the fallback here."""
    raw = str(item.get("id", ""))
    try:
        value = ast.literal_eval(raw)
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return str(value[0]), str(value[1])
    except (ValueError, SyntaxError):
        pass
    if "file_path" not in item:
        return raw, raw
    path = PurePosixPath(str(item["file_path"]))
    return path.parent.name, path.stem


def _convert_msp(lmdb: Atom3DLMDB, index: int, options: dict[str, Any], skips: _Skips):
    """MSP: (original, mutated); mutated residues = rows whose types differ; optional window around the first."""
    read = _item_frames(lmdb, index, ("original_atoms", "mutated_atoms"), skips)
    if read is None:
        return
    item, name, (original, mutated) = read
    mutation = str(item.get("id", index))
    wt = _protein(original, f"{name}:original_atoms", mutation, skips)
    mt = None if wt is None else _protein(mutated, f"{name}:mutated_atoms", mutation, skips)
    if mt is None:
        return
    if wt.length != mt.length:
        skips.skip("length_mismatch", f"{name}: original has {wt.length} residues, mutated {mt.length}")
        return
    changed = np.flatnonzero(wt.residue_type != mt.residue_type)
    if len(changed) == 0:
        skips.skip("no_mutation", f"{name}: original and mutated residue types are identical")
        return
    start, stop = msp_window(wt.length, int(changed[0]), options["max_length"])
    wt, mt = wt.take(slice(start, stop)), mt.take(slice(start, stop))
    selection = changed[(changed >= start) & (changed < stop)] - start
    yield {
        "id": mutation, **structure_columns(wt, "_1"), **structure_columns(mt, "_2"),
        "selection_1": selection, "selection_2": selection, "labels": np.float32(str(item.get("label")) == "1"),
        "mutation": mutation,
    }  # fmt: skip


def msp_window(length: int, mutated: int, max_length: int | None) -> tuple[int, int]:
    """Return the [start, stop) residue window of SiamDiff's ``TruncateProteinPair(max_length, random=False)``.

    ``start = max(0, min(mutated - max_length // 2, length - max_length))`` when ``length > max_length``, else
    the whole protein (DeepGraphLearning/SiamDiff `siamdiff/transform.py`; there ``mutated`` is the index of the
    mutated residue, here the first one when several differ).
    """
    if max_length is None or length <= max_length:
        return 0, length
    start = max(0, min(mutated - max_length // 2, length - max_length))
    return start, start + max_length


def _convert_pip(lmdb: Atom3DLMDB, index: int, options: dict[str, Any], skips: _Skips):
    """PIP: per ensemble, sampled positive and negative residue pairs, each side cropped around its residue."""
    read = _item_frames(lmdb, index, ("atoms_pairs", "atoms_neighbors"), skips)
    if read is None:
        return
    _, name, (pairs, neighbors) = read
    for e, ensemble in enumerate(np.unique(pairs["ensemble"]).tolist()):
        rng = np.random.default_rng([int(options["seed"]), index, e])
        yield from _pip_ensemble(pairs, neighbors, str(ensemble), rng, options, f"{name}:{ensemble}", skips)


def _bound_subunits(subunits: list[str]) -> tuple[str, str] | None:
    """Return the two bound subunits (atom3d `examples/ppi/dataset/neighbors.py::get_subunits`)."""
    if len(subunits) == 2:
        return subunits[0], subunits[1]
    if len(subunits) == 4:
        ligand = [s for s in subunits if s.endswith("ligand_bound")]
        receptor = [s for s in subunits if s.endswith("receptor_bound")]
        if ligand and receptor:
            return ligand[0], receptor[0]
    return None


def _pip_ensemble(pairs, neighbors, ensemble: str, rng, options, name: str, skips: _Skips):
    rows = pairs.take(pairs["ensemble"] == ensemble)
    order = np.sort(np.unique(rows["subunit"], return_index=True)[1])
    bound = _bound_subunits([str(rows["subunit"][i]) for i in order])
    if bound is None:
        skips.skip("corrupt_item", f"{name}: expected 2 or 4 subunits, got {len(order)}")
        return
    sides = [_protein(rows.take(rows["subunit"] == s), f"{name}:{s}", s, skips) for s in bound]
    if sides[0] is None or sides[1] is None:
        return
    positive = neighbors.take(neighbors["ensemble0"] == ensemble)
    if len(positive) == 0:
        skips.skip("no_positives", f"{name}: no interacting residue pairs")
        return
    pos0 = _residue_rows(sides[0], positive["chain0"], positive["residue0"])
    pos1 = _residue_rows(sides[1], positive["chain1"], positive["residue1"])
    chosen = rng.choice(len(positive), size=min(int(options["num_positives"]), len(positive)), replace=False)
    negatives = _sample_negatives(
        sides[0].length, sides[1].length, pos0, pos1, len(chosen) * int(options["negative_ratio"]), rng
    )
    candidates = [(pos0[i], pos1[i], 1.0) for i in chosen] + [(i, j, 0.0) for i, j in negatives]
    for row0, row1, label in candidates:
        if row0 < 0 or row1 < 0:
            skips.skip("missing_residue", f"{name}: a chosen residue is absent, ambiguous or has no CA")
            continue
        crop0, sel0 = pip_crop(sides[0], int(row0), options["radius"])
        crop1, sel1 = pip_crop(sides[1], int(row1), options["radius"])
        pair_id = (
            f"{ensemble}:{crop0.chain_id[sel0]}{crop0.residue_number[sel0]}-"
            f"{crop1.chain_id[sel1]}{crop1.residue_number[sel1]}"
        )
        yield {
            "id": pair_id, **structure_columns(crop0, "_1"), **structure_columns(crop1, "_2"),
            "selection_1": np.array([sel0]), "selection_2": np.array([sel1]), "labels": np.float32(label),
            "ensemble": ensemble,
        }  # fmt: skip


def _residue_rows(protein: Protein, chains: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Return the row of each (chain, residue number) in ``protein``; -1 where absent or not unique."""
    keys = np.char.add(np.char.add(protein.chain_id.astype(str), "\x00"), protein.residue_number.astype(str))
    query = np.char.add(np.char.add(np.asarray(chains).astype(str), "\x00"), np.asarray(numbers).astype(str))
    unique, first, counts = np.unique(keys, return_index=True, return_counts=True)
    where = np.searchsorted(unique, query).clip(max=len(unique) - 1)
    found = (unique[where] == query) & (counts[where] == 1)
    return np.where(found, first[where], -1)


def _sample_negatives(n0: int, n1: int, pos0: np.ndarray, pos1: np.ndarray, count: int, rng) -> np.ndarray:
    """Return ``count`` distinct (row0, row1) pairs drawn uniformly from the pairs that are not positives."""
    total = n0 * n1
    positive = np.unique(pos0[(pos0 >= 0) & (pos1 >= 0)] * n1 + pos1[(pos0 >= 0) & (pos1 >= 0)])
    count = min(count, total - len(positive))
    if count <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    draw = rng.choice(total, size=min(total, count + len(positive)), replace=False)
    draw = draw[~np.isin(draw, positive)][:count]
    return np.stack(np.divmod(draw, n1), axis=-1)


def pip_crop(protein: Protein, row: int, radius: float = 30.0) -> tuple[Protein, int]:
    """Return (the atoms within ``radius`` of residue ``row``'s CA, the residue's row in the crop).

    The official rule (DeepGraphLearning/SiamDiff `siamdiff/dataset.py::PIPDataset._df_to_graph`): drop
    hydrogens, take every atom of that side whose distance to the chosen residue's CA is at most 30 A (scipy
    ``KDTree.query_ball_point(ca, r=30.0)``), and build the protein from those atoms. Here the atoms are those
    of the parsed side (so waters and ligands, which the official frame keeps, are not there), and a residue
    stays when its CA is inside the ball; the atoms it has inside the ball are kept and the others masked.
    """
    center = protein.atom_positions[row, C.CA_INDEX]
    inside = protein.atom_mask & (np.square(protein.atom_positions - center).sum(-1) <= radius * radius)
    keep = inside[:, C.CA_INDEX]
    crop = protein.take(keep)
    crop.atom_mask = inside[keep]
    crop.atom_positions[~crop.atom_mask] = 0.0
    return crop, int(np.count_nonzero(keep[:row]))


def _convert_res(lmdb: Atom3DLMDB, index: int, options: dict[str, Any], skips: _Skips):
    """RES: one row per environment (``subunit_indices``); the target's type is the label and is hidden."""
    read = _item_frames(lmdb, index, ("atoms",), skips)
    if read is None:
        return
    item, name, (frame,) = read
    labels, environments = item.get("labels"), item.get("subunit_indices")
    if not isinstance(labels, AtomFrame) or "subunit" not in labels or not isinstance(environments, list):
        skips.skip("corrupt_item", f"{name}: no 'labels' frame with 'subunit' or no 'subunit_indices'")
        return
    if len(environments) != len(labels):
        skips.skip("corrupt_item", f"{name}: {len(labels)} labels but {len(environments)} environments")
        return
    item_id = str(item.get("id", index))
    for subunit, atoms in zip(labels["subunit"].tolist(), environments):
        yield from _res_environment(frame, str(subunit), atoms, item_id, options, f"{name}:{subunit}", skips)


def _res_environment(frame: AtomFrame, subunit: str, atoms, item_id: str, options, name: str, skips: _Skips):
    try:
        chain, number, resname = subunit.rsplit("_", 2)
        number = int(number)
        indices = np.asarray(atoms, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(frame)):
            raise ValueError("atom index out of range")
    except (ValueError, TypeError) as err:
        skips.skip("corrupt_item", f"{name}: bad subunit or atom indices ({err})")
        return
    label = C.RESIDUE_ID.get(resname)
    if label is None:
        skips.skip("unknown_label", f"{name}: {resname!r} is not a standard amino acid")
        return
    protein = _protein(frame.take(indices), name, f"{item_id}:{subunit}", skips)
    if protein is None:
        return
    target = protein.residue_number == number
    if options["target_match"] == "chain":
        target &= protein.chain_id == chain
    if np.count_nonzero(target) != 1:
        reason = "missing_target" if not target.any() else "ambiguous_target"
        skips.skip(reason, f"{name}: {np.count_nonzero(target)} residues with a CA match the target")
        return
    protein.residue_type[target] = 0  # as the official `RESDataset.get_item` (type 0, features zeroed)
    yield {
        **structure_columns(protein), "labels": np.where(target, label, -100).astype(np.int64),
        "hidden_residue_types": target, "target_residue": subunit,
    }  # fmt: skip


_CONVERTERS = {
    "ec": _convert_deepfri, "go-bp": _convert_deepfri, "go-mf": _convert_deepfri, "go-cc": _convert_deepfri,
    "psr": _convert_psr, "msp": _convert_msp, "pip": _convert_pip, "res": _convert_res,
}  # fmt: skip


# --- sources, cache and the entry point ---------------------------------------------------------------------------


def find_atom3d_lmdb(root: str | os.PathLike, split: str) -> Path:
    """Return the LMDB of ``split`` under ``root``: ``root`` itself when it is one, else ``<root>/<split>``, else
    ``<root>/**/data/<split>`` (the released archives' ``split-by-.../data/{train,val,test}``)."""
    root = Path(root).expanduser()
    if (root / "data.mdb").exists() or root.name == "data.mdb":
        return root
    if split not in ATOM3D_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(ATOM3D_SPLITS)}")
    name = ATOM3D_SPLITS[split]
    for candidate in (root / name, root / "data" / name):
        if (candidate / "data.mdb").exists():
            return candidate
    found = sorted(p.parent for p in root.glob(f"**/data/{name}/data.mdb"))
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"{root}: several {name!r} LMDBs ({', '.join(map(str, found))}); pass one of them as root")
    raise FileNotFoundError(f"{root}: no ATOM3D LMDB for split {split!r} (looked for {name}/data.mdb)")


def _file_identity(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _options(task: str, options: dict[str, Any]) -> dict[str, Any]:
    allowed = {**_COMMON_OPTIONS, **TASK_OPTIONS[task]}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"load_downstream({task!r}): unknown option(s) {unknown}; {task} takes {sorted(allowed)}")
    resolved = {**allowed, **options}
    if task == "res" and resolved["target_match"] not in ("number", "chain"):
        raise ValueError(f"target_match must be 'number' or 'chain', got {resolved['target_match']!r}")
    if task == "msp" and resolved["max_length"] is not None and int(resolved["max_length"]) < 1:
        raise ValueError(f"max_length must be positive or None, got {resolved['max_length']!r}")
    return resolved


def _default_cache_dir() -> Path:
    from datasets import config

    return Path(config.HF_DATASETS_CACHE) / "siamdiff_hf_downstream"


def _chunks(keys: list[Any], num_proc: int | None) -> list[list[Any]]:
    parts = max(1, (num_proc or 1) * 4)
    size = max(1, math.ceil(len(keys) / parts))
    return [keys[i : i + size] for i in range(0, len(keys), size)] or [[]]


def load_downstream(
    task: str,
    root: str | os.PathLike,
    split: str = "train",
    *,
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    return_report: bool = False,
    **options: Any,
) -> Dataset | tuple[Dataset, dict[str, Any]]:
    """Return one split of a downstream benchmark as a map-style `datasets.Dataset` (rows: module docstring).

    Args:
        task: ``ec``, ``go-bp``, ``go-mf``, ``go-cc``, ``psr``, ``msp``, ``pip`` or ``res`` (see `TASKS`).
        root: EC/GO: the folder of the DeepFRI files (TorchDrug's extracted ``EnzymeCommission/`` or
            ``GeneOntology/`` with ``train/valid/test`` folders, or the split lists with one structure folder).
            ATOM3D tasks: the split's LMDB directory, or a folder holding ``<split>/`` or ``.../data/<split>/``.
        split: ``train``, ``valid`` (alias ``val``) or ``test``.
        num_proc: processes for the first conversion.
        cache_dir: where the Arrow cache goes (default ``$HF_DATASETS_CACHE/siamdiff_hf_downstream``).
        return_report: also return the report: row and item counts, skips by reason, label names (EC/GO).
        **options: per task (defaults = the official settings), plus ``max_items`` (first N items, any task):

            - ec/go: ``test_cutoff=0.95`` (0.3/0.4/0.5/0.7/0.95; test chains flagged 0 in ``*_test.csv`` are
              removed, TorchDrug's rule), ``structure_dir`` (where the chain files are), ``backend="gemmi"``.
              A multi-chain file is restricted to the chain named by the id (``1ABC-A`` -> ``A``).
            - psr: none. One row per decoy, ``labels`` = ``scores["gdt_ts"]``, ``target``/``decoy`` kept (the
              official loader drops them; the per-target mean Spearman needs them).
            - msp: ``max_length=400``: SiamDiff's atom-level ``TruncateProteinPair(max_length=400)`` window (see
              `msp_window`; None keeps whole proteins, as the residue-level configs do). The mutated residues are
              the rows whose residue types differ; ``labels`` = ``item["label"] == "1"``.
            - pip: ``num_positives=10``, ``negative_ratio=1``, ``radius=30.0``, ``seed=0``. Per ensemble, up
              to 10 of the interacting pairs (``atoms_neighbors``) and as many non-interacting pairs of the two
              bound subunits, drawn with a generator seeded by (seed, item, ensemble); each side is cropped to
              the atoms within 30 A of its residue's CA (`pip_crop`). The official stream redraws the positives
              every epoch; here the draw is made once, at conversion.
            - res: ``target_match="number"``: one row per environment; the target is the residue of the
              environment whose number matches the label's (``"A_52_ALA"``) on any chain, as the official code
              matches it (environments with several such residues are skipped, as there); ``"chain"`` also
              matches the chain. ``labels`` = the target's type at the target and -100 elsewhere;
              ``hidden_residue_types`` is True there and ``residue_type`` there is 0, as the official code sets it.

    Hydrogens are dropped, the highest-occupancy altloc kept, modified residues mapped to their parent, waters
    and ligands dropped, and residues without a CA dropped (counted), exactly as `parse_structure` does.

    Raises:
        ValueError / TypeError: unknown task, split or option. FileNotFoundError: the files are not there.
    """
    info = _task(task)
    options = _options(task, options)
    spec: dict[str, Any] = {"task": task, "options": options}
    report: dict[str, Any] = {"task": task, "split": split}
    if task in ("ec", "go-bp", "go-mf", "go-cc"):
        deepfri = read_split(
            root, task, split, test_cutoff=options["test_cutoff"], structure_dir=options["structure_dir"]
        )
        if len(deepfri.terms) != info.num_labels:
            logger.warning("%s: %d terms in the annotation file, the official task has %d", task, len(deepfri.terms),
                           info.num_labels)  # fmt: skip
        keys: list[Any] = deepfri.chains
        spec.update(kind="files", files=deepfri.files, positives=deepfri.positives, num_labels=len(deepfri.terms))
        sources = deepfri.source_files
        report.update(deepfri.counts, label_names=deepfri.terms)
        if info.official_sizes and options["test_cutoff"] == 0.95 and options["max_items"] is None:
            report["official_rows"] = info.official_sizes[("train", "valid", "test").index(SPLITS[split])]
        features = downstream_features(task, len(deepfri.terms))
    else:
        path = find_atom3d_lmdb(root, split)
        lmdb = Atom3DLMDB(path)
        keys = list(range(lmdb.num_examples))
        lmdb.close()  # forked conversion workers open their own
        spec.update(kind="lmdb", source=str(path))
        sources = [str(path / "data.mdb") if path.is_dir() else str(path)]
        features = downstream_features(task)
    if options["max_items"] is not None:
        keys = keys[: int(options["max_items"])]
    key_material = json.dumps(
        {"task": task, "split": split, "options": options, "version": FORMAT_VERSION, "keys": len(keys),
         "sources": _file_identity(sources)}, sort_keys=True, default=str,
    )  # fmt: skip
    key = hashlib.sha256(key_material.encode()).hexdigest()[:20]
    folder = Path(cache_dir or _default_cache_dir()).expanduser() / f"{task}-{split}-{key}"
    dataset, counts = _cached_or_built(folder, features, keys, spec, num_proc, report)
    report.update(counts)
    _announce(report)
    return (dataset, report) if return_report else dataset


def _cached_or_built(folder: Path, features: Features, keys, spec, num_proc, report) -> tuple[Dataset, dict]:
    """Return (dataset, counts) from the cache folder, converting into it first when it is not complete."""
    from filelock import FileLock

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        done = folder / "report.json"
        if not done.exists():
            if folder.exists():
                shutil.rmtree(folder)  # an interrupted conversion
            report_dir = folder / "worker_reports"
            report_dir.mkdir(parents=True)
            built = None
            try:
                built = Dataset.from_generator(
                    _generate_rows, features=features, cache_dir=str(folder / "arrow"), num_proc=num_proc,
                    gen_kwargs={"units": _chunks(keys, num_proc), "spec": {**spec, "report_dir": str(report_dir)}},
                    split="train", fingerprint=folder.name,
                )  # fmt: skip
            except DatasetGenerationError as err:  # datasets wraps the converter's exception: raise that one
                raise (err.__cause__ or err) from None
            except ValueError:  # datasets refuses a split without rows; every item may have been skipped
                if any(json.loads(p.read_text()).get("rows") for p in report_dir.glob("*.json")):
                    raise
            counts: Counter[str] = Counter()
            for part in report_dir.glob("*.json"):
                counts.update(json.loads(part.read_text()))
            shutil.rmtree(report_dir)
            files = [] if built is None else [os.path.relpath(f["filename"], folder) for f in built.cache_files]
            done.write_text(json.dumps({"files": files, "counts": dict(counts)}))
        saved = json.loads(done.read_text())
    parts = [Dataset.from_file(str(folder / f)) for f in saved["files"]]
    if not parts:
        return Dataset.from_dict({name: [] for name in features}, features=features), saved["counts"]
    dataset = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    return dataset, saved["counts"]


def _announce(report: dict[str, Any]) -> None:
    """Log the counts of a load; warn once (`DownstreamDataWarning`) when anything was skipped."""
    quiet = {"task", "split", "label_names", "rows", "items", "listed", "removed_by_cutoff", "residues_without_ca",
             "official_rows"}  # fmt: skip
    skipped = {k: v for k, v in report.items() if k not in quiet and isinstance(v, int) and v}
    where = f"{report['task']}/{report['split']}"
    official = f" (the official loader: {report['official_rows']})" if "official_rows" in report else ""
    logger.info("%s: %d rows%s from %d items; %s", where, report.get("rows", 0), official, report.get("items", 0),
                skipped or "")  # fmt: skip
    if skipped:
        detail = ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.items()))
        warnings.warn(f"{where}: {report.get('rows', 0)} rows; skipped {detail}", DownstreamDataWarning, stacklevel=3)
