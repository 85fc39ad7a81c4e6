"""Graph nodes from packed residue tensors: which nodes exist, where they are, and their input features.

Shared by every encoder so that one feature convention holds everywhere. Atom-level node features are
``[element one-hot (18) | residue one-hot (21)]``: the element slot is the atomic number clamped to 17 (C=6, N=7,
O=8, S=16), as SiamDiff's `siamdiff/transform.py` (`AtomFeature`, ``atom_feature="residue_symbol"``) builds them
for the published atom-level checkpoints.

Two ways to hide a residue's type, both official:
- ``masked_residues`` (SiamDiff's sequence noise, `siamdiff/task.py` `SiamDiff.add_seq_noise`): zero residue
  one-hot, GLY in edge features, and at atom level only N, CA and C kept.
- ``hidden_residue_types`` (the RES task, `siamdiff/task.py` `RES.apply_mask`): zero residue one-hot and GLY in
  edge features (``residue_type`` set to 0), every atom kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..protein import constants as C

_BACKBONE37 = torch.tensor([C.ATOM37_INDEX[a] for a in C.BACKBONE_ATOMS])


@dataclass
class PackedResidues:
    """The processor's packed residue tensors, with the defaults every encoder applies.

    Attributes:
        residue_type: (L,) residue ids (TorchDrug order, 20 = unknown).
        atom_positions: (L, 37, 3) atom37 coordinates. atom_mask: (L, 37) which atoms exist.
        batch: (L,) sorted protein index of each residue.
        residue_index: (L,) sequence position used for sequence separation (default: the packed index).
        chain_index: (L,) chain id (default: one chain per protein, i.e. `batch`).
        masked_residues: (L,) bool or None, SiamDiff masking (see the module docstring).
        hidden_residue_types: (L,) bool or None, types hidden with atoms kept (see the module docstring).
    """

    residue_type: torch.Tensor
    atom_positions: torch.Tensor
    atom_mask: torch.Tensor
    batch: torch.Tensor
    residue_index: torch.Tensor | None = None
    chain_index: torch.Tensor | None = None
    masked_residues: torch.Tensor | None = None
    hidden_residue_types: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.residue_index is None:
            self.residue_index = torch.arange(self.num_residues, device=self.residue_type.device)
        if self.chain_index is None:
            self.chain_index = self.batch
        for name in ("masked_residues", "hidden_residue_types"):
            mask = getattr(self, name)
            if mask is not None and mask.shape != self.residue_type.shape:
                raise ValueError(
                    f"{name} must hold one bool per residue, shape {tuple(self.residue_type.shape)}, got "
                    f"{tuple(mask.shape)}"
                )
            if mask is not None:
                setattr(self, name, mask.bool())

    @property
    def num_residues(self) -> int:
        return self.residue_type.shape[0]

    @property
    def num_graphs(self) -> int:
        """Number of proteins: ``batch.max() + 1`` (0 for an empty batch)."""
        return int(self.batch.max()) + 1 if self.num_residues else 0

    @property
    def type_hidden(self) -> torch.Tensor | None:
        """(L,) bool, residues whose type the model must not see (masked or hidden), or None when there are none."""
        return either(self.masked_residues, self.hidden_residue_types)


def either(first: torch.Tensor | None, second: torch.Tensor | None) -> torch.Tensor | None:
    """Return the element-wise OR of two optional bool masks (None stands for all False)."""
    if first is None or second is None:
        return second if first is None else first
    return first.bool() | second.bool()


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
    """Return one node per residue at its CA, with the 21-wide residue one-hot as feature (zero where masked)."""
    residue = torch.arange(residue_type.shape[0], device=residue_type.device)
    positions = atom_positions[:, C.CA_INDEX]
    return Nodes(positions, residue_one_hot(residue_type, masked_residues).to(positions.dtype), batch, residue)


def atom_nodes(
    residue_type: torch.Tensor,
    atom_positions: torch.Tensor,
    atom_mask: torch.Tensor,
    batch: torch.Tensor,
    masked_residues: torch.Tensor | None = None,
    hidden_residue_types: torch.Tensor | None = None,
) -> Nodes:
    """Return one node per present heavy atom, in ``atom_mask.nonzero()`` order, with 39-wide features.

    Masked residues keep only N, CA and C, and their residue one-hot is zero (official SiamDiff masking); residues
    with hidden types keep every atom with a zero residue one-hot (official RES).
    """
    type_hidden = either(masked_residues, hidden_residue_types)
    if masked_residues is not None:
        backbone = torch.zeros(C.NUM_ATOM37, dtype=torch.bool, device=atom_mask.device)
        backbone[_BACKBONE37.to(atom_mask.device)] = True
        atom_mask = atom_mask & (~masked_residues.unsqueeze(-1) | backbone)
    residue, slot = atom_mask.nonzero(as_tuple=True)
    atomic_number = torch.as_tensor(C.ATOM37_ATOMIC_NUMBER, device=slot.device)[slot]
    element = F.one_hot(atomic_number.clamp(max=C.NUM_ELEMENT_FEATURES - 1), C.NUM_ELEMENT_FEATURES).float()
    features = torch.cat([element, residue_one_hot(residue_type, type_hidden)[residue]], dim=-1)
    return Nodes(atom_positions[residue, slot], features.to(atom_positions.dtype), batch[residue], residue)


def protein_nodes(residues: PackedResidues, level: str) -> Nodes:
    """Return the nodes of `level` (``"residue"``: one per CA, ``"atom"``: one per present heavy atom)."""
    if level == "residue":
        return residue_nodes(residues.residue_type, residues.atom_positions, residues.batch, residues.type_hidden)
    if level == "atom":
        return atom_nodes(
            residues.residue_type, residues.atom_positions, residues.atom_mask, residues.batch,
            residues.masked_residues, residues.hidden_residue_types,
        )  # fmt: skip
    raise ValueError(f"level must be 'residue' or 'atom', got {level!r}")
