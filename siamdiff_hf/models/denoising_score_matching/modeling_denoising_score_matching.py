"""Denoising score matching on pairwise distances (Guo et al. 2022), re-implemented as the SiamDiff paper did.

The paper (App. D) re-implements the method "on our codebase" with 50 noise levels log-linear from 0.01 to
10.0 and publishes no code, so the choices here follow SiamDiff's own structure denoising (SiamDiff
`siamdiff/task.py`, `SiamDiff.struct_predict`) with a noise-conditional score-matching (NCSN) schedule:
each protein gets a level ``sigma`` drawn uniformly from the 50, its coordinates get ``sigma * eps`` (so the
encoder sees a 3D structure), the graph keeps the clean structure's edges, and for every edge the heads predict
the sigma-weighted score of its perturbed length, ``(d - d_noisy) / sigma``, from ``[h_i * h_j,
dist_mlp(d_noisy)]``. The loss is ``0.5 (prediction - target)^2`` averaged over each protein's edges, then over
proteins (the ``sigma^2`` weighting of NCSN, so every level weighs the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from ..graph_views import edge_graph
from ..pretraining_utils import ObjectiveForPreTraining, ProteinBatch, head, mean_per_graph, normal, sample_levels
from ..siamdiff.modeling_siamdiff import graph_edge_scores
from .configuration_denoising_score_matching import DenoisingScoreMatchingConfig


@dataclass
class DenoisingScoreMatchingOutput(ModelOutput):
    """Output of one denoising score matching step.

    Args:
        loss: ``0.5 (s - (d - d_noisy) / sigma)^2``, mean over each protein's edges, then over proteins.
        noise_level: mean noise scale (Angstrom) of the batch.
    """

    loss: torch.Tensor | None = None
    noise_level: torch.Tensor | None = None


class DenoisingScoreMatchingForPreTraining(ObjectiveForPreTraining):
    """An encoder with SiamDiff's edge heads (`struct_mlp` 2D -> D ... -> 1, `dist_mlp` 1 -> D ... -> D)."""

    config_class = DenoisingScoreMatchingConfig
    draw_names = ("noise_levels", "structure_noise")

    def build_heads(self, dim: int) -> None:
        depth = self.config.num_mlp_layer
        self.struct_mlp = head(2 * dim, dim, depth, 1)
        self.dist_mlp = head(1, dim, depth, dim)

    def step(
        self, encoder: nn.Module, inputs: ProteinBatch, generator: torch.Generator | None = None,
        noise_levels: torch.Tensor | None = None, structure_noise: torch.Tensor | None = None,
    ) -> DenoisingScoreMatchingOutput:  # fmt: skip
        """One step; `noise_levels` (B,) level indices and `structure_noise` (n, 3) standard-normal node noise
        replace the sampled ones (rotate the noise with the input to check invariance)."""
        graph = inputs.graph(encoder)
        positions = graph.positions
        if noise_levels is None:
            noise_levels = sample_levels(graph.num_graphs, self.config.num_noise_level, generator, positions.device)
        if structure_noise is None:
            structure_noise = normal(tuple(positions.shape), generator, positions)
        sigma = self.config.sigmas.to(positions)[noise_levels]
        node_sigma = sigma[graph.node_batch]
        noisy = graph.with_positions(positions + node_sigma[:, None] * structure_noise)
        noisy_lengths = noisy.edge_lengths()
        target = (graph.edge_lengths() - noisy_lengths) / node_sigma[graph.edge_index[1]]
        hidden = encoder(graph=noisy).node_embeddings
        score = graph_edge_scores(self.struct_mlp, self.dist_mlp, noisy, hidden)  # once per node pair
        per_edge = 0.5 * (score.float() - target.float()) ** 2
        loss = mean_per_graph(per_edge, edge_graph(graph), graph.num_graphs)
        return DenoisingScoreMatchingOutput(loss=loss, noise_level=sigma.float().mean())
