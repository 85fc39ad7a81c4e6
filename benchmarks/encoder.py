"""Encoder benchmark: graph construction, forward and forward+backward at the paper's pre-training batches.

Residue GearNet-Edge at 16 proteins x 150 residues, atom GearNet-Edge and GVP at 32 x 100, fp32 and bf16 autocast,
on CPU with 2 threads (and on CUDA when available); parse throughput gemmi vs Biopython. Writes
benchmarks/results/encoder_<device>.json with the machine facts (CPU model, ISA, native BF16: `common.environment`).
bf16 runs by default only where it pays (CUDA, or a CPU with AVX512-BF16/AMX); `--precision fp32 bf16` forces it.
The comparison with TorchDrug is `official_step.py` (both sides in one run, interleaved).

    python benchmarks/encoder.py [--threads 2] [--repeats 3] [--device cpu] [--precision fp32 bf16]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from common import batch_of, native_bf16, structure_files, timeit, write_results
from transformers import AutoModel

from siamdiff_hf import GearNetConfig, GVPConfig, parse_structure

# name -> (encoder config, proteins per batch, crop length): the paper's per-GPU pre-training batches.
SETUPS = {
    "gearnet_residue": (GearNetConfig(), 16, 150),
    "gearnet_atom": (GearNetConfig(level="atom"), 32, 100),
    "gvp_atom": (GVPConfig(), 32, 100),
}


def autocast(device: str, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def bench_encoder(name: str, device: str, repeats: int, precisions: list[str]) -> dict:
    config, num_proteins, crop = SETUPS[name]
    inputs = {k: v.to(device) for k, v in batch_of(num_proteins, crop).items()}
    model = AutoModel.from_config(config).to(device).train()
    graph = model.build_graph(**inputs)
    result = {
        "batch": f"{num_proteins} x {crop}",
        "nodes": graph.num_nodes,
        "edges": graph.num_edges,
        "graph_construction": timeit(lambda: model.build_graph(**inputs), repeats),
    }
    for precision in precisions:

        def forward(precision=precision):
            with torch.no_grad(), autocast(device, precision):
                model(graph=graph)

        def forward_backward(precision=precision):
            with autocast(device, precision):
                out = model(graph=graph)
            out.protein_embeddings.float().sum().backward()
            model.zero_grad(set_to_none=True)

        result[f"forward_{precision}"] = timeit(forward, repeats)
        result[f"forward_backward_{precision}"] = timeit(forward_backward, repeats)
        print(name, precision, result[f"forward_backward_{precision}"])
    return result


def bench_parsing(limit: int = 20) -> dict:
    files = structure_files()[:limit]
    result = {"files": len(files)}
    for backend in ("gemmi", "biopython"):
        start = time.perf_counter()
        for f in files:
            parse_structure(f, backend=backend)
        result[f"{backend}_structures_per_s"] = len(files) / (time.perf_counter() - start)
    result["speedup"] = result["gemmi_structures_per_s"] / result["biopython_structures_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--encoders", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], help="default: bf16 only where native")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bf16_pays = args.device == "cuda" or native_bf16()
    precisions = args.precision or (["fp32", "bf16"] if bf16_pays else ["fp32"])
    results = {"precisions": precisions}
    for name in args.encoders:
        results[name] = bench_encoder(name, args.device, args.repeats, precisions)
    results["parsing"] = bench_parsing()
    write_results(f"encoder_{args.device}", results)


if __name__ == "__main__":
    main()
