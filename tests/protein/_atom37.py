"""Atom37 arrays of the test chains for conformer tests.

Uses the package's parser; a tiny fixed-column PDB reader stands in when it is unavailable, so these tests do not
depend on it.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import torch

from siamdiff_hf.protein.constants import ATOM37_INDEX, NUM_ATOM37, RESIDUE_ID, UNKNOWN_RESIDUE

DATA = Path(__file__).resolve().parents[1] / "data"


def load_atom37(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return residue_type (L,), atom_positions (L, 37, 3) float64 and atom_mask (L, 37) of a test chain."""
    try:
        from siamdiff_hf.protein import parse_structure
    except ImportError:
        return _read_pdb(name)
    protein = parse_structure(DATA / name)
    return (
        torch.as_tensor(protein.residue_type).long(),
        torch.as_tensor(protein.atom_positions).double(),
        torch.as_tensor(protein.atom_mask).bool(),
    )


def _read_pdb(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the arrays of :func:`load_atom37` read from fixed PDB columns.

    First model, ATOM records only, hydrogens skipped, first record of each (residue, atom) kept; residues without
    CA dropped.
    """
    residues: dict[tuple[str, str], tuple[int, dict[int, list[float]]]] = {}
    with gzip.open(DATA / name, "rt") as handle:
        for line in handle:
            if line.startswith("ENDMDL"):
                break
            if not line.startswith("ATOM"):
                continue
            atom = line[12:16].strip()
            element = line[76:78].strip() or atom[0]
            if element == "H" or atom.startswith("H") or atom not in ATOM37_INDEX:
                continue
            key = (line[21], line[22:27])
            if key not in residues:
                residues[key] = (RESIDUE_ID.get(line[17:20], UNKNOWN_RESIDUE), {})
            residues[key][1].setdefault(ATOM37_INDEX[atom], [float(line[c : c + 8]) for c in (30, 38, 46)])
    kept = [(rt, atoms) for rt, atoms in residues.values() if ATOM37_INDEX["CA"] in atoms]
    residue_type = torch.tensor([rt for rt, _ in kept])
    positions = torch.zeros(len(kept), NUM_ATOM37, 3, dtype=torch.float64)
    mask = torch.zeros(len(kept), NUM_ATOM37, dtype=torch.bool)
    for i, (_, atoms) in enumerate(kept):
        for slot, xyz in atoms.items():
            positions[i, slot] = torch.tensor(xyz, dtype=torch.float64)
            mask[i, slot] = True
    return residue_type, positions, mask


def pack(*chains: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Return residue_type, atom_positions, atom_mask and batch of chains concatenated (packed batch)."""
    batch = torch.cat([torch.full((c[0].shape[0],), i) for i, c in enumerate(chains)])
    return (*(torch.cat([c[k] for c in chains]) for k in range(3)), batch)
