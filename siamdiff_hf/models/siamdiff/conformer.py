"""Siamese conformers: a perturbed copy of a protein that SiamDiff treats as a correlated second state.

All functions work on packed atom37 batches (residues of every protein concatenated, ``batch`` giving the protein
of each residue), in torch on the inputs' device, without Python loops over residues or atoms.

- Residue level: :func:`gaussian_conformer`, isotropic Gaussian noise on every present atom.
- Atom level: :func:`torsion_conformer`, side-chain rotations about chi1..chi4 as in the official
  ``siamdiff/rotamer.py``, plus two safeguards the paper describes but the official code lacks (both on by default
  and switchable): proline is not rotated (its ring would open), and residues whose rotated atoms clash are
  resampled a few times and finally left unrotated.
"""

from __future__ import annotations

import math

import torch

from ...graph import radius_graph
from ...protein.constants import (
    ATOM37_INDEX,
    CA_INDEX,
    CHI_ATOMS,
    MAX_CHI,
    NUM_ATOM37,
    NUM_RESIDUE_FEATURES,
    RESIDUE_ATOM14,
    RESIDUE_ID,
    RESIDUE_NAMES,
)

__all__ = ["chi_angles", "gaussian_conformer", "rotate_side_chains", "torsion_conformer"]

_PROLINE = RESIDUE_ID["PRO"]


def _build_tables() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the chi atom37 indices (21, 4, 4), which chis exist (21, 4) and the atoms each chi moves (21, 4, 37).

    Chi ``i`` moves every atom whose atom14 slot is at or after the slot of the chi's fourth atom (the official
    rule); undefined chis point at atom 0 and move nothing. Row 20 (unknown residue) has no chis.
    """
    chi_atoms = torch.zeros(NUM_RESIDUE_FEATURES, MAX_CHI, 4, dtype=torch.long)
    chi_defined = torch.zeros(NUM_RESIDUE_FEATURES, MAX_CHI, dtype=torch.bool)
    moves = torch.zeros(NUM_RESIDUE_FEATURES, MAX_CHI, NUM_ATOM37, dtype=torch.bool)
    for res, name in enumerate(RESIDUE_NAMES):
        slot = {atom: i for i, atom in enumerate(RESIDUE_ATOM14[name])}
        for chi, atoms in enumerate(CHI_ATOMS[name][:MAX_CHI]):
            chi_atoms[res, chi] = torch.tensor([ATOM37_INDEX[a] for a in atoms])
            chi_defined[res, chi] = True
            moved = [ATOM37_INDEX[a] for a, s in slot.items() if s >= slot[atoms[3]]]
            moves[res, chi, moved] = True
    return chi_atoms, chi_defined, moves


CHI_ATOM37, CHI_DEFINED, CHI_MOVES = _build_tables()


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    # Draw float32 on the generator's device (a CPU generator cannot fill a CUDA tensor), then move and cast: the
    # draws do not depend on the coordinates' dtype, so float32 and float64 inputs get the same noise.
    source = generator.device if generator is not None else like.device
    noise = torch.randn(shape, generator=generator, device=source, dtype=torch.float32)
    return noise.to(device=like.device, dtype=like.dtype)


def _gather_atoms(atom_positions: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Return positions (N, *index.shape[1:], 3) of the atom37 slots ``index`` (N, ...) of each residue."""
    flat = index.reshape(index.shape[0], math.prod(index.shape[1:]), 1).expand(-1, -1, 3)
    return atom_positions.gather(1, flat).reshape(*index.shape, 3)


def _dihedral(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, p3: torch.Tensor) -> torch.Tensor:
    """Return the IUPAC dihedral p0-p1-p2-p3 in (-pi, pi] (positive = clockwise seen along p1 -> p2)."""
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1 = torch.linalg.cross(b0, b1)
    n2 = torch.linalg.cross(b1, b2)
    y = (torch.linalg.cross(n1, n2) * b1).sum(-1) / b1.norm(dim=-1).clamp_min(1e-12)
    return torch.atan2(y, (n1 * n2).sum(-1))


def chi_angles(
    residue_type: torch.Tensor, atom_positions: torch.Tensor, atom_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return side-chain dihedrals chi1..chi4 (N, 4) in radians and a (N, 4) bool mask of those that exist.

    A chi exists when the residue type defines it (AlphaFold's ``chi_angles_atoms``, no ARG chi5) and its four
    atoms are present. Missing chis are 0.

    Args:
        residue_type: (N,) residue ids in TorchDrug order (20 = unknown, no chis).
        atom_positions: (N, 37, 3) atom37 coordinates.
        atom_mask: (N, 37) bool, which atoms are present.
    """
    residue_type = residue_type.long()
    device = atom_positions.device
    index = CHI_ATOM37.to(device)[residue_type]  # (N, 4, 4)
    present = atom_mask.bool().gather(1, index.reshape(-1, MAX_CHI * 4)).reshape(-1, MAX_CHI, 4).all(-1)
    exists = CHI_DEFINED.to(device)[residue_type] & present
    p = _gather_atoms(atom_positions, index)  # (N, 4, 4, 3)
    angles = _dihedral(p[..., 0, :], p[..., 1, :], p[..., 2, :], p[..., 3, :])
    return torch.where(exists, angles, torch.zeros_like(angles)), exists


def gaussian_conformer(
    atom_positions: torch.Tensor,
    atom_mask: torch.Tensor,
    *,
    std: float = 0.3,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return (N, 37, 3) positions with independent N(0, std^2) Angstrom noise on every present atom.

    The residue-level siamese conformer of SiamDiff (std 0.3 A). Absent atoms keep their coordinates.

    Args:
        atom_positions: (N, 37, 3) atom37 coordinates.
        atom_mask: (N, 37) bool, which atoms are present.
        std: noise standard deviation in Angstrom.
        generator: optional ``torch.Generator`` for reproducibility.
    """
    noise = _randn(tuple(atom_positions.shape), generator, atom_positions) * std
    return atom_positions + noise * atom_mask[..., None].to(atom_positions.dtype)


def rotate_side_chains(
    residue_type: torch.Tensor, atom_positions: torch.Tensor, moving: torch.Tensor, delta_chi: torch.Tensor
) -> torch.Tensor:
    """Return positions after rotating about chi1..chi4 in order by ``delta_chi`` (N, 4).

    ``moving`` (N, 4, 37) says which atoms chi ``i`` rotates (empty for chis not applied). Rotation: Rodrigues,
    right-hand rule about atom2 -> atom3 of the chi, centred on atom2, each chi on the positions left by the
    previous ones.
    """
    index = CHI_ATOM37.to(atom_positions.device)[residue_type]  # (N, 4, 4)
    positions = atom_positions
    for chi in range(MAX_CHI):
        axis_atoms = _gather_atoms(positions, index[:, chi, 1:3])  # (N, 2, 3)
        origin = axis_atoms[:, 0, None, :]
        axis = axis_atoms[:, 1] - axis_atoms[:, 0]
        axis = (axis / (axis.norm(dim=-1, keepdim=True) + 1e-10))[:, None, :]
        cos = torch.cos(delta_chi[:, chi])[:, None, None]
        sin = torch.sin(delta_chi[:, chi])[:, None, None]
        v = positions - origin
        along = (axis * v).sum(-1, keepdim=True)
        rotated = v * cos + torch.linalg.cross(axis.expand_as(v), v) * sin + axis * along * (1 - cos) + origin
        positions = torch.where(moving[:, chi, :, None], rotated, positions)
    return positions


def _new_clashes(
    original: torch.Tensor,
    current: torch.Tensor,
    atom_mask: torch.Tensor,
    candidate: torch.Tensor,
    batch: torch.Tensor,
    clash_distance: float,
    max_num_neighbors: int,
) -> torch.Tensor:
    """Return (N,) bool: residues whose candidate atoms are in a clash that the original structure did not have.

    A clash is a pair of atoms of the same protein closer than ``clash_distance`` in ``current`` that was not
    closer in ``original`` (this excludes bonded pairs and existing contacts), with at least one ``candidate``
    atom (N, 37) (atoms just rotated, not yet accepted). Candidate atoms are also checked against the *original*
    position of every other candidate atom ("ghosts"), because that residue may end up unrotated: a residue
    accepted now then stays clash-free whatever happens later to the others.
    """
    num_residues = atom_mask.shape[0]
    res, slot = atom_mask.nonzero(as_tuple=True)  # sorted by residue, hence by protein
    moved = candidate[res, slot]
    ghost = moved.nonzero(as_tuple=True)[0]
    ghost_pos = original[res[ghost], slot[ghost]]
    pos_now = torch.cat([current[res, slot], ghost_pos])
    pos_before = torch.cat([original[res, slot], ghost_pos])
    is_ghost = torch.cat([torch.zeros_like(moved), torch.ones_like(moved[ghost])])
    moved = torch.cat([moved, torch.zeros_like(moved[ghost])])
    res = torch.cat([res, res[ghost]])
    protein = batch[res]
    order = torch.argsort(protein, stable=True)  # radius_graph needs a sorted batch vector
    res, pos_now, pos_before, is_ghost, moved, protein = (
        x[order] for x in (res, pos_now, pos_before, is_ghost, moved, protein)
    )
    src, dst = radius_graph(pos_now, clash_distance, protein, max_num_neighbors=max_num_neighbors)
    before = (pos_before[src] - pos_before[dst]).norm(dim=-1)
    # A ghost stands for its residue's original pose: never pair it with that residue's own atoms.
    same_residue_ghost = (is_ghost[src] | is_ghost[dst]) & (res[src] == res[dst])
    clash = (before >= clash_distance) & (moved[src] | moved[dst]) & ~same_residue_ghost
    flagged = torch.zeros(num_residues, dtype=torch.bool, device=atom_mask.device)
    flagged[res[src[clash & moved[src]]]] = True
    flagged[res[dst[clash & moved[dst]]]] = True
    return flagged


def _neighbourhood(
    pending: torch.Tensor,
    original: torch.Tensor,
    current: torch.Tensor,
    atom_mask: torch.Tensor,
    batch: torch.Tensor,
    clash_distance: float,
) -> torch.Tensor:
    """Return (N,) bool: pending residues and every residue with an atom that could lie within reach of theirs.

    Uses CA as each residue's anchor: two residues can hold atoms closer than ``clash_distance`` only if their CAs
    are closer than ``2 * reach + clash_distance``, ``reach`` being the largest atom-to-CA distance seen in either
    pose (triangle inequality), so the bound never misses a pair.
    """
    ca = original[:, CA_INDEX]
    spread = torch.maximum((original - ca[:, None]).norm(dim=-1), (current - ca[:, None]).norm(dim=-1))
    reach = float(torch.where(atom_mask, spread, torch.zeros_like(spread)).max())
    src, dst = radius_graph(ca, 2 * reach + clash_distance, batch, max_num_neighbors=None)
    near = pending.clone()
    near[dst[pending[src]]] = True
    return near


def torsion_conformer(
    residue_type: torch.Tensor,
    atom_positions: torch.Tensor,
    atom_mask: torch.Tensor,
    batch: torch.Tensor | None = None,
    *,
    std: float = 0.1 * math.pi,
    skip_proline: bool = True,
    resample_clashes: bool = True,
    clash_distance: float = 2.0,
    max_tries: int = 5,
    max_num_neighbors: int = 128,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (N, 37, 3) positions with perturbed side-chain torsions and the (N, 4) applied ``delta_chi``.

    The atom-level siamese conformer of SiamDiff: ``delta_chi ~ N(0, std^2)`` radians per residue and chi, applied
    to chi1..chi4 in order (official ``rotamer.py``). Backbone, CB, OXT, GLY/ALA and unknown residues never move;
    a chi is applied only if its four atoms are present. ``delta_chi`` is 0 where nothing was applied.

    Extras stated in the paper but absent from the official code (``skip_proline=False, resample_clashes=False``
    reproduces it exactly):

    - ``skip_proline``: proline is not rotated, since rotating its chis opens the pyrrolidine ring.
    - ``resample_clashes``: a residue whose rotated atoms come closer than ``clash_distance`` to any atom of the
      same protein that was not that close before gets a fresh ``delta_chi`` from its original coordinates, up to
      ``max_tries`` draws in all; residues still clashing after that keep their original coordinates. No new
      clash survives.

    Args:
        residue_type: (N,) residue ids in TorchDrug order.
        atom_positions: (N, 37, 3) atom37 coordinates (float64 gives exact geometry checks).
        atom_mask: (N, 37) bool, which atoms are present.
        batch: (N,) sorted protein index of each residue; None = one protein.
        std: standard deviation of ``delta_chi`` in radians (0.1 pi in the paper).
        skip_proline: leave proline unrotated.
        resample_clashes: resample residues that create clashes.
        clash_distance: heavy-atom clash threshold in Angstrom.
        max_tries: number of draws per residue when resampling.
        max_num_neighbors: neighbour cap of the clash search (generous: few atoms lie within 2 A of an atom).
        generator: optional ``torch.Generator`` for reproducibility.
    """
    residue_type = residue_type.long()
    atom_mask = atom_mask.bool()
    num_residues = residue_type.shape[0]
    if batch is None:
        batch = torch.zeros(num_residues, dtype=torch.long, device=residue_type.device)
    _, applied = chi_angles(residue_type, atom_positions, atom_mask)
    if skip_proline:
        applied &= (residue_type != _PROLINE)[:, None]
    moving = CHI_MOVES.to(atom_mask.device)[residue_type] & applied[..., None] & atom_mask[:, None, :]
    shape = (num_residues, MAX_CHI)
    delta = _randn(shape, generator, atom_positions) * std * applied
    positions = rotate_side_chains(residue_type, atom_positions, moving, delta)
    if not resample_clashes:
        return positions, delta

    moved_atoms = moving.any(1)  # (N, 37) atoms that move when the residue is rotated
    pending = applied.any(1)
    for attempt in range(max_tries if bool(pending.any()) else 0):
        if attempt > 0:
            fresh = _randn(shape, generator, atom_positions) * std * applied
            delta = torch.where(pending[:, None], fresh, delta)
            rotated = rotate_side_chains(residue_type, atom_positions, moving & pending[:, None, None], delta)
            positions = torch.where(pending[:, None, None], rotated, positions)
        candidate = moved_atoms & pending[:, None]
        # After the first draw few residues are pending: check only the atoms around them.
        present = atom_mask
        if attempt > 0:
            near = _neighbourhood(pending, atom_positions, positions, atom_mask, batch, clash_distance)
            present = atom_mask & near[:, None]
        pending = _new_clashes(atom_positions, positions, present, candidate, batch, clash_distance, max_num_neighbors)
        if not bool(pending.any()):
            break
    positions = torch.where(pending[:, None, None], atom_positions, positions)
    delta = torch.where(pending[:, None], torch.zeros_like(delta), delta)
    return positions, delta
