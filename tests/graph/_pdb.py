"""Minimal PDB reader for graph tests: fixed columns of ATOM records, no dependency on the package's parser."""

from __future__ import annotations

import gzip
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[1] / "data"


def read_atoms(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, list[str], list[str]]:
    """Return heavy-atom positions (n, 3) float64, residue row (n,), atom names and residue names (per residue).

    First model only; first occurrence of each (residue, atom name) kept (drops altlocs and duplicated records).
    """
    positions, residue, atom_names, residue_names = [], [], [], []
    seen, keys = set(), {}
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if line.startswith("ENDMDL"):
                break
            if not line.startswith("ATOM"):
                continue
            name = line[12:16].strip()
            element = line[76:78].strip() or name[0]
            if element == "H" or name.startswith("H"):
                continue
            res_key = (line[21], line[22:27])
            if (res_key, name) in seen:
                continue
            seen.add((res_key, name))
            if res_key not in keys:
                keys[res_key] = len(keys)
                residue_names.append(line[17:20])
            positions.append([float(line[30:38]), float(line[38:46]), float(line[46:54])])
            residue.append(keys[res_key])
            atom_names.append(name)
    return torch.tensor(positions, dtype=torch.float64), torch.tensor(residue), atom_names, residue_names


def read_ca(path: str | Path) -> tuple[torch.Tensor, list[str]]:
    """Return CA positions (L, 3) float64 and residue names of the residues that have a CA."""
    positions, residue, names, residue_names = read_atoms(path)
    ca = torch.tensor([n == "CA" for n in names])
    return positions[ca], [residue_names[i] for i in residue[ca].tolist()]


def small_residue_graph() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Return CA positions, edge_index, edge_type and num_relation of the residue graph of 2xcjA's first 40 residues."""
    from siamdiff_hf.graph import residue_graph

    positions, _ = read_ca(DATA / "2xcjA.pdb.gz")
    positions = positions[:40]
    zeros = torch.zeros(len(positions), dtype=torch.long)
    edge_index, edge_type, num_relation = residue_graph(positions, zeros, zeros)
    return positions, edge_index, edge_type, num_relation
