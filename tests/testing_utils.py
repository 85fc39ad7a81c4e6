"""Helpers shared by the model tests (importable everywhere: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch


def random_rotation(generator: torch.Generator) -> torch.Tensor:
    """Return a uniformly random proper rotation matrix (3, 3), float64."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def to64(batch) -> dict[str, torch.Tensor]:
    """Return a copy of a processor batch with floating tensors in float64."""
    return {k: (v.double() if v.is_floating_point() else v) for k, v in batch.items()}
