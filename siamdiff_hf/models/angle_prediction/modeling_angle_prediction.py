"""Angle prediction (Zhang et al. 2023, GearNet), encoder-agnostic; also the base of dihedral prediction.

One step of TorchDrug 0.2.1 `tasks/pretrain.py` `AnglePrediction`: draw 512 pairs of adjacent edges
``k -> j -> i`` per protein uniformly with replacement (the line graph's edges without its self loops and
back-and-forth pairs), remove both edges from the graph, encode, and classify the angle between ``x_i - x_j`` and
``x_k - x_j`` into 8 equal bins of [0, pi] from ``[h_i, h_j, h_k]`` (cross entropy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

from ..graph_views import path_nodes, remove_edges, sample_edge_paths
from ..pretraining_utils import ObjectiveForPreTraining, ProteinBatch, head
from .configuration_angle_prediction import AnglePredictionConfig


@dataclass
class BinnedGeometryOutput(ModelOutput):
    """Output of one angle or dihedral prediction step.

    Args:
        loss: mean cross entropy of the bin predictions over the drawn paths.
        accuracy: their argmax accuracy.
    """

    loss: torch.Tensor | None = None
    accuracy: torch.Tensor | None = None


def bond_angle(positions: torch.Tensor) -> torch.Tensor:
    """Return (M,) the angle at j in [0, pi] of (M, 3, 3) positions ``[x_i, x_j, x_k]``."""
    first, second = positions[:, 0] - positions[:, 1], positions[:, 2] - positions[:, 1]
    return torch.atan2(torch.linalg.cross(first, second).norm(dim=-1), (first * second).sum(-1))


def bin_index(angle: torch.Tensor, num_class: int) -> torch.Tensor:
    """Return the bin of `angle` among `num_class` equal bins of [0, pi) (pi itself in the last bin).

    TorchDrug's ``bucketize(angle, arange(0, pi, pi / num_class), right=True) - 1``.
    """
    boundaries = torch.arange(num_class, dtype=angle.dtype, device=angle.device) * (math.pi / num_class)
    return torch.bucketize(angle, boundaries, right=True) - 1


class AnglePredictionForPreTraining(ObjectiveForPreTraining):
    """An encoder with a bin head `mlp` (3D -> D ... -> 8); `forward` returns the binned-angle loss.

    Paths are drawn without enumerating the line graph (see `graph_views.sample_edge_paths`), the same uniform
    distribution as the official task in memory linear in the graph. Self loops of the graph can be path edges as
    there (their zero vector gives angle 0).
    """

    config_class = AnglePredictionConfig
    draw_names = ("sampled_paths",)
    path_length = 2  # edges per path

    def build_heads(self, dim: int) -> None:
        self.mlp = head((self.path_length + 1) * dim, dim, self.config.num_mlp_layer, self.config.num_class)

    @staticmethod
    def measure(positions: torch.Tensor) -> torch.Tensor:
        """Return (M,) the angle in [0, pi] of the (M, nodes, 3) positions of the drawn paths' nodes."""
        return bond_angle(positions)

    def step(
        self, encoder: nn.Module, inputs: ProteinBatch, generator: torch.Generator | None = None,
        sampled_paths: torch.Tensor | None = None,
    ) -> BinnedGeometryOutput:  # fmt: skip
        """One step; `sampled_paths` (M, edges per path) edge ids in walking order replace the sampled ones."""
        graph = inputs.graph(encoder)
        if sampled_paths is None:
            sampled_paths = sample_edge_paths(graph, self.path_length, self.config.num_sample, generator)
        nodes = path_nodes(graph, sampled_paths)
        labels = bin_index(self.measure(graph.positions[nodes]), self.config.num_class)
        hidden = encoder(graph=remove_edges(graph, sampled_paths)).node_embeddings
        logits = self.mlp(hidden[nodes].flatten(1)).float()
        accuracy = (logits.argmax(-1) == labels).float().mean()
        return BinnedGeometryOutput(loss=F.cross_entropy(logits, labels), accuracy=accuracy)
