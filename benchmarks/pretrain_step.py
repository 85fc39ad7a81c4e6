"""One full SiamDiff step (both trajectories, forward + backward) and where its time goes.

Residue GearNet-Edge at 16 x 150 and atom GearNet-Edge at 32 x 100 (the paper's per-GPU batches), fp32 and bf16
autocast (bf16 by default only where it is native: CUDA, or a CPU with AVX512-BF16/AMX), CPU with 2 threads by
default. The shares come from the profiler ranges the model opens
(`siamdiff.conformer`, `siamdiff.graph_construction`, `siamdiff.encoder`, `siamdiff.heads`); the backward pass is
reported apart. Writes benchmarks/results/pretrain_step_<device>.json.

`--objectives` times instead one step (forward + backward, median of `--repeats`) of each baseline objective on the
GearNet-Edge of each level at the paper's Table 5 batch and max length (multiview contrast has none: 100 here),
`--scale` shrinking the batches for a quick run on a loaded CPU; writes pretrain_step_objectives_<device>.json.

    python benchmarks/pretrain_step.py [--threads 2] [--device cpu] [--levels residue atom] [--encoders gearnet]
    python benchmarks/pretrain_step.py --objectives [--scale 0.125] [--repeats 1]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time

import torch
from common import batch_of, timeit, write_results
from torch.profiler import ProfilerActivity, profile
from transformers import AutoConfig, AutoModelForPreTraining

from siamdiff_hf import GearNetConfig, SiamDiffConfig, SiamDiffForPreTraining
from siamdiff_hf.training.precision import cpu_has_native_bf16

SETUPS = {"residue": (16, 150), "atom": (32, 100)}
# Paper Table 5: (max length, batch per GPU) at residue and atom level; multiview contrast has no max length.
TABLE5 = {
    "residue_type_prediction": {"residue": (100, 96), "atom": (100, 64)},
    "distance_prediction": {"residue": (100, 128), "atom": (100, 64)},
    "angle_prediction": {"residue": (100, 96), "atom": (100, 64)},
    "dihedral_prediction": {"residue": (100, 96), "atom": (100, 64)},
    "multiview_contrast": {"residue": (100, 96), "atom": (100, 64)},
    "denoising_score_matching": {"residue": (200, 12), "atom": (200, 12)},
    "torsional_diffusion": {"atom": (100, 32)},  # not in Table 5: the atom SiamDiff recipe's
}
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
        # the process's peak resident memory so far (this step's peak where it is the largest step run yet)
        "peak_rss_gb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "step_s": total,
        "proteins_per_s": num_proteins / total,
        "share_of_profiled_step": shares,
    }


def bench_objective(name: str, level: str, scale: float, repeats: int, device: str) -> dict:
    """Return the median step time and proteins/s of one objective at its (scaled) Table 5 batch."""
    crop, full_batch = TABLE5[name][level]
    num_proteins = max(2, round(full_batch * scale))
    inputs = {k: v.to(device) for k, v in batch_of(num_proteins, crop).items()}
    config = AutoConfig.for_model(name, encoder_config=GearNetConfig(level=level))
    model = AutoModelForPreTraining.from_config(config).to(device).train()
    generator = torch.Generator(device).manual_seed(0)

    def step() -> None:
        model(**inputs, generator=generator).loss.backward()
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()

    timing = timeit(step, repeats=repeats, warmup=1)
    return {
        "batch": f"{num_proteins} x {crop}", "table5_batch": f"{full_batch} x {crop}", "step_s": timing["median_s"],
        "proteins_per_s": num_proteins / timing["median_s"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--levels", nargs="+", default=["residue", "atom"])
    parser.add_argument("--encoders", nargs="+", default=["gearnet"])
    parser.add_argument("--objectives", action="store_true", help="time the baseline objectives instead")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the Table 5 batch (--objectives)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=None,
                        help="default: fp32, and bf16 where it pays (CUDA, or a CPU with native BF16: elsewhere it is "
                        "emulated, ~10x slower than fp32)")  # fmt: skip
    args = parser.parse_args()
    if args.precisions is None:
        native = args.device != "cpu" or cpu_has_native_bf16()
        args.precisions = ["fp32", "bf16"] if native else ["fp32"]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.objectives:
        results = {"scale_of_table5_batch": args.scale}
        for name, levels in TABLE5.items():
            for level in (lv for lv in args.levels if lv in levels):
                results[f"{name}_{level}"] = bench_objective(name, level, args.scale, args.repeats, args.device)
                print(name, level, results[f"{name}_{level}"])
        write_results(f"pretrain_step_objectives_{args.device}", results)
        return
    results = {}
    for name in args.encoders:
        for level in args.levels if name == "gearnet" else ["atom"]:
            for precision in args.precisions:
                key = f"{name}_{level}_{precision}"
                results[key] = bench(name, level, precision, args.device)
                print(key, results[key])
    write_results(f"pretrain_step_{args.device}", results)


if __name__ == "__main__":
    main()
