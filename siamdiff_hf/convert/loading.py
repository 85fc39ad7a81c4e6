"""Loading converted weights into a model: exactly its keys and shapes, or a `CheckpointError` naming what differs."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import CheckpointError


def load_converted_weights(
    model: torch.nn.Module,
    weights: Mapping[str, torch.Tensor],
    what: str,
    optional: frozenset[str] | set[str] = frozenset(),
) -> list[str]:
    """Load ``weights`` into ``model``, each cast to the dtype of the tensor it replaces.

    Raises `CheckpointError` (``"{what}: missing [...], unexpected [...], wrong shapes [...]"``, five of each at
    most) unless the keys and shapes are exactly the model's; keys in ``optional`` may be missing: they keep their
    initial values, and are returned (sorted).
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in expected.keys() & weights.keys() if expected[k].shape != weights[k].shape)
    if set(missing) - set(optional) or unexpected or wrong:
        raise CheckpointError(
            f"{what}: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shapes {[(k, tuple(weights[k].shape)) for k in wrong[:5]]}"
        )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in weights.items()}, strict=not missing)
    return missing
