"""Multiview contrast (Zhang et al. 2023, GearNet), encoder-agnostic.

One step of TorchDrug 0.2.1 `models/infograph.py` `MultiviewContrast` with the crops and noises of
`layers/geometry/function.py` (`SubsequenceNode`, `SubspaceNode`, `IdentityNode`, `RandomEdgeMask`), as GearNet's
`config/pretrain/mc_gearnet_edge.yaml` combines them: the encoder's graph of the batch is built once; each of two
views picks a crop (subsequence or subspace) and a noise (identity or random edge mask) for the whole batch,
crops every protein, encodes it; the projected protein embeddings of the two views are contrasted with InfoNCE
(cosine similarity / tau, the other proteins of the batch as negatives).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ...graph import ProteinGraph
from ..graph_views import edges_per_graph, keep_nodes, remove_edges, sample_edges
from ..pretraining_utils import MLP, ObjectiveForPreTraining, ProteinBatch, count_draws, sample_in_groups, uniform
from .configuration_multiview_contrast import MultiviewContrastConfig

CROPS = ("subsequence", "subspace")
NOISES = ("identity", "edge_mask")


@dataclass
class MultiviewContrastOutput(ModelOutput):
    """Output of one multiview contrast step.

    Args:
        loss: minus the InfoNCE mutual information estimate.
        mutual_information: ``mean_b (s_bb - logsumexp_c s_bc)`` with ``s`` the cosine similarities over tau.
        accuracy: fraction of proteins whose most similar other-view embedding is their own.
    """

    loss: torch.Tensor | None = None
    mutual_information: torch.Tensor | None = None
    accuracy: torch.Tensor | None = None


class MultiviewContrastForPreTraining(ObjectiveForPreTraining):
    """An encoder with a projection head `mlp` (D -> D -> D); `forward` returns the contrastive loss.

    Crops keep whole residues (at atom level, every atom of a kept residue; the subspace ball is drawn around a
    random node, `entity_level: residue` in GearNet's config) and the edges between kept nodes, with the features
    computed on the full graph, as TorchDrug crops a graph already built. The choice of crop and noise per view
    (Python's `random.sample` upstream) is drawn from the step's generator.
    """

    config_class = MultiviewContrastConfig
    draw_names = ("views",)

    def build_heads(self, dim: int) -> None:
        self.mlp = MLP(dim, [dim] * self.config.num_mlp_layer)

    def subsequence(self, graph: ProteinGraph, generator: torch.Generator | None) -> ProteinGraph:
        """Return the graph cropped to one random window of at most `max_subsequence_length` residues per protein."""
        length = self.config.max_subsequence_length
        residue_batch = graph.residue_batch()
        sizes = torch.bincount(residue_batch, minlength=graph.num_graphs)
        offsets = torch.cumsum(sizes, 0) - sizes
        starts = (uniform((graph.num_graphs,), generator, sizes.device) * (sizes - length).clamp(min=0)).long()
        local = torch.arange(graph.num_residues, device=sizes.device) - offsets[residue_batch]
        keep = (local >= starts[residue_batch]) & (local < starts[residue_batch] + length)
        return keep_nodes(graph, keep[graph.node_residue])

    def subspace(self, graph: ProteinGraph, generator: torch.Generator | None) -> ProteinGraph:
        """Return the graph cropped to the residues with a node inside a ball around one random node per protein.

        The radius is ``max(subspace_radius, 1.5 x distance to the subspace_min_neighbors-th nearest node)``,
        strict ``<``, as TorchDrug's `SubspaceNode`.
        """
        sizes = torch.bincount(graph.node_batch, minlength=graph.num_graphs)
        centre, _ = sample_in_groups(sizes, 1, generator)
        distance = (graph.positions - graph.positions[centre][graph.node_batch]).norm(dim=-1)
        order = torch.argsort(distance, stable=True)
        order = order[torch.argsort(graph.node_batch[order], stable=True)]
        offsets = torch.cumsum(sizes, 0) - sizes
        rank = offsets + sizes.clamp(max=self.config.subspace_min_neighbors).clamp(min=1) - 1
        radius = (1.5 * distance[order[rank]]).clamp(min=self.config.subspace_radius)
        inside = distance < radius[graph.node_batch]
        residue_kept = torch.zeros(graph.num_residues, dtype=torch.bool, device=inside.device)
        residue_kept[graph.node_residue[inside]] = True
        return keep_nodes(graph, residue_kept[graph.node_residue])

    def edge_mask(self, graph: ProteinGraph, generator: torch.Generator | None) -> ProteinGraph:
        """Return the graph without ``max(1, floor(rate * E_b))`` edges per protein drawn with replacement."""
        counts = count_draws(edges_per_graph(graph), self.config.edge_mask_rate)
        return remove_edges(graph, sample_edges(graph, counts, generator))

    def view(self, graph: ProteinGraph, crop: str, noise: str, generator: torch.Generator | None) -> ProteinGraph:
        """Return one augmented view: `crop` in ("subsequence", "subspace"), then `noise` in ("identity",
        "edge_mask")."""
        cropped = self.subsequence(graph, generator) if crop == "subsequence" else self.subspace(graph, generator)
        return self.edge_mask(cropped, generator) if noise == "edge_mask" else cropped

    def step(
        self, encoder: nn.Module, inputs: ProteinBatch, generator: torch.Generator | None = None,
        views: tuple[tuple[str, str], tuple[str, str]] | None = None,
    ) -> MultiviewContrastOutput:  # fmt: skip
        """One step; `views` ((crop, noise), (crop, noise)) replaces the two sampled choices."""
        graph = inputs.graph(encoder)
        if views is None:
            picks = (uniform((4,), generator, graph.positions.device) * 2).long().tolist()
            views = ((CROPS[picks[0]], NOISES[picks[1]]), (CROPS[picks[2]], NOISES[picks[3]]))
        embeddings = [
            self.mlp(encoder(graph=self.view(graph, crop, noise, generator)).protein_embeddings).float()
            for crop, noise in views
        ]
        score = F.cosine_similarity(embeddings[0].unsqueeze(1), embeddings[1].unsqueeze(0), dim=-1)
        score = score / self.config.tau
        mutual_information = (score.diagonal() - score.logsumexp(dim=-1)).mean()
        own = torch.arange(score.shape[0], device=score.device)
        accuracy = (score.argmax(dim=-1) == own).float().mean()
        return MultiviewContrastOutput(
            loss=-mutual_information, mutual_information=mutual_information, accuracy=accuracy
        )
