"""Dihedral prediction (Zhang et al. 2023, GearNet), encoder-agnostic: angle prediction on paths of three edges.

One step of TorchDrug 0.2.1 `tasks/pretrain.py` `DihedralPrediction`: draw 512 paths ``k -> t -> j -> i`` per
protein uniformly with replacement (the second line graph's edges without self loops and back-and-forth steps),
remove their three edges, encode, and classify the unsigned dihedral between the planes (t - j, i - j) and
(t - j, k - t) into 8 equal bins of [0, pi] from ``[h_i, h_j, h_k, h_t]``.
"""

from __future__ import annotations

import torch

from ..angle_prediction.modeling_angle_prediction import AnglePredictionForPreTraining
from .configuration_dihedral_prediction import DihedralPredictionConfig


def plane_dihedral(positions: torch.Tensor) -> torch.Tensor:
    """Return (M,) the unsigned dihedral in [0, pi] of (M, 4, 3) positions ``[x_i, x_j, x_k, x_t]`` (TorchDrug's)."""
    i, j, k, t = positions.unbind(1)
    axis = t - j
    first, second = torch.linalg.cross(axis, i - j), torch.linalg.cross(axis, k - t)
    return torch.atan2(torch.linalg.cross(first, second).norm(dim=-1), (first * second).sum(-1))


class DihedralPredictionForPreTraining(AnglePredictionForPreTraining):
    """An encoder with a bin head `mlp` (4D -> D ... -> 8); `forward` returns the binned-dihedral loss.

    Everything but the path length and the measured quantity is angle prediction's (see its class docstring).
    """

    config_class = DihedralPredictionConfig
    path_length = 3

    @staticmethod
    def measure(positions: torch.Tensor) -> torch.Tensor:
        """Return (M,) the unsigned dihedral of the (M, 4, 3) positions of the drawn paths' nodes."""
        return plane_dihedral(positions)
