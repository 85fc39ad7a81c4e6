"""Views of a `ProteinGraph` for pre-training: edges removed, node crops, and uniformly drawn paths of edges.

Every function works on the packed graph of a whole batch, without Python loops over nodes or edges, and draws
only from the ``generator`` it is given (never from coordinates), so a view is reproducible and rotation-free.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..graph import ProteinGraph
from .pretraining_utils import sample_in_groups, uniform


def edge_graph(graph: ProteinGraph) -> torch.Tensor:
    """Return (E,) the protein of each edge (that of its target node)."""
    return graph.node_batch[graph.edge_index[1]]


def edges_per_graph(graph: ProteinGraph) -> torch.Tensor:
    """Return (B,) the number of edges of each protein."""
    return torch.bincount(edge_graph(graph), minlength=graph.num_graphs)


def keep_edges(graph: ProteinGraph, keep: torch.Tensor) -> ProteinGraph:
    """Return the graph with only the edges where the (E,) bool `keep` holds (nodes and features unchanged)."""
    edge_attr = graph.edge_attr[keep] if graph.edge_attr is not None else None
    return replace(graph, edge_index=graph.edge_index[:, keep], edge_type=graph.edge_type[keep], edge_attr=edge_attr)


def remove_edges(graph: ProteinGraph, edges: torch.Tensor) -> ProteinGraph:
    """Return the graph without the edges whose ids are in `edges` (any shape, repeats allowed).

    Only those edge ids go: a reverse edge, or the same pair under another relation, stays (TorchDrug 0.2.1
    `Graph.edge_mask`, as its `tasks/pretrain.py` uses it).
    """
    keep = torch.ones(graph.num_edges, dtype=torch.bool, device=graph.edge_index.device)
    keep[edges.flatten()] = False
    return keep_edges(graph, keep)


def keep_nodes(graph: ProteinGraph, keep: torch.Tensor) -> ProteinGraph:
    """Return the subgraph induced by the (n,) bool `keep`: its nodes, the edges between them, residues renumbered.

    Residue rows that keep no node are dropped and the rest renumbered in order, so the encoder's residue outputs
    cover the kept residues only (TorchDrug 0.2.1 `Protein.subresidue`). Edge features are kept as computed on the
    full graph.
    """
    new_index = torch.cumsum(keep.long(), 0) - 1
    source, target = graph.edge_index
    edge_keep = keep[source] & keep[target]
    residue_kept = torch.zeros(graph.num_residues, dtype=torch.bool, device=keep.device)
    residue_kept[graph.node_residue[keep]] = True
    residue_index = torch.cumsum(residue_kept.long(), 0) - 1
    edge_attr = graph.edge_attr[edge_keep] if graph.edge_attr is not None else None
    return replace(
        graph, node_features=graph.node_features[keep], positions=graph.positions[keep],
        node_batch=graph.node_batch[keep], node_residue=residue_index[graph.node_residue[keep]],
        edge_index=new_index[graph.edge_index[:, edge_keep]], edge_type=graph.edge_type[edge_keep],
        edge_attr=edge_attr, num_residues=int(residue_kept.sum()),
    )  # fmt: skip


def sample_edges(
    graph: ProteinGraph, num_sample: int | torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """Return (M,) edge ids, `num_sample` per protein (an int, or (B,) counts) drawn uniformly with replacement
    among its edges."""
    order = torch.argsort(edge_graph(graph), stable=True)
    index, _ = sample_in_groups(edges_per_graph(graph), num_sample, generator)
    return order[index]


def sample_edge_paths(
    graph: ProteinGraph, length: int, num_sample: int, generator: torch.Generator | None, max_rounds: int = 20
) -> torch.Tensor:
    """Return (M, length) edge ids of paths of 2 or 3 edges, `num_sample` per protein, uniform over valid paths.

    A path ``k -> j -> i`` (2 edges, for angles) or ``k -> t -> j -> i`` (3 edges, for dihedrals) lists its edges
    in walking order, each edge's target the next one's source. Valid paths are those of TorchDrug 0.2.1
    `tasks/pretrain.py` (`AnglePrediction`/`DihedralPrediction`, which enumerate the (second) line graph and drop
    its self loops): consecutive edges differ and do not walk straight back (``k != i`` for 2 edges; ``k != j``,
    ``t != i`` and first != last edge for 3). Self loops of the graph (residue sequential offset 0) are edges like
    any other, as there. Instead of enumerating every path (the second line graph of an atom graph has billions of
    edges), the middle (3) or last (2) edge is drawn with weight equal to the number of paths through it, the other
    edges uniformly among its neighbours, and invalid draws redrawn (up to `max_rounds` rounds; a protein without
    any valid path gets none): the same uniform draw with replacement, in memory linear in the graph.
    """
    if length not in (2, 3):
        raise ValueError(f"paths have 2 or 3 edges, got {length}")
    source, target = graph.edge_index
    device = source.device
    in_degree = torch.bincount(target, minlength=graph.num_nodes)
    out_degree = torch.bincount(source, minlength=graph.num_nodes)
    into, out_of = torch.argsort(target, stable=True), torch.argsort(source, stable=True)
    into_start, out_start = torch.cumsum(in_degree, 0) - in_degree, torch.cumsum(out_degree, 0) - out_degree
    weight = in_degree[source] * (out_degree[target] if length == 3 else 1)
    order = torch.argsort(edge_graph(graph), stable=True)
    cumulative = torch.cumsum(weight[order], 0)
    totals = torch.zeros(graph.num_graphs, dtype=torch.long, device=device).index_add_(0, edge_graph(graph), weight)
    owner = torch.repeat_interleave(torch.arange(graph.num_graphs, device=device), (totals > 0).long() * num_sample)
    base = torch.cumsum(totals, 0) - totals

    def pick(starts: torch.Tensor, degrees: torch.Tensor, sorted_edges: torch.Tensor, count: int) -> torch.Tensor:
        local = torch.floor(uniform((count,), generator, device) * degrees.float()).long()
        return sorted_edges[starts + torch.minimum(local, degrees - 1)]

    paths = torch.zeros(owner.numel(), length, dtype=torch.long, device=device)
    pending = torch.ones(owner.numel(), dtype=torch.bool, device=device)
    for _ in range(max_rounds):
        rows = pending.nonzero().flatten()
        if rows.numel() == 0:
            break
        total = totals[owner[rows]]
        draw = torch.floor(uniform((rows.numel(),), generator, device) * total.double()).long()
        draw = torch.minimum(draw, total - 1)
        anchor = order[torch.searchsorted(cumulative, base[owner[rows]] + draw, right=True)]
        first = pick(into_start[source[anchor]], in_degree[source[anchor]], into, rows.numel())
        walk = [first, anchor]
        if length == 3:
            walk.append(pick(out_start[target[anchor]], out_degree[target[anchor]], out_of, rows.numel()))
        paths[rows] = torch.stack(walk, dim=1)
        pending[rows] = ~_valid_paths(paths[rows], source, target)
    return paths[~pending]


def _valid_paths(paths: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return (M,) bool: the paths TorchDrug's line-graph construction keeps (see `sample_edge_paths`)."""
    first, second, last = paths[:, 0], paths[:, 1], paths[:, -1]
    valid = (first != second) & (source[first] != target[second])
    if paths.shape[1] == 3:
        valid &= (second != last) & (source[second] != target[last]) & (first != last)
    return valid


def path_nodes(graph: ProteinGraph, paths: torch.Tensor) -> torch.Tensor:
    """Return (M, length + 1) the nodes a path visits, in TorchDrug's order: ``[i, j, k]`` or ``[i, j, k, t]``.

    For the walk ``k -> j -> i`` (or ``k -> t -> j -> i``): ``i`` is the last edge's target, ``j`` its source,
    ``k`` the first edge's source and ``t`` the middle node (TorchDrug 0.2.1 `tasks/pretrain.py` feeds the heads
    ``[h_i, h_j, h_k]`` and ``[h_i, h_j, h_k, h_t]``).
    """
    source, target = graph.edge_index
    last = paths[:, -1]
    nodes = [target[last], source[last], source[paths[:, 0]]]
    if paths.shape[1] == 3:
        nodes.append(source[paths[:, 1]])
    return torch.stack(nodes, dim=1)
