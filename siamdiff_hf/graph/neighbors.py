"""Radius and k-nearest-neighbour graphs over packed batches, in plain torch and bounded memory.

Both functions follow ``torch_cluster.radius_graph`` / ``knn_graph`` with ``loop=False`` and
``flow="source_to_target"``: no self loops, only nodes of the same protein, and edges run neighbour (row 0, source)
-> centre (row 1, target). Output is sorted by centre, then by source index.

Work is done in blocks that never mix proteins: small proteins are stacked into padded (G, L, L) blocks, and a
protein too large for one block is split into chunks of centres, each compared only with the nodes of its own
protein inside the chunk's bounding box grown by the radius. Every block holds at most ``ELEMENT_BUDGET``
(centre, candidate) pairs, so peak memory is O(n x chunk), never O(n^2), whatever the protein size.

Conventions where torch_cluster is loose or device-dependent (we pick one and keep it on every device):

- Radius: a pair is a neighbour when ``squared distance < radius**2`` (strict), as in torch_cluster's CUDA kernel
  (``dist < r * r``) and its CPU kernel (nanoflann's radius search also keeps ``dist < r * r``).
- Radius cap: each centre keeps at most ``max_num_neighbors`` neighbours, the lowest-index ones. This is the CUDA
  kernel's rule (first hits in index order). torch_cluster asks that kernel for ``max_num_neighbors + 1`` hits to
  make room for self and then drops self, so a centre whose own index is not among its first 33 hits gets 33
  neighbours there; we always give at most ``max_num_neighbors``. (The CPU kernel keeps nanoflann's unordered
  hits, so it has no reproducible rule to follow.)
- kNN: the ``k`` nearest other nodes of the same protein, ties broken by lower index (deterministic); fewer when
  the protein has at most ``k`` nodes. torch_cluster's ``knn_graph`` asks for ``k + 1`` and drops self, which can
  give ``k + 1`` neighbours when duplicated coordinates push self out; we always give at most ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

# Largest number of (centre, candidate) pairs held at once; a few float/bool tensors of this many elements live
# per block (about 50 MB at 2**22).
ELEMENT_BUDGET = 2**22


def radius_graph(
    positions: torch.Tensor,
    radius: float,
    batch: torch.Tensor | None = None,
    *,
    max_num_neighbors: int | None = 32,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Return the (2, E) radius graph: edges neighbour -> centre with distance < ``radius``.

    Args:
        positions: (n, D) coordinates.
        radius: cut-off (strict: ``dist**2 < radius**2``).
        batch: (n,) sorted protein index of each node; None = one protein.
        max_num_neighbors: at most this many neighbours per centre, the lowest-index ones (None: no cap).
        chunk_size: at most this many centres per block; default from the element budget.

    Returns:
        (2, E) long ``edge_index`` (row 0 source = neighbour, row 1 target = centre), sorted by centre then source.
    """
    r2 = float(radius) ** 2
    sources, centres_out = [], []
    for centres, candidates in _blocks(positions, batch, chunk_size, radius):
        d2, valid = _pair_distances(positions, centres, candidates)
        hit = (valid & (d2 < r2)).flatten(0, 1)  # (G * c, w): one row per centre
        row, col = hit.nonzero(as_tuple=True)  # row-major: sorted by centre, then source
        if max_num_neighbors is not None:
            keep = _rank_in_row(row, hit.shape[0]) < max_num_neighbors
            row, col = row[keep], col[keep]
        sources.append(candidates[row // centres.shape[1], col])
        centres_out.append(centres.flatten()[row])
    return _stack(sources, centres_out, positions.device)


def knn_graph(
    positions: torch.Tensor,
    k: int,
    batch: torch.Tensor | None = None,
    *,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Return the (2, E) kNN graph: ``k`` incoming edges per centre from its nearest nodes of the same protein.

    Args:
        positions: (n, D) coordinates.
        k: neighbours per centre (fewer when the protein has at most ``k`` nodes); ties go to the lower index.
        batch: (n,) sorted protein index of each node; None = one protein.
        chunk_size: at most this many centres per block; default from the element budget.

    Returns:
        (2, E) long ``edge_index`` (row 0 source = neighbour, row 1 target = centre), sorted by centre then source.
    """
    sources, centres_out = [], []
    if k <= 0:
        return _stack(sources, centres_out, positions.device)
    for centres, candidates in _blocks(positions, batch, chunk_size):
        d2, valid = _pair_distances(positions, centres, candidates)
        d2, valid = d2.masked_fill_(~valid, math.inf).flatten(0, 1), valid.flatten(0, 1)
        # Everything up to each row's k-th smallest distance (ties included), then the first k by (distance, index).
        kth = torch.topk(d2, min(k, d2.shape[1]), dim=1, largest=False, sorted=True).values[:, -1:]
        row, col = (valid & (d2 <= kth)).nonzero(as_tuple=True)
        order = torch.argsort(d2[row, col], stable=True)  # stable: equal distances keep index order
        order = order[torch.argsort(row[order], stable=True)]
        keep = torch.empty_like(row, dtype=torch.bool)
        keep[order] = _rank_in_row(row[order], d2.shape[0]) < k
        row, col = row[keep], col[keep]
        sources.append(candidates[row // centres.shape[1], col])
        centres_out.append(centres.flatten()[row])
    return _stack(sources, centres_out, positions.device)


def _blocks(
    positions: torch.Tensor, batch: torch.Tensor | None, chunk_size: int | None, radius: float | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (centres (G, c), candidates (G, w)) node ids, -1 for padding; row g of both lies in one protein.

    Consecutive small proteins are stacked padded to the longest (G * L * L <= budget). A protein with L * L over the
    budget gets chunks of centres against its own nodes, restricted to the chunk's bounding box grown by ``radius``
    when one is given (atoms of consecutive residues are compact in space, so this cuts the work of big proteins).
    """
    n = positions.shape[0]
    device = positions.device
    if batch is None:
        sizes = [n]
    else:
        # One host sync for the whole call: protein sizes, and a check that the batch vector is sorted.
        counts = torch.bincount(batch.detach(), minlength=1)
        is_sorted = (batch[1:] >= batch[:-1]).all().reshape(1)
        is_sorted, *sizes = torch.cat([is_sorted.long(), counts]).tolist()
        if not is_sorted:
            raise ValueError("batch must be sorted: the nodes of each protein contiguous")
    ptr = [0]
    for size in sizes:
        ptr.append(ptr[-1] + size)
    limit = chunk_size if chunk_size is not None else max(n, 1)
    i = 0
    while i < len(sizes):
        size = sizes[i]
        if size == 0:
            i += 1
        elif size > limit or size * size > ELEMENT_BUDGET:
            step = max(1, min(limit, ELEMENT_BUDGET // size))
            members = torch.arange(ptr[i], ptr[i + 1], device=device)
            for start in range(0, size, step):
                centres = members[start : start + step]
                yield centres[None], _inside_box(positions, centres, members, radius)[None]
            i += 1
        else:
            j, longest = i + 1, size
            while j < len(sizes):
                grown = max(longest, sizes[j])
                if grown * grown * (j - i + 1) > ELEMENT_BUDGET or grown * (j - i + 1) > limit:
                    break
                longest, j = grown, j + 1
            offset = torch.arange(longest, device=device)
            first = torch.tensor(ptr[i:j], device=device)
            length = torch.tensor(sizes[i:j], device=device)
            members = torch.where(offset < length[:, None], first[:, None] + offset, -1)
            yield members, members
            i = j


def _inside_box(
    positions: torch.Tensor, centres: torch.Tensor, members: torch.Tensor, radius: float | None
) -> torch.Tensor:
    """Return the ``members`` (sorted) that can lie within ``radius`` of one of ``centres`` (all if no radius)."""
    if radius is None:
        return members
    margin = radius * (1 + 1e-3) + 1e-3  # generous, so rounding never excludes a true neighbour
    box = positions[centres].detach()
    low, high = box.amin(0) - margin, box.amax(0) + margin
    window = positions[members].detach()
    return members[((window >= low) & (window <= high)).all(dim=1)]


def _pair_distances(
    positions: torch.Tensor, centres: torch.Tensor, candidates: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return squared distances (G, c, w) and the mask of real, non-self pairs.

    Differences are squared coordinate by coordinate (no ``|x|^2 + |y|^2 - 2xy`` expansion, whose cancellation error
    would move pairs across the cut-off).
    """
    positions = positions.detach()
    centre_pos = positions[centres.clamp(min=0)]
    candidate_pos = positions[candidates.clamp(min=0)]
    d2 = None
    for dim in range(positions.shape[1]):
        diff = centre_pos[:, :, None, dim] - candidate_pos[:, None, :, dim]
        d2 = diff.square_() if d2 is None else d2.addcmul_(diff, diff)
    valid = (centres[:, :, None] != candidates[:, None, :]) & (centres >= 0)[:, :, None] & (candidates >= 0)[:, None]
    return d2, valid


def _rank_in_row(row: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Return each entry's position among the entries of its row, for a row vector sorted ascending."""
    counts = torch.bincount(row, minlength=num_rows)
    first = torch.cumsum(counts, 0) - counts
    return torch.arange(row.numel(), device=row.device) - first[row]


def _stack(sources: list[torch.Tensor], centres: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    if not sources:
        return torch.empty(2, 0, dtype=torch.long, device=device)
    return torch.stack([torch.cat(sources), torch.cat(centres)])
