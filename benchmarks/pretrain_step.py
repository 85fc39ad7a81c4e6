"""One full SiamDiff step (both trajectories, forward + backward) and where its time goes.

Residue GearNet-Edge at 16 x 150 and atom GearNet-Edge at 32 x 100 (the paper's per-GPU batches), fp32 and bf16
autocast, CPU with 2 threads by default. The shares come from the profiler ranges the model opens
(`siamdiff.conformer`, `siamdiff.graph_construction`, `siamdiff.encoder`, `siamdiff.heads`); the backward pass is
reported apart. Writes benchmarks/results/pretrain_step_<device>.json.

    python benchmarks/pretrain_step.py [--threads 2] [--device cpu] [--levels residue atom] [--encoders gearnet]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
from common import batch_of, write_results
from torch.profiler import ProfilerActivity, profile

from siamdiff_hf import GearNetConfig, SiamDiffConfig, SiamDiffForPreTraining

SETUPS = {"residue": (16, 150), "atom": (32, 100)}
RANGES = ("siamdiff.conformer", "siamdiff.graph_construction", "siamdiff.encoder", "siamdiff.heads")


def encoder_config(name: str, level: str):
    if name == "gearnet":
        return GearNetConfig(level=level)
    if name == "gvp":
        from siamdiff_hf.models.gvp import GVPConfig

        return GVPConfig()
    raise ValueError(f"unknown encoder {name!r}")


def bench(name: str, level: str, precision: str, device: str) -> dict:
    num_proteins, crop = SETUPS[level]
    inputs = {k: v.to(device) for k, v in batch_of(num_proteins, crop).items()}
    model = SiamDiffForPreTraining(SiamDiffConfig(encoder_config=encoder_config(name, level))).to(device).train()
    generator = torch.Generator(device).manual_seed(0)
    context = torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    def step() -> float:
        start = time.perf_counter()
        with context:
            out = model(**inputs, generator=generator)
        forward = time.perf_counter() - start
        out.loss.backward()
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return forward

    step()  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:  # profiling adds little at these op sizes
        forward = step()
    total = time.perf_counter() - start
    events = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages() if e.key in RANGES}
    shares = {k.split(".")[1]: events.get(k, 0.0) / total for k in RANGES}
    shares["backward"] = (total - forward) / total
    return {
        "batch": f"{num_proteins} x {crop}",
        "step_s": total,
        "proteins_per_s": num_proteins / total,
        "share_of_profiled_step": shares,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--levels", nargs="+", default=["residue", "atom"])
    parser.add_argument("--encoders", nargs="+", default=["gearnet"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = {}
    for name in args.encoders:
        for level in args.levels if name == "gearnet" else ["atom"]:
            for precision in ("fp32", "bf16"):
                key = f"{name}_{level}_{precision}"
                results[key] = bench(name, level, precision, args.device)
                print(key, results[key])
    write_results(f"pretrain_step_{args.device}", results)


if __name__ == "__main__":
    main()
