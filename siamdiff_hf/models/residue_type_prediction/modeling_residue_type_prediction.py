"""Residue type prediction (Zhang et al. 2023, GearNet's "attribute masking" on residues), encoder-agnostic.

One step of TorchDrug 0.2.1 `tasks/pretrain.py` `AttributeMasking` on a residue view: draw
``max(1, floor(0.15 n))`` residues per protein uniformly **with replacement** (a residue may be drawn twice and then
counts twice), hide their types from the encoder, and classify them from their residue representations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ...protein.constants import NUM_RESIDUE_TYPES
from ..pretraining_utils import ObjectiveForPreTraining, ProteinBatch, count_draws, head, masked_mean, sample_in_groups
from .configuration_residue_type_prediction import ResidueTypePredictionConfig


@dataclass
class ResidueTypePredictionOutput(ModelOutput):
    """Output of one residue type prediction step.

    Args:
        loss: mean cross entropy over the masked draws.
        accuracy: argmax accuracy over the masked draws.
    """

    loss: torch.Tensor | None = None
    accuracy: torch.Tensor | None = None


class ResidueTypePredictionForPreTraining(ObjectiveForPreTraining):
    """An encoder with a residue-type head `mlp` (D -> D ... -> 20); `forward` returns the masked-type loss.

    Masking is the encoders' `masked_residues` input: the residue one-hot is zeroed, edge features see GLY, and at
    atom level only N, CA and C of a masked residue are kept (the paper's App. D atom-level rule: "discard all
    non-backbone atoms and set the residue features as zero"). The type is predicted from the encoder's residue
    embedding (atom level: the mean of the residue's atoms, as SiamDiff's sequence head).

    Choices where the official code has none: unknown residues (id 20) have no class and are left out of the loss
    and accuracy (TorchDrug mapped them to GLY when parsing).
    """

    config_class = ResidueTypePredictionConfig
    draw_names = ("masked_residues",)

    def build_heads(self, dim: int) -> None:
        self.mlp = head(dim, dim, self.config.num_mlp_layer, NUM_RESIDUE_TYPES)

    def sample_masked_residues(self, batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return (M,) packed residue indices to mask: ``max(1, floor(rate * n))`` per protein, with replacement."""
        sizes = torch.bincount(batch, minlength=int(batch.max()) + 1)
        index, _ = sample_in_groups(sizes, count_draws(sizes, self.config.mask_rate), generator)
        return index

    def step(
        self, encoder: nn.Module, inputs: ProteinBatch, generator: torch.Generator | None = None,
        masked_residues: torch.Tensor | None = None,
    ) -> ResidueTypePredictionOutput:  # fmt: skip
        """One step; `masked_residues` (M,) packed residue indices replace the sampled ones."""
        if masked_residues is None:
            masked_residues = self.sample_masked_residues(inputs.batch, generator)
        hidden = torch.zeros_like(inputs.batch, dtype=torch.bool)
        hidden[masked_residues] = True
        graph = inputs.graph(encoder, masked_residues=hidden)
        embeddings = encoder(graph=graph).residue_embeddings[masked_residues]
        logits = self.mlp(embeddings).float()
        labels = inputs.residue_type[masked_residues]
        known = labels < NUM_RESIDUE_TYPES
        cross_entropy = F.cross_entropy(logits, labels.clamp(max=NUM_RESIDUE_TYPES - 1), reduction="none")
        accuracy = masked_mean((logits.argmax(-1) == labels).float(), known)
        return ResidueTypePredictionOutput(loss=masked_mean(cross_entropy, known), accuracy=accuracy)
