"""Where the residue GearNet-Edge step spends its time: dense matmuls (the method's FLOPs) against everything else.

One forward + backward of the paper-width residue GearNet-Edge (`GearNetConfig()`: 6 x 512, 7 relations, 8 angle
bins) on the middle 150 residues of four real AlphaFold DB chains, the batch `official_step.py` times against
TorchDrug, under ``torch.profiler``. Each op's self CPU time is put in one bucket:

* ``dense_matmul``: ``aten::mm``, ``aten::bmm`` and ``aten::addmm`` with a 1-D first input (``nn.Linear``'s bias);
* ``sparse_product``: ``aten::addmm`` with a 2-D first input (`graph/aggregation.py`'s CSR products write into a
  2-D ``out``) and torch's sparse kernels;
* ``other``: batch norm, ReLU, graph construction, copies, autograd bookkeeping.

The dense share bounds any implementation of these layers on this CPU: with theirs/ours = r from
``official_step.json``, removing every other op gives at most r / dense_share. Writes
``benchmarks/results/encoder_profile.json``. Usage: ``python benchmarks/encoder_profile.py [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import write_results  # noqa: E402
from official_step import structure_files, write_cropped_chains  # noqa: E402

from siamdiff_hf import GearNetConfig, GearNetModel, ProteinStructureProcessor, parse_structure  # noqa: E402

DENSE = {"aten::mm", "aten::bmm"}


def bucket(event) -> str:
    """Return the bucket of one profiler event (see the module docstring)."""
    name = event.key
    if name in DENSE:
        return "dense_matmul"
    if name == "aten::addmm":
        shapes = event.input_shapes
        return "dense_matmul" if shapes and len(shapes[0]) == 1 else "sparse_product"
    if "sparse" in name or "csr" in name:
        return "sparse_product"
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--proteins", type=int, default=4)
    parser.add_argument("--crop", type=int, default=150)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        chains = write_cropped_chains(structure_files(), args.proteins, args.crop, Path(tmp))
        proteins = [parse_structure(c["file"]) for c in chains]
    inputs = dict(ProteinStructureProcessor()(proteins, return_tensors="pt"))
    encoder = GearNetModel(GearNetConfig()).train()
    keys = ("residue_type", "atom_positions", "atom_mask", "batch", "chain_index")
    graph = encoder.build_graph(**{k: inputs[k] for k in keys if k in inputs})

    def step() -> None:
        encoder(graph=graph).protein_embeddings.sum().backward()
        encoder.zero_grad(set_to_none=True)

    step()  # warm-up (MKL, allocator)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    totals: Counter[str] = Counter()
    for event in prof.key_averages(group_by_input_shape=True):
        totals[bucket(event)] += event.self_cpu_time_total
    total = sum(totals.values())
    shares = {name: round(value / total, 4) for name, value in sorted(totals.items())}
    results = {
        "chains": chains, "nodes": graph.num_nodes, "edges": graph.num_edges, "threads": args.threads,
        "self_cpu_s": {name: round(value / 1e6, 3) for name, value in sorted(totals.items())},
        "share": shares,
        "top_ops": [
            {"op": e.key, "self_cpu_s": round(e.self_cpu_time_total / 1e6, 3), "bucket": bucket(e)}
            for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
        ],
    }  # fmt: skip
    official = HERE / "results" / "official_step.json"
    if official.exists():
        ratio = json.loads(official.read_text())["fp32"]["encoder_speedup_median"]
        results["theirs_over_ours"] = round(ratio, 3)
        results["ceiling_vs_torchdrug"] = round(ratio / shares["dense_matmul"], 3)
    print(json.dumps(results["share"]), results.get("ceiling_vs_torchdrug"))
    write_results("encoder_profile", results)


if __name__ == "__main__":
    main()
