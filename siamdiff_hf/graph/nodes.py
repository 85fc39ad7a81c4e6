"""Graph nodes from packed residue tensors: which nodes exist, where they are, and their input features.

Shared by every encoder so that one feature convention holds everywhere (STYLE: no silently differing
conventions). Atom-level node features are ``[element one-hot (18) | residue one-hot (21)]``: the element slot is
the atomic number clamped to 17 (C=6, N=7, O=8, S=16), which is what the published atom-level checkpoints were
pre-trained with (DESIGN §3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..protein import constants as C

_BACKBONE37 = torch.tensor([C.ATOM37_INDEX[a] for a in C.BACKBONE_ATOMS])


@dataclass
class Nodes:
    """Nodes of a packed batch: positions (n, 3), features (n, F), protein (n,) and residue row (n,) of each."""

    positions: torch.Tensor
    features: torch.Tensor
    batch: torch.Tensor
    residue: torch.Tensor


def residue_one_hot(residue_type: torch.Tensor, masked_residues: torch.Tensor | None = None) -> torch.Tensor:
    """Return (L, 21) residue one-hots; masked residues get an all-zero row (official SiamDiff masking)."""
    one_hot = F.one_hot(residue_type.clamp(0, C.UNKNOWN_RESIDUE), C.NUM_RESIDUE_FEATURES).float()
    if masked_residues is not None:
        one_hot = one_hot * (~masked_residues).unsqueeze(-1)
    return one_hot


def edge_residue_type(residue_type: torch.Tensor, masked_residues: torch.Tensor | None = None) -> torch.Tensor:
    """Return residue types as GearNet edge features see them: unknown and masked residues count as GLY (id 0)."""
    types = torch.where(residue_type >= C.NUM_RESIDUE_TYPES, 0, residue_type)
    if masked_residues is not None:
        types = torch.where(masked_residues, 0, types)
    return types


def residue_nodes(
    residue_type: torch.Tensor,
    atom_positions: torch.Tensor,
    batch: torch.Tensor,
    masked_residues: torch.Tensor | None = None,
) -> Nodes:
    """Return one node per residue at its CA, with the 21-wide residue one-hot as feature."""
    residue = torch.arange(residue_type.shape[0], device=residue_type.device)
    positions = atom_positions[:, C.CA_INDEX]
    return Nodes(positions, residue_one_hot(residue_type, masked_residues).to(positions.dtype), batch, residue)


def atom_nodes(
    residue_type: torch.Tensor,
    atom_positions: torch.Tensor,
    atom_mask: torch.Tensor,
    batch: torch.Tensor,
    masked_residues: torch.Tensor | None = None,
) -> Nodes:
    """Return one node per present heavy atom, in ``atom_mask.nonzero()`` order, with 39-wide features.

    Masked residues keep only N, CA and C, and their residue one-hot is zero (official SiamDiff masking).
    """
    if masked_residues is not None:
        backbone = torch.zeros(C.NUM_ATOM37, dtype=torch.bool, device=atom_mask.device)
        backbone[_BACKBONE37.to(atom_mask.device)] = True
        atom_mask = atom_mask & (~masked_residues.unsqueeze(-1) | backbone)
    residue, slot = atom_mask.nonzero(as_tuple=True)
    atomic_number = torch.as_tensor(C.ATOM37_ATOMIC_NUMBER, device=slot.device)[slot]
    element = F.one_hot(atomic_number.clamp(max=C.NUM_ELEMENT_FEATURES - 1), C.NUM_ELEMENT_FEATURES).float()
    features = torch.cat([element, residue_one_hot(residue_type, masked_residues)[residue]], dim=-1)
    return Nodes(atom_positions[residue, slot], features.to(atom_positions.dtype), batch[residue], residue)
