"""Brute-force references for graph tests: plain Python loops over nodes and edges, no vectorised tricks."""

from __future__ import annotations

import math

import torch


def _dist2(positions: list[list[float]], i: int, j: int) -> float:
    a, b = positions[i], positions[j]
    return sum((a[d] - b[d]) ** 2 for d in range(len(a)))


def radius_edges(positions: torch.Tensor, radius: float, batch: list[int], cap: int) -> list[tuple[int, int]]:
    """(source, centre) pairs: per centre, the first ``cap`` other same-protein nodes with dist^2 < r^2, by index."""
    pos = positions.tolist()
    edges = []
    for centre in range(len(pos)):
        hits = [
            j
            for j in range(len(pos))
            if j != centre and batch[j] == batch[centre] and _dist2(pos, j, centre) < radius * radius
        ]
        edges += [(j, centre) for j in hits[:cap]]
    return edges


def knn_edges(positions: torch.Tensor, k: int, batch: list[int]) -> list[tuple[int, int]]:
    """(source, centre) pairs: per centre, the k nearest other same-protein nodes, ties by lower index."""
    pos = positions.tolist()
    edges = []
    for centre in range(len(pos)):
        others = [(_dist2(pos, j, centre), j) for j in range(len(pos)) if j != centre and batch[j] == batch[centre]]
        edges += [(j, centre) for _, j in sorted(others)[:k]]
    return edges


def residue_edges(
    positions: torch.Tensor, batch: list[int], chain: list[int], min_distance: int = 5
) -> list[tuple[int, int, int]]:
    """(source, target, relation) of GearNet-Edge's residue graph with the packed index as residue index."""
    n = len(batch)
    pos = positions.tolist()
    edges = []
    for i in range(n):
        for j in range(n):
            if abs(i - j) <= 2 and chain[i] == chain[j] and batch[i] == batch[j]:
                edges.append((i, j, j - i + 2))
    for relation, found in ((5, radius_edges(positions, 10.0, batch, 32)), (6, knn_edges(positions, 10, batch))):
        for src, tgt in found:
            if abs(src - tgt) >= min_distance and math.sqrt(_dist2(pos, src, tgt)) >= 1e-10:
                edges.append((src, tgt, relation))
    return edges


def line_graph_pairs(edges: list[tuple[int, int]], positions: torch.Tensor, bins: int) -> list[tuple[int, int, int]]:
    """(e1, e2, angle bin) for every e1 = (a -> b), e2 = (b -> c)."""
    pos = positions.tolist()
    pairs = []
    for i, (a, b) in enumerate(edges):
        for j, (b2, c) in enumerate(edges):
            if b2 != b:
                continue
            v1 = [pos[c][d] - pos[b][d] for d in range(3)]
            v2 = [pos[a][d] - pos[b][d] for d in range(3)]
            cross = [v1[1] * v2[2] - v1[2] * v2[1], v1[2] * v2[0] - v1[0] * v2[2], v1[0] * v2[1] - v1[1] * v2[0]]
            theta = math.atan2(math.sqrt(sum(x * x for x in cross)), sum(v1[d] * v2[d] for d in range(3)))
            pairs.append((i, j, min(int(theta / math.pi * bins), bins - 1)))
    return pairs


def edge_set(edge_index: torch.Tensor, edge_type: torch.Tensor | None = None) -> list[tuple[int, ...]]:
    """Sorted list of (src, dst) or (src, dst, rel) tuples of a tensor graph (a multiset: duplicates kept)."""
    rows = edge_index.t().tolist() if edge_type is None else torch.cat([edge_index, edge_type[None]]).t().tolist()
    return sorted(tuple(r) for r in rows)
