"""The fine-tuning quickstart's task: residue identity from its surroundings (RES-style), built from any structures.

Each row is one target residue and the residues whose CA lies within ``radius`` Angstrom of the target's CA (its
environment, in chain order). The target's type is hidden from the model (``hidden_residue_types``: one-hot
zeroed, its atoms kept, and its ``residue_type`` set to 0, as the official RES task: SiamDiff `siamdiff/dataset.py`
zeroes the target's residue type and residue features) and is the label; every other residue is labelled -100.
Rows follow the downstream row schema of `siamdiff_hf.data.downstream` (one-structure rows with RES's
``hidden_residue_types`` and ``target_residue``), so the RES head, collator and metrics run on them unchanged.

Proteins, not rows, are split, so no test environment comes from a training protein.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.downstream import DownstreamTask
from ..protein import parse_structure
from ..protein.constants import CA_INDEX, IGNORE_INDEX, NUM_RESIDUE_TYPES, RESIDUE_NAMES

TASK = "residue-identity"
TASK_INFO = DownstreamTask(
    TASK,
    "residue",
    "single_label_classification",
    NUM_RESIDUE_TYPES,
    "accuracy",
    ("accuracy",),
    True,
    "residue environments of the PDB chains bundled with siamdiff-hf (siamdiff_hf/resources/structures)",
)


def environment_rows(protein: Any, targets: np.ndarray, radius: float) -> list[dict[str, Any]]:
    """Return one row per target residue index of ``protein``: its environment, target hidden and labelled."""
    ca = protein.atom_positions[:, CA_INDEX]
    has_ca = protein.atom_mask[:, CA_INDEX]
    rows = []
    for target in targets.tolist():
        near = has_ca & (np.linalg.norm(ca - ca[target], axis=-1) <= radius)
        keep = np.flatnonzero(near)
        position = int(np.searchsorted(keep, target))
        labels = np.full(len(keep), IGNORE_INDEX, dtype=np.int64)
        labels[position] = protein.residue_type[target]
        hidden = np.zeros(len(keep), dtype=bool)
        hidden[position] = True
        residue_type = protein.residue_type[keep].astype(np.int64)
        residue_type[position] = 0  # as the official RES rows (and `hidden_residue_types` hides it anyway)
        residue = RESIDUE_NAMES[protein.residue_type[target]]
        name = f"{protein.chain_id[target]}_{protein.residue_number[target]}_{residue}"
        rows.append({
            "id": f"{protein.id}:{name}",
            "residue_type": residue_type,
            "atom_positions": protein.atom_positions[keep].astype(np.float32),
            "atom_mask": protein.atom_mask[keep].astype(bool),
            "chain_id": [str(c) for c in protein.chain_id[keep]],
            "residue_number": protein.residue_number[keep].astype(np.int64),
            "insertion_code": [str(c) for c in protein.insertion_code[keep]],
            "b_factor": protein.b_factor[keep].astype(np.float32),
            "length": np.int32(len(keep)),
            "labels": labels,
            "hidden_residue_types": hidden,
            "target_residue": name,
        })  # fmt: skip
    return rows


def build_residue_identity(
    structures: list[str | Path],
    splits: dict[str, list[str]] | None = None,
    *,
    targets_per_protein: int = 24,
    radius: float = 10.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Return {split: `datasets.Dataset`} of residue-identity rows from structure files.

    Args:
        structures: structure files (PDB/mmCIF, optionally gzipped); a protein's name is its file's id.
        splits: {split: [protein ids]}; default: the last two proteins (sorted by id) are valid and test.
        targets_per_protein: target residues drawn per protein (standard residues with a CA atom, no repeats).
        radius: environment radius around the target's CA, in Angstrom.
        seed: seeds the draw of targets (the same rows on every run).
    """
    from datasets import Dataset

    proteins = {p.id: p for p in (parse_structure(path) for path in structures)}
    names = sorted(proteins)
    if splits is None:
        if len(names) < 3:
            raise ValueError(f"structures: need at least 3 proteins to split into train/valid/test, got {len(names)}")
        splits = {"train": names[:-2], "valid": [names[-2]], "test": [names[-1]]}
    rng = np.random.default_rng(seed)
    datasets = {}
    for split, ids in splits.items():
        rows = []
        for name in ids:
            protein = proteins[name]
            candidates = np.flatnonzero(protein.atom_mask[:, CA_INDEX] & (protein.residue_type < NUM_RESIDUE_TYPES))
            count = min(targets_per_protein, len(candidates))
            rows += environment_rows(protein, np.sort(rng.choice(candidates, count, replace=False)), radius)
        datasets[split] = Dataset.from_list(rows)
    return datasets
