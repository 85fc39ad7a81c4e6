"""TorchDrug GearNet-Edge state-dict layouts, written out from TorchDrug 0.2.1 `models/gearnet.py` and
`layers/conv.py` (`GeometricRelationalGraphConv`: batch_norm, self_loop, linear) with SiamDiff's
`config/pretrain/*.yaml` sizes.

Importable from every test module: pytest puts tests/ (the conftest folder) on sys.path.
"""

from __future__ import annotations


def reference_shapes(level: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the TorchDrug state dicts (residue 21 in, 6 x 512, R=7, edge 59; atom 39, 6 x 128, R=1, 53)."""
    if level == "residue":
        node = [(21, 512)] + [(512, 512)] * 5
        edge = [(59, 21), (21, 512)] + [(512, 512)] * 4
        relations, bins = 7, 8
    else:
        node = [(39, 128)] + [(128, 128)] * 5
        edge = [(53, 39), (39, 128)] + [(128, 128)] * 4
        relations, bins = 1, 8
    shapes = {}

    def conv(prefix, in_dim, out_dim, r):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.batch_norm.{name}"] = (out_dim,)
        shapes[f"{prefix}.batch_norm.num_batches_tracked"] = ()
        shapes[f"{prefix}.self_loop.weight"] = (out_dim, in_dim)
        shapes[f"{prefix}.self_loop.bias"] = (out_dim,)
        shapes[f"{prefix}.linear.weight"] = (out_dim, r * in_dim)
        shapes[f"{prefix}.linear.bias"] = (out_dim,)

    for i, (a, b) in enumerate(node):
        conv(f"layers.{i}", a, b, relations)
    for i, (a, b) in enumerate(edge):
        conv(f"edge_layers.{i}", a, b, bins)
    for i, (_, b) in enumerate(node):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"batch_norms.{i}.{name}"] = (b,)
        shapes[f"batch_norms.{i}.num_batches_tracked"] = ()
    return shapes
