"""Output dataclasses shared by every structure encoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class ProteinEncoderOutput(ModelOutput):
    """Output of a structure encoder on a packed batch.

    Args:
        node_embeddings: (n, D) one row per graph node (residues, or atoms for atom-level models).
        residue_embeddings: (L, D) one row per residue of the batch (atom-level models: mean over its atoms).
        protein_embeddings: (B, D) one row per protein (the model's readout).
        batch: (L,) protein index of each residue row.
        node_batch: (n,) protein index of each node.
        node_residue: (n,) residue row of each node (identity at residue level).
        hidden_states: per-layer node features (input first), when ``output_hidden_states=True``.
    """

    node_embeddings: torch.Tensor | None = None
    residue_embeddings: torch.Tensor | None = None
    protein_embeddings: torch.Tensor | None = None
    batch: torch.Tensor | None = None
    node_batch: torch.Tensor | None = None
    node_residue: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
