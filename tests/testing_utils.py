"""Helpers shared by the tests (importable everywhere: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import gzip
import io

import numpy as np
import torch
from Bio.PDB import MMCIFIO, PDBParser

PROTEIN_FIELDS = (
    "residue_type", "atom_positions", "atom_mask", "residue_number", "insertion_code", "chain_id", "b_factor",
)  # fmt: skip


def assert_same_protein(a, b) -> None:
    """Assert two `Protein`s hold equal arrays of equal dtypes and the same missing-CA counts."""
    for key in PROTEIN_FIELDS:
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype, key
        np.testing.assert_array_equal(x, y, err_msg=key)
    assert a.missing_ca == b.missing_ca


def mmcif_from_pdb(path) -> bytes:
    """Return mmCIF text written by Biopython's MMCIFIO from a gzipped PDB file."""
    with gzip.open(path, "rt") as handle:
        structure = PDBParser(QUIET=True).get_structure(path.name, handle)
    writer = MMCIFIO()
    writer.set_structure(structure)
    out = io.StringIO()
    writer.save(out)
    return out.getvalue().encode()


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    """Return a uniformly random proper rotation matrix (3, 3), float64."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def to64(batch) -> dict[str, torch.Tensor]:
    """Return a copy of a processor batch with floating tensors in float64."""
    return {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
