"""Sparse relational aggregation: ``[sum_{u->v, r=0} x_u | ... | sum_{u->v, r=R-1} x_u]`` as one sparse @ dense.

Used by GearNet-Edge at both graph levels, over the graph and over its line graph. Aggregation over such graphs is
a sparse @ dense product, never a gather of per-edge messages (E x channels would cost gigabytes).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass(eq=False)
class RelationalAdjacency:
    """A sparse relational adjacency A (num_nodes * R, num_sources) in CSR, float32, and its transpose.

    ``A[v * R + r, u]`` counts the edges u -> v of relation r. The transpose A^T (what every backward multiplies by)
    is built on first use and kept here. Lifetime: an encoder makes one adjacency per graph per forward
    (`relational_adjacency`); every layer of that forward and its backward share it (and so build A^T once), and it
    is freed with the forward's autograd graph.
    """

    matrix: torch.Tensor
    num_relation: int
    _transpose: torch.Tensor | None = field(default=None, repr=False)

    @property
    def shape(self) -> torch.Size:
        return self.matrix.shape

    @property
    def num_nodes(self) -> int:
        return self.matrix.shape[0] // self.num_relation

    def transpose(self) -> torch.Tensor:
        """Return A^T as CSR (built once; the CSC arrays of A are the CSR arrays of A^T)."""
        if self._transpose is None:
            with _quiet_csr():
                csc = self.matrix.to_sparse_csc()
                self._transpose = torch.sparse_csr_tensor(
                    csc.ccol_indices(), csc.row_indices(), csc.values(), (self.shape[1], self.shape[0]),
                    check_invariants=False,
                )  # fmt: skip
        return self._transpose


def relational_adjacency(
    edge_index: torch.Tensor,
    edge_type: torch.Tensor,
    num_nodes: int,
    num_relation: int,
    *,
    num_sources: int | None = None,
) -> RelationalAdjacency:
    """Return the sparse relational adjacency A (num_nodes * R, num_sources) (CSR, float32, in a `RelationalAdjacency`).

    ``A[v * R + r, u]`` counts the edges u -> v of relation r (duplicates summed), so ``(A @ x).view(num_nodes, R * C)``
    is the node-major, relation-minor aggregation ``[sum_{u->v, r=0} x_u | ... | sum_{u->v, r=R-1} x_u]``.
    ``num_sources`` defaults to ``num_nodes``.
    """
    num_sources = num_nodes if num_sources is None else num_sources
    num_rows = num_nodes * num_relation
    source, target = edge_index
    # Sort (row, column) keys and merge duplicates: what COO coalesce does, about twice as fast.
    key = (target * num_relation + edge_type) * num_sources + source
    key, count = torch.unique_consecutive(torch.sort(key).values, return_counts=True)
    row, col = key.div(num_sources, rounding_mode="floor"), key.remainder(num_sources)
    # 32-bit indices when they fit: MKL's sparse kernels (LP64) take int32 and torch converts int64 ones on every
    # product otherwise (a copy of the index arrays per layer, forward and backward).
    index_dtype = torch.int32 if max(key.numel(), num_rows + 1, num_sources) < 2**31 else torch.long
    crow = torch.zeros(num_rows + 1, dtype=index_dtype, device=key.device)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=num_rows), 0)
    with _quiet_csr():
        matrix = torch.sparse_csr_tensor(
            crow, col.to(index_dtype), count.to(torch.float32), (num_rows, num_sources), check_invariants=False
        )
    return RelationalAdjacency(matrix, num_relation)


def relational_aggregate(
    adjacency: RelationalAdjacency, x: torch.Tensor, num_relation: int | None = None
) -> torch.Tensor:
    """Return (num_nodes, R * C) relational sums ``A @ x`` reshaped node-major, relation-minor.

    Args:
        adjacency: from :func:`relational_adjacency`, (num_nodes * R, num_sources).
        x: (num_sources, C) dense source features.
        num_relation: R, optional (the adjacency knows it); checked when given.

    The product runs in float32 (float64 for a float64 ``x``) with autocast off: sums of many bf16 messages lose
    precision and sparse kernels are fp32 first. The result is returned in ``x``'s dtype, so under autocast a bf16
    ``x`` gives a bf16 result for the following linear. Differentiable w.r.t. ``x`` (the backward multiplies by the
    adjacency's A^T, built once per adjacency).
    """
    _check_relations(adjacency, num_relation)
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.autocast(device_type=x.device.type, enabled=False):
        out = _SparseMatmul.apply(adjacency, x.to(dtype))
    return out.to(x.dtype).view(adjacency.num_nodes, adjacency.num_relation * x.shape[1])


def _check_relations(adjacency: RelationalAdjacency, num_relation: int | None) -> None:
    if num_relation is not None and num_relation != adjacency.num_relation:
        raise ValueError(f"num_relation is {num_relation} but the adjacency has {adjacency.num_relation} relations")


def _in_dtype(matrix: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return matrix if matrix.dtype == dtype else matrix.to(dtype)


class _SparseMatmul(torch.autograd.Function):
    """``A @ x`` with ``dx = A^T @ dy`` from the adjacency's transposed CSR (cheaper than torch's CSR backward)."""

    @staticmethod
    def forward(ctx, adjacency: RelationalAdjacency, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return _spmm(_in_dtype(adjacency.matrix, x.dtype), x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor | None]:
        if not ctx.needs_input_grad[1]:
            return None, None
        return None, _spmm(_in_dtype(ctx.adjacency.transpose(), grad.dtype), grad)


def _spmm(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Return ``matrix @ x`` for a sparse CSR ``matrix``, written once into a fresh buffer.

    torch's ``csr @ dense`` on CPU zero-fills one (rows, C) buffer and copies it into a second before the kernel
    runs: two extra passes over the largest tensors of GearNet-Edge (the line graph's (E * 8, C)), each on freshly
    mapped memory. ``addmm(out, A, x, beta=0, out=out)`` skips both: with beta = 0 the BLAS contract (MKL's
    ``mkl_sparse_?_mm``) never reads ``out``. Elsewhere (no MKL, CUDA, non-CSR) the buffer is zeroed first, which
    is still one pass fewer than ``@``. Same result bit for bit (the same kernel does the sums).
    """
    if matrix.layout != torch.sparse_csr:
        return matrix @ x
    shape = (matrix.shape[0], x.shape[1])
    mkl = x.device.type == "cpu" and torch.backends.mkl.is_available()
    out = x.new_empty(shape) if mkl else x.new_zeros(shape)
    return torch.addmm(out, matrix, x, beta=0, out=out)


@contextlib.contextmanager
def _quiet_csr() -> Iterator[None]:
    """Silence torch's one-time 'sparse CSR support is in beta' warning (CSR is the measured fastest format)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        yield


def relational_linear(
    adjacency: RelationalAdjacency,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    num_relation: int | None = None,
) -> torch.Tensor:
    """Return ``F.linear(relational_aggregate(adjacency, x), weight, bias)`` without keeping the aggregate.

    The (num_nodes, R * C) aggregate is the largest activation of GearNet-Edge (8x the edge features, per layer
    of the line graph). Autograd would keep it for the weight gradient; here only ``x`` is kept and the cheap
    sparse product is recomputed in backward, so memory per layer drops by a factor R at the cost of one extra
    sparse product. Under autocast the dense matmuls run in the autocast dtype, the sparse products in float32.
    """
    _check_relations(adjacency, num_relation)
    device_type = x.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
    with torch.autocast(device_type=device_type, enabled=False):
        return _RelationalLinear.apply(adjacency, x, weight, bias, dtype)


class _RelationalLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adjacency, x, weight, bias, dtype):
        ctx.adjacency, ctx.dtype = adjacency, dtype
        ctx.save_for_backward(x, weight, bias)
        aggregated = _aggregate(adjacency, x, dtype)
        return F.linear(aggregated, weight.to(dtype), None if bias is None else bias.to(dtype))

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias = ctx.saved_tensors
        grad = grad.to(ctx.dtype)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[2]:
            aggregated = _aggregate(ctx.adjacency, x.detach(), ctx.dtype)
            grad_weight = (grad.t() @ aggregated).to(weight.dtype)
        if bias is not None and ctx.needs_input_grad[3]:
            grad_bias = grad.sum(0).to(bias.dtype)
        if ctx.needs_input_grad[1]:
            grad_aggregated = (grad @ weight.to(ctx.dtype)).view(-1, x.shape[1])
            compute = torch.float64 if x.dtype == torch.float64 else torch.float32
            transpose = _in_dtype(ctx.adjacency.transpose(), compute)
            grad_x = _spmm(transpose, grad_aggregated.to(compute)).to(x.dtype)
        return None, grad_x, grad_weight, grad_bias, None


def _aggregate(adjacency: RelationalAdjacency, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Return the (num_nodes, R * C) relational sums of ``x`` in ``dtype`` (sparse product in float32/64)."""
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    out = _spmm(_in_dtype(adjacency.matrix, compute), x.to(compute))
    return out.to(dtype).view(adjacency.num_nodes, adjacency.num_relation * x.shape[1])
