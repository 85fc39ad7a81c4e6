"""Siamese conformers on real chains: torsion geometry, proline, clashes, packed batches, Gaussian noise."""

from __future__ import annotations

import math

import pytest
import torch
from _atom37 import load_atom37, pack

from siamdiff_hf.models.siamdiff.conformer import CHI_MOVES, chi_angles, gaussian_conformer, torsion_conformer
from siamdiff_hf.protein.constants import (
    ATOM37_INDEX,
    CHI_ATOMS,
    RESIDUE_ATOM14,
    RESIDUE_ID,
    RESIDUE_NAMES,
    UNKNOWN_RESIDUE,
)

FIXED = [ATOM37_INDEX[a] for a in ("N", "CA", "C", "O", "CB", "OXT")]
PRO = RESIDUE_ID["PRO"]


@pytest.fixture(scope="module")
def chain():
    return load_atom37("2xdgA.pdb.gz")


@pytest.fixture(scope="module")
def packed():
    return pack(load_atom37("1mr1D.pdb.gz"), load_atom37("3ny7A.pdb.gz"))


def wrap(angle: torch.Tensor) -> torch.Tensor:
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def new_clashes(before, after, mask, batch, threshold=2.0):
    """Return the number of atom pairs (same protein) closer than threshold after but not before, by brute force."""
    total = 0
    for b in batch.unique():
        rows = batch == b
        m = mask[rows]
        p0, p1 = before[rows][m], after[rows][m]
        d0, d1 = torch.cdist(p0, p0), torch.cdist(p1, p1)
        total += int(((d1 < threshold) & (d0 >= threshold)).sum())
    return total


def intra_residue_geometry(residue_type, before, after, mask):
    """Return (lengths before, after) of intra-residue bonds and (angles before, after) of bonded triples."""
    d0 = torch.cdist(before, before)  # (N, 37, 37)
    pair = mask[:, :, None] & mask[:, None, :]
    bond = pair & (d0 < 1.95) & ~torch.eye(37, dtype=torch.bool)
    bond[residue_type == PRO] = False  # ring closure N-CD is checked separately
    r, i, j = bond.nonzero(as_tuple=True)
    lengths = (d0[r, i, j], torch.cdist(after, after)[r, i, j])
    # Triples i-j-k with i-j and j-k bonded, i != k: angle at j.
    r, i, j, k = (bond[:, :, :, None] & bond[:, None, :, :]).nonzero(as_tuple=True)
    keep = i != k
    r, i, j, k = r[keep], i[keep], j[keep], k[keep]

    def angle(p):
        u, v = p[r, i] - p[r, j], p[r, k] - p[r, j]
        return torch.atan2(torch.linalg.cross(u, v).norm(dim=-1), (u * v).sum(-1))

    return lengths, (angle(before), angle(after)), r.numel()


def reference_rotation(residue_type, positions, mask, delta):
    """Apply delta_chi residue by residue with atom names, straight from the official rule (slow, for tests)."""
    out = positions.clone()
    for n in range(residue_type.shape[0]):
        name = RESIDUE_NAMES[residue_type[n]] if residue_type[n] < UNKNOWN_RESIDUE else None
        if name is None:
            continue
        order = RESIDUE_ATOM14[name]
        for c, atoms in enumerate(CHI_ATOMS[name]):
            if delta[n, c] == 0:
                continue
            a2, a3 = out[n, ATOM37_INDEX[atoms[1]]], out[n, ATOM37_INDEX[atoms[2]]]
            k = (a3 - a2) / (a3 - a2).norm()
            cos, sin = math.cos(delta[n, c]), math.sin(delta[n, c])
            for atom in order[order.index(atoms[3]) :]:
                s = ATOM37_INDEX[atom]
                if not mask[n, s]:
                    continue
                v = out[n, s] - a2
                out[n, s] = a2 + v * cos + torch.linalg.cross(k, v) * sin + k * (k @ v) * (1 - cos)
    return out


def test_tables():
    assert not CHI_MOVES[:, :, FIXED].any()
    for name in ("GLY", "ALA"):
        assert not CHI_MOVES[RESIDUE_ID[name]].any()
    assert not CHI_MOVES[UNKNOWN_RESIDUE].any()
    ile = CHI_MOVES[RESIDUE_ID["ILE"]]
    assert ile[0].nonzero().flatten().tolist() == sorted(ATOM37_INDEX[a] for a in ("CG1", "CG2", "CD1"))
    assert ile[1].nonzero().flatten().tolist() == [ATOM37_INDEX["CD1"]]
    assert CHI_MOVES[RESIDUE_ID["LYS"]].any(-1).tolist() == [True] * 4
    assert CHI_MOVES[RESIDUE_ID["GLN"]].any(-1).tolist() == [True, True, True, False]


def test_dihedral_convention():
    # SER with N, CA, CB, OG placed so that chi1 = +60 degrees (IUPAC: clockwise seen along CA -> CB).
    theta = math.radians(60)
    pos = torch.zeros(1, 37, 3, dtype=torch.float64)
    mask = torch.zeros(1, 37, dtype=torch.bool)
    for atom, xyz in {
        "N": (1, 0, 0),
        "CA": (0, 0, 0),
        "CB": (0, 0, 1),
        "OG": (math.cos(theta), math.sin(theta), 1),
    }.items():
        pos[0, ATOM37_INDEX[atom]] = torch.tensor(xyz, dtype=torch.float64)
        mask[0, ATOM37_INDEX[atom]] = True
    chi, exists = chi_angles(torch.tensor([RESIDUE_ID["SER"]]), pos, mask)
    assert exists.tolist() == [[True, False, False, False]]
    assert chi[0, 0].item() == pytest.approx(theta)
    mask[0, ATOM37_INDEX["OG"]] = False
    assert not chi_angles(torch.tensor([RESIDUE_ID["SER"]]), pos, mask)[1].any()


def test_torsion_matches_reference_rule(chain):
    residue_type, pos, mask = chain
    g = torch.Generator().manual_seed(0)
    new, delta = torsion_conformer(residue_type, pos, mask, skip_proline=False, resample_clashes=False, generator=g)
    torch.testing.assert_close(new, reference_rotation(residue_type, pos, mask, delta), rtol=0, atol=1e-8)
    # Official mode: every existing chi gets a nonzero delta, proline included.
    _, exists = chi_angles(residue_type, pos, mask)
    assert torch.equal(delta != 0, exists)
    assert (delta[residue_type == PRO] != 0).any()


def test_torsion_geometry(packed):
    residue_type, pos, mask, batch = packed
    new, delta = torsion_conformer(residue_type, pos, mask, batch, generator=torch.Generator().manual_seed(1))
    assert new.shape == pos.shape and new.dtype == torch.float64 and delta.shape == (pos.shape[0], 4)
    # Backbone, CB and OXT never move; absent atoms stay as they were.
    assert torch.equal(new[:, FIXED], pos[:, FIXED])
    assert torch.equal(new[~mask], pos[~mask])
    # Bond lengths and bond angles within residues are unchanged.
    (l0, l1), (a0, a1), num_angles = intra_residue_geometry(residue_type, pos, new, mask)
    assert l0.numel() > 1000 and num_angles > 1000
    assert (l1 - l0).abs().max() < 1e-6
    assert (a1 - a0).abs().max() < 1e-6
    # Each existing chi changed by exactly its delta (mod 2 pi); the others are 0.
    chi0, exists = chi_angles(residue_type, pos, mask)
    chi1, _ = chi_angles(residue_type, new, mask)
    assert (wrap(chi1 - chi0 - delta)[exists]).abs().max() < 1e-6
    assert torch.all(delta[~exists] == 0)
    assert (delta[exists] != 0).float().mean() > 0.8  # most residues rotated at the default std
    assert 0.2 * math.pi > delta[delta != 0].std() > 0.05 * math.pi
    # Proline is left alone.
    assert (residue_type == PRO).any()
    assert torch.equal(new[residue_type == PRO], pos[residue_type == PRO])
    assert torch.all(delta[residue_type == PRO] == 0)
    # Resampling leaves no new clash.
    assert new_clashes(pos, new, mask, batch) == 0


def test_clashes_are_resampled(packed):
    residue_type, pos, mask, batch = packed
    kwargs = dict(std=math.pi, skip_proline=False)
    wild, _ = torsion_conformer(
        residue_type, pos, mask, batch, resample_clashes=False, generator=torch.Generator().manual_seed(2), **kwargs
    )
    assert new_clashes(pos, wild, mask, batch) > 10  # large rotations clash without the check
    new, delta = torsion_conformer(residue_type, pos, mask, batch, generator=torch.Generator().manual_seed(2), **kwargs)
    assert new_clashes(pos, new, mask, batch) == 0
    chi0, exists = chi_angles(residue_type, pos, mask)
    chi1, _ = chi_angles(residue_type, new, mask)
    assert (wrap(chi1 - chi0 - delta)[exists]).abs().max() < 1e-6
    rotated = (delta != 0).any(1)
    reverted = exists.any(1) & ~rotated
    assert reverted.any() and rotated.float().sum() > 0.5 * exists.any(1).sum()
    assert torch.equal(new[reverted], pos[reverted])


def test_packed_batch_is_independent_per_protein(packed):
    residue_type, pos, mask, batch = packed
    # Put protein 1 on top of protein 0, then far away: atoms of different proteins never interact.
    second = batch == 1
    centre = lambda p: p[mask & second[:, None]].mean(0) - p[mask & ~second[:, None]].mean(0)  # noqa: E731
    overlap, far = pos.clone(), pos.clone()
    overlap[second] -= centre(pos)
    far[second] += 1000.0
    out = []
    for p in (overlap, far):
        new, delta = torsion_conformer(residue_type, p, mask, batch, generator=torch.Generator().manual_seed(3))
        out.append((new - p, delta))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=0, atol=1e-8)
    assert torch.equal(out[0][1], out[1][1])


def test_torsion_reproducible_and_float32(chain):
    residue_type, pos, mask = chain
    a = torsion_conformer(residue_type, pos, mask, generator=torch.Generator().manual_seed(5))
    b = torsion_conformer(residue_type, pos, mask, generator=torch.Generator().manual_seed(5))
    c = torsion_conformer(residue_type, pos, mask, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    new32, delta32 = torsion_conformer(residue_type, pos.float(), mask, generator=torch.Generator().manual_seed(5))
    assert new32.dtype == torch.float32 and delta32.dtype == torch.float32
    assert (new32.double() - a[0]).abs().max() < 1e-3


def test_gaussian_conformer(packed):
    _, pos, mask, _ = packed
    new = gaussian_conformer(pos, mask, generator=torch.Generator().manual_seed(0))
    again = gaussian_conformer(pos, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(new, again)
    assert torch.equal(new[~mask], pos[~mask])
    noise = (new - pos)[mask]
    assert noise.numel() > 4000
    assert abs(noise.std().item() - 0.3) < 0.01 and noise.mean().abs().item() < 0.01
    wide = gaussian_conformer(pos, mask, std=1.0, generator=torch.Generator().manual_seed(1))
    assert abs((wide - pos)[mask].std().item() - 1.0) < 0.03


def test_nothing_to_rotate():
    residue_type = torch.tensor([RESIDUE_ID["GLY"], RESIDUE_ID["ALA"], UNKNOWN_RESIDUE])
    pos = torch.randn(3, 37, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 37, dtype=torch.bool)
    new, delta = torsion_conformer(residue_type, pos, mask)
    assert torch.equal(new, pos) and torch.all(delta == 0)
    empty = torsion_conformer(residue_type[:0], pos[:0], mask[:0])
    assert empty[0].shape == (0, 37, 3) and empty[1].shape == (0, 4)
