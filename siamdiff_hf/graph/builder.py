"""Residue- and atom-level relational graphs of TorchDrug's GearNet-Edge, and their GearNet edge features.

Relations at residue level, in TorchDrug's config order (changing it silently permutes relations):
0..4 sequential (offset -2..2 within a chain, self loops included), 5 radius, 6 kNN. Atom level has one relation.
Edges run source (neighbour) -> target (centre); messages are aggregated at the target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from siamdiff_hf.graph.neighbors import knn_graph, radius_graph
from siamdiff_hf.protein.constants import NUM_RESIDUE_TYPES

SEQUENTIAL_RELATIONS = 5  # with the default sequential_max_distance=2; radius is relation 5, kNN 6
MAX_SEQUENCE_SEPARATION = 10  # the separation one-hot has slots 0..10
ZERO_LENGTH = 1e-10  # spatial edges shorter than this are dropped (TorchDrug)


def residue_graph(
    positions: torch.Tensor,
    batch: torch.Tensor,
    chain_index: torch.Tensor,
    residue_index: torch.Tensor | None = None,
    *,
    sequential_max_distance: int = 2,
    radius: float = 10.0,
    knn_k: int = 10,
    min_distance: int = 5,
    max_num_neighbors: int = 32,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Return GearNet-Edge's residue graph: sequential, radius and kNN edges over CA positions.

    Args:
        positions: (n, 3) CA coordinates of the packed residues.
        batch: (n,) sorted protein index.
        chain_index: (n,) chain id (any integer labels); sequential edges never cross a chain change.
        residue_index: (n,) index used for sequence separation; default ``arange(n)`` (the packed index).
        sequential_max_distance: sequential offsets ``-m..m`` (relations ``0..2m``).
        radius: radius-edge cut-off in Angstrom (strict ``<``), at most ``max_num_neighbors`` per centre, lowest
            index first, capped before the separation filter.
        knn_k: neighbours of the kNN edges.
        min_distance: radius and kNN edges keep ``|residue_index[src] - residue_index[tgt]| >= min_distance``.
        max_num_neighbors: radius cap.

    Returns:
        ``edge_index`` (2, E) long, ``edge_type`` (E,) long, ``num_relation`` (7 with the defaults). Edges are
        concatenated sequential (sorted by offset, then node), radius, kNN; a pair may be both radius and kNN.
        Sequential relation = offset + m = ``index(target) - index(source) + m`` with the packed index.
    """
    n = positions.shape[0]
    device = positions.device
    if residue_index is None:
        residue_index = torch.arange(n, device=device)
    num_sequential = 2 * sequential_max_distance + 1

    sequential, sequential_type = [], []
    node = torch.arange(n, device=device)
    for offset in range(-sequential_max_distance, sequential_max_distance + 1):
        source = node[max(0, -offset) : n - max(0, offset)]
        target = source + offset
        same = (chain_index[source] == chain_index[target]) & (batch[source] == batch[target])
        sequential.append(torch.stack([source[same], target[same]]))
        sequential_type.append(torch.full_like(target[same], offset + sequential_max_distance))

    spatial = radius_graph(positions, radius, batch, max_num_neighbors=max_num_neighbors)
    spatial = _filter(spatial, positions, residue_index, min_distance)
    knn = _filter(knn_graph(positions, knn_k, batch), positions, residue_index, min_distance)

    edge_index = torch.cat([*sequential, spatial, knn], dim=1)
    edge_type = torch.cat(
        [
            *sequential_type,
            torch.full((spatial.shape[1],), num_sequential, dtype=torch.long, device=device),
            torch.full((knn.shape[1],), num_sequential + 1, dtype=torch.long, device=device),
        ]
    )
    return edge_index, edge_type, num_sequential + 2


def atom_graph(
    positions: torch.Tensor,
    batch: torch.Tensor,
    residue_index: torch.Tensor,
    *,
    radius: float = 4.5,
    min_distance: int = 0,
    max_num_neighbors: int = 32,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Return the atom-level radius graph (one relation).

    Args:
        positions: (n, 3) atom coordinates, packed.
        batch: (n,) sorted protein index.
        residue_index: (n,) packed residue row of each atom (for the separation filter).
        radius: cut-off in Angstrom (strict ``<``); at most ``max_num_neighbors`` per centre, lowest index first,
            capped before any filter.
        min_distance: keep ``|residue_index[src] - residue_index[tgt]| >= min_distance`` (0: keep all).
        max_num_neighbors: radius cap.

    Returns:
        ``edge_index`` (2, E) long sorted by target then source, ``edge_type`` (E,) zeros, ``num_relation`` = 1.
    """
    edge_index = radius_graph(positions, radius, batch, max_num_neighbors=max_num_neighbors)
    edge_index = _filter(edge_index, positions, residue_index, min_distance)
    return edge_index, torch.zeros_like(edge_index[0]), 1


def gearnet_edge_features(
    edge_index: torch.Tensor,
    edge_type: torch.Tensor,
    num_relation: int,
    residue_type: torch.Tensor,
    residue_index: torch.Tensor,
    positions: torch.Tensor,
) -> torch.Tensor:
    """Return GearNet edge features (E, 20 + 20 + R + 11 + 1): 59 at residue level (R=7), 53 at atom level (R=1).

    Columns: one-hot residue type of the source node's residue (20 classes, ids >= 20 count as 0 = GLY), the same
    for the target, one-hot relation, one-hot ``min(|residue_index[src] - residue_index[tgt]|, 10)``, and the raw
    Euclidean edge length in Angstrom (last column). ``residue_type`` and ``residue_index`` are per node.
    """
    source, target = edge_index
    residue_type = torch.where(residue_type < NUM_RESIDUE_TYPES, residue_type, torch.zeros_like(residue_type))
    separation = (residue_index[source] - residue_index[target]).abs().clamp(max=MAX_SEQUENCE_SEPARATION)
    dtype = positions.dtype if positions.is_floating_point() else torch.get_default_dtype()
    length = (positions[source] - positions[target]).norm(dim=-1, keepdim=True)
    return torch.cat(
        [
            F.one_hot(residue_type[source], NUM_RESIDUE_TYPES).to(dtype),
            F.one_hot(residue_type[target], NUM_RESIDUE_TYPES).to(dtype),
            F.one_hot(edge_type, num_relation).to(dtype),
            F.one_hot(separation, MAX_SEQUENCE_SEPARATION + 1).to(dtype),
            length.to(dtype),
        ],
        dim=-1,
    )


def _filter(
    edge_index: torch.Tensor, positions: torch.Tensor, residue_index: torch.Tensor, min_distance: int
) -> torch.Tensor:
    """Drop spatial edges closer than ``min_distance`` in sequence, and zero-length edges."""
    source, target = edge_index
    keep = (positions[source] - positions[target]).norm(dim=-1) >= ZERO_LENGTH
    if min_distance > 0:
        keep &= (residue_index[source] - residue_index[target]).abs() >= min_distance
    return edge_index[:, keep]
