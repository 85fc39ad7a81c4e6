"""GearNet-Edge's spatial line graph: one node per edge of G, relations = angle bins between consecutive edges.

The line graph has an edge e1 -> e2 for every pair e1 = (a -> b), e2 = (b -> c) sharing b, backtracking (c == a)
and self-loop edges included: ``indeg(b) * outdeg(b)`` pairs per node b, millions per residue-level batch
(TorchDrug 0.2.1 `torchdrug/layers/geometry/graph.py` `SpatialLineGraph`, over `torchdrug/data/graph.py`
`Graph.line_graph`).
"""

from __future__ import annotations

import math

import torch


def line_graph(
    edge_index: torch.Tensor, num_nodes: int, positions: torch.Tensor, num_angle_bin: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the line graph of ``edge_index`` with angle-bin relations.

    Args:
        edge_index: (2, E) edges a -> b of G.
        num_nodes: nodes of G.
        positions: (num_nodes, 3) coordinates the angles are measured on (the noisy ones in SiamDiff).
        num_angle_bin: relations of the line graph.

    Returns:
        ``lg_edge_index`` (2, P) long over edge ids of G, source e1 = (a -> b), target e2 = (b -> c), sorted by
        e2 then e1, with P = sum_b indeg(b) * outdeg(b); ``lg_edge_type`` (P,) long angle bin
        ``min(floor(theta / pi * num_angle_bin), num_angle_bin - 1)``, theta = atan2(|v1 x v2|, v1 . v2) the angle
        at b between v1 = pos[c] - pos[b] and v2 = pos[a] - pos[b] (zero vectors: theta = 0, bin 0).
    """
    source, target = edge_index
    device = edge_index.device
    num_edges = source.numel()
    # For each e2 = (b -> c), every e1 whose target is b: edges grouped by target give contiguous candidate runs.
    by_target = torch.argsort(target, stable=True)
    indegree = torch.bincount(target, minlength=num_nodes)
    count = indegree[source]  # pairs per e2
    total = int(count.sum())
    e2 = torch.repeat_interleave(torch.arange(num_edges, device=device), count, output_size=total)
    # Pair p of e2 takes the (p - first pair of e2)-th in-edge of b: one shift per e2, repeated over its pairs.
    shift = (torch.cumsum(indegree, 0) - indegree)[source] - (torch.cumsum(count, 0) - count)
    e1 = by_target[torch.arange(total, device=device) + torch.repeat_interleave(shift, count, output_size=total)]

    vector = (positions[target] - positions[source]).detach()  # per edge: pos[head] - pos[tail]
    v1 = torch.repeat_interleave(vector, count, dim=0, output_size=total)  # c - b
    v2 = vector[e1]  # b - a: the angle uses a - b, so the dot product changes sign (the cross norm does not)
    # 0 - dot, not -dot: a zero vector must give +0 (theta = 0), never -0 (atan2(0, -0) = pi).
    theta = torch.atan2(torch.linalg.cross(v1, v2).norm(dim=-1), 0.0 - (v1 * v2).sum(dim=-1))
    bin_ = torch.floor(theta / math.pi * num_angle_bin).long().clamp_(0, num_angle_bin - 1)
    return torch.stack([e1, e2]), bin_
