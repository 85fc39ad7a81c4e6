"""Sparse relational aggregation: ``[sum_{u->v, r=0} x_u | ... | sum_{u->v, r=R-1} x_u]`` as one sparse @ dense.

Used by GearNet-Edge at both graph levels, over the graph and over its line graph. Aggregation over such graphs is
a sparse @ dense product, never a gather of per-edge messages (E x channels would cost gigabytes).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F


def relational_adjacency(
    edge_index: torch.Tensor,
    edge_type: torch.Tensor,
    num_nodes: int,
    num_relation: int,
    *,
    num_sources: int | None = None,
) -> torch.Tensor:
    """Return the sparse relational adjacency A (num_nodes * R, num_sources) in CSR, float32.

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
    crow = torch.zeros(num_rows + 1, dtype=torch.long, device=key.device)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=num_rows), 0)
    with _quiet_csr():
        return torch.sparse_csr_tensor(
            crow, col, count.to(torch.float32), (num_rows, num_sources), check_invariants=False
        )


def relational_aggregate(adjacency: torch.Tensor, x: torch.Tensor, num_relation: int) -> torch.Tensor:
    """Return (num_nodes, R * C) relational sums ``adjacency @ x`` reshaped node-major, relation-minor.

    Args:
        adjacency: sparse (num_nodes * R, num_sources) from :func:`relational_adjacency`.
        x: (num_sources, C) dense source features.
        num_relation: R.

    The product runs in float32 (float64 for a float64 ``x``) with autocast off: sums of many bf16 messages lose
    precision and sparse kernels are fp32 first. The result is returned in ``x``'s dtype, so under autocast a bf16
    ``x`` gives a bf16 result for the following linear. Differentiable w.r.t. ``x`` (the backward uses A^T, built
    once per adjacency and cached on it).
    """
    num_nodes = adjacency.shape[0] // num_relation
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    if adjacency.dtype != dtype:
        adjacency = adjacency.to(dtype)
    with torch.autocast(device_type=x.device.type, enabled=False):
        out = _SparseMatmul.apply(adjacency, x.to(dtype))
    return out.to(x.dtype).view(num_nodes, num_relation * x.shape[1])


class _SparseMatmul(torch.autograd.Function):
    """``A @ x`` with ``dx = A^T @ dy`` from a transposed CSR kept beside A (cheaper than torch's CSR backward)."""

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor | None]:
        if not ctx.needs_input_grad[1]:
            return None, None
        return None, _transpose(ctx.adjacency) @ grad


def _transpose(adjacency: torch.Tensor) -> torch.Tensor:
    """Return A^T as CSR, built once per adjacency (a graph's layers all reuse it) and kept on the tensor."""
    transpose = getattr(adjacency, "_siamdiff_transpose", None)
    if transpose is None:
        if adjacency.layout == torch.sparse_csr:
            # The CSC arrays of A are the CSR arrays of A^T.
            with _quiet_csr():
                csc = adjacency.to_sparse_csc()
                transpose = torch.sparse_csr_tensor(
                    csc.ccol_indices(),
                    csc.row_indices(),
                    csc.values(),
                    (adjacency.shape[1], adjacency.shape[0]),
                    check_invariants=False,
                )
        else:
            transpose = adjacency.t().coalesce()
        adjacency._siamdiff_transpose = transpose
    return transpose


@contextlib.contextmanager
def _quiet_csr() -> Iterator[None]:
    """Silence torch's one-time 'sparse CSR support is in beta' warning (CSR is the measured fastest format)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        yield


def relational_linear(
    adjacency: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, num_relation: int
) -> torch.Tensor:
    """Return ``F.linear(relational_aggregate(adjacency, x, R), weight, bias)`` without keeping the aggregate.

    The (num_nodes, R * C) aggregate is the largest activation of GearNet-Edge (8x the edge features, per layer
    of the line graph). Autograd would keep it for the weight gradient; here only ``x`` is kept and the cheap
    sparse product is recomputed in backward, so memory per layer drops by a factor R at the cost of one extra
    sparse product. Under autocast the dense matmuls run in the autocast dtype, the sparse products in float32.
    """
    device_type = x.device.type
    dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else x.dtype
    with torch.autocast(device_type=device_type, enabled=False):
        return _RelationalLinear.apply(adjacency, x, weight, bias, num_relation, dtype)


class _RelationalLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, adjacency, x, weight, bias, num_relation, dtype):
        ctx.adjacency, ctx.num_relation, ctx.dtype = adjacency, num_relation, dtype
        ctx.save_for_backward(x, weight, bias)
        aggregated = _aggregate(adjacency, x, num_relation, dtype)
        return F.linear(aggregated, weight.to(dtype), None if bias is None else bias.to(dtype))

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias = ctx.saved_tensors
        grad = grad.to(ctx.dtype)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[2]:
            aggregated = _aggregate(ctx.adjacency, x.detach(), ctx.num_relation, ctx.dtype)
            grad_weight = (grad.t() @ aggregated).to(weight.dtype)
        if bias is not None and ctx.needs_input_grad[3]:
            grad_bias = grad.sum(0).to(bias.dtype)
        if ctx.needs_input_grad[1]:
            grad_aggregated = (grad @ weight.to(ctx.dtype)).view(-1, x.shape[1])
            compute = torch.float64 if x.dtype == torch.float64 else torch.float32
            transpose = _transpose(ctx.adjacency).to(compute)
            grad_x = (transpose @ grad_aggregated.to(compute)).to(x.dtype)
        return None, grad_x, grad_weight, grad_bias, None, None


def _aggregate(adjacency: torch.Tensor, x: torch.Tensor, num_relation: int, dtype: torch.dtype) -> torch.Tensor:
    """Return the (num_nodes, R * C) relational sums of ``x`` in ``dtype`` (sparse product in float32/64)."""
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    out = adjacency.to(compute) @ x.to(compute)
    return out.to(dtype).view(adjacency.shape[0] // num_relation, num_relation * x.shape[1])
