"""Distance prediction (Zhang et al. 2023, GearNet), encoder-agnostic.

One step of TorchDrug 0.2.1 `tasks/pretrain.py` `DistancePrediction`: draw 256 edges per protein uniformly with
replacement from the encoder's graph, remove those edge ids from the graph (their length would otherwise be an
input), encode, and regress each drawn edge's length (Angstrom) from ``[h_source, h_target]`` with a mean squared
error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ..graph_views import remove_edges, sample_edges
from ..pretraining_utils import ObjectiveForPreTraining, ProteinBatch, head
from .configuration_distance_prediction import DistancePredictionConfig


@dataclass
class DistancePredictionOutput(ModelOutput):
    """Output of one distance prediction step.

    Args:
        loss: mean squared error (Angstrom^2) of the predicted lengths of the drawn edges.
        mean_absolute_error: their mean absolute error (Angstrom).
    """

    loss: torch.Tensor | None = None
    mean_absolute_error: torch.Tensor | None = None


class DistancePredictionForPreTraining(ObjectiveForPreTraining):
    """An encoder with an edge-length head `mlp` (2D -> D ... -> 1); `forward` returns the length regression loss.

    The graph is the encoder's own (`build_graph`); at residue level its self loops (sequential offset 0, length 0)
    can be drawn, as in the official task. Edges drawn twice are removed once and counted twice.
    """

    config_class = DistancePredictionConfig
    draw_names = ("sampled_edges",)

    def build_heads(self, dim: int) -> None:
        self.mlp = head(2 * dim, dim, self.config.num_mlp_layer, 1)

    def step(
        self, encoder: nn.Module, inputs: ProteinBatch, generator: torch.Generator | None = None,
        sampled_edges: torch.Tensor | None = None,
    ) -> DistancePredictionOutput:  # fmt: skip
        """One step; `sampled_edges` (M,) edge ids of the encoder's graph replace the sampled ones."""
        graph = inputs.graph(encoder)
        if sampled_edges is None:
            sampled_edges = sample_edges(graph, self.config.num_sample, generator)
        source, target = graph.edge_index[:, sampled_edges]
        length = (graph.positions[source] - graph.positions[target]).norm(dim=-1).float()
        hidden = encoder(graph=remove_edges(graph, sampled_edges)).node_embeddings
        prediction = self.mlp(torch.cat([hidden[source], hidden[target]], dim=-1)).squeeze(-1).float()
        return DistancePredictionOutput(
            loss=F.mse_loss(prediction, length), mean_absolute_error=(prediction - length).abs().mean()
        )
