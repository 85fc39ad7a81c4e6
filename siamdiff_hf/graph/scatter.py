"""Row reductions by group index: readouts (nodes -> residues -> proteins) and per-node means."""

from __future__ import annotations

import torch


def scatter_rows(values: torch.Tensor, index: torch.Tensor, size: int, reduce: str = "sum") -> torch.Tensor:
    """Return (size, ...) sums or means of the rows of `values` grouped by `index` (empty groups give zeros)."""
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    out = values.new_zeros(size, *values.shape[1:]).index_add_(0, index, values)
    if reduce == "mean":
        count = torch.bincount(index, minlength=size).clamp(min=1).to(values.dtype)
        out = out / count.view(-1, *([1] * (values.dim() - 1)))
    return out
