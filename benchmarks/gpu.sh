#!/usr/bin/env bash
# GPU check in one short run (< 8 minutes on a CUDA machine; installs nothing, reads no network):
#   * residue (16 x 150) and atom (32 x 100) GearNet-Edge SiamDiff steps at the paper's per-GPU batch in bf16
#     autocast: steps/s, proteins/s, peak GPU memory, share of the step in the encoder and the heads;
#   * achieved TFLOP/s of the line-graph linear (the step's largest matmul) against the card's bf16 peak;
#   * whether the data pipeline keeps up: per-worker rates of the raw tar stream and the Parquet stream, collated
#     into the step's batches, times N workers (linear scaling assumed, stated in the JSON), against proteins/s.
# Writes benchmarks/results/gpu.json (or gpu_smoke.json). On CPU, `--smoke` runs the same code with a tiny model
# and batch in well under a minute, so the script is checked where no GPU is available.
#   bash benchmarks/gpu.sh [--smoke] [--workers 8] [--steps 10]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
exec timeout 480 "$PYTHON" - "$@" <<'PY'
import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, "benchmarks")
from common import batch_of, write_results  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from siamdiff_hf import GearNetConfig, SiamDiffConfig, SiamDiffForPreTraining  # noqa: E402

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, by device-name substring.
BF16_PEAK = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 756.0, "A100": 312.0, "L40S": 362.0,
             "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0}  # fmt: skip
RANGES = ("siamdiff.conformer", "siamdiff.graph_construction", "siamdiff.encoder", "siamdiff.heads")

parser = argparse.ArgumentParser(prog="gpu.sh")
parser.add_argument("--smoke", action="store_true", help="tiny model and batch (runs on CPU)")
parser.add_argument("--workers", type=int, default=8, help="data-loader workers the GPU run would use")
parser.add_argument("--steps", type=int, default=10, help="timed steps per setup")
args = parser.parse_args()
device = "cuda" if torch.cuda.is_available() else "cpu"
if device == "cpu" and not args.smoke:
    raise SystemExit("gpu.sh: no CUDA device; run with --smoke to check the script on CPU")
steps = 2 if args.smoke else args.steps
hidden = [16, 16] if args.smoke else None
setups = {"residue": (2, 30), "atom": (2, 20)} if args.smoke else {"residue": (16, 150), "atom": (32, 100)}


def sync() -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def autocast():
    return torch.autocast(device, dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()


def bench_step(level: str) -> dict:
    num_proteins, crop = setups[level]
    inputs = {k: v.to(device) for k, v in batch_of(num_proteins, crop).items()}
    encoder_config = GearNetConfig(level=level, **({"hidden_dims": hidden} if hidden else {}))
    model = SiamDiffForPreTraining(SiamDiffConfig(encoder_config=encoder_config)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator(device).manual_seed(0)

    def step() -> None:
        with autocast():
            out = model(**inputs, generator=generator)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (kernels, allocator)
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / steps
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        begin = time.perf_counter()
        step()
        sync()
        profiled = time.perf_counter() - begin
    # On CUDA a range's device time is the GPU time of the kernels it launched; on CPU its wall time.
    attr = "device_time_total" if device == "cuda" else "cpu_time_total"
    events = {e.key: getattr(e, attr, 0.0) / 1e6 for e in prof.key_averages() if e.key in RANGES}
    return {
        "batch": f"{num_proteins} x {crop}",
        "precision": "bf16 autocast" if device == "cuda" else "fp32 (smoke)",
        "step_s": seconds,
        "steps_per_s": 1.0 / seconds,
        "proteins_per_s": num_proteins / seconds,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
        "share_of_step": {k.split(".")[1]: v / profiled for k, v in events.items()},
        "share_basis": "GPU kernel time per range / profiled step wall time" if device == "cuda" else "CPU time",
    }


def line_graph_linear() -> dict:
    """Time the line-graph linear alone at the residue batch's size: (E, 8 * 512) @ (8 * 512, 512)."""
    encoder_config = GearNetConfig(**({"hidden_dims": hidden} if hidden else {}))
    model = SiamDiffForPreTraining(SiamDiffConfig(encoder_config=encoder_config)).encoder
    num_proteins, crop = setups["residue"]
    inputs = {k: v for k, v in batch_of(num_proteins, crop).items()}
    edges = model.build_graph(inputs["residue_type"], inputs["atom_positions"], inputs["atom_mask"],
                              inputs["batch"]).num_edges  # fmt: skip
    width = encoder_config.hidden_dims[-1]
    in_dim = encoder_config.num_angle_bin * width
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    x = torch.randn(edges, in_dim, device=device, dtype=dtype)
    w = torch.randn(width, in_dim, device=device, dtype=dtype)
    F.linear(x, w)
    sync()
    repeats = 3 if args.smoke else 50
    start = time.perf_counter()
    for _ in range(repeats):
        F.linear(x, w)
    sync()
    seconds = (time.perf_counter() - start) / repeats
    tflops = 2 * edges * in_dim * width / seconds / 1e12
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    peak = next((v for k, v in BF16_PEAK.items() if k in name), None)
    return {"edges": edges, "shape": [edges, in_dim, width], "dtype": str(dtype), "seconds": seconds,
            "tflops": tflops, "card_bf16_peak_tflops": peak, "fraction_of_peak": tflops / peak if peak else None}  # fmt: skip


def pipeline(step_rates: dict) -> dict:
    """Per-worker tar and Parquet rates (collated into the step's batches), scaled to --workers."""
    from data_pipeline import collated_rate, model_files, write_tar

    from siamdiff_hf.data import load_afdb, prepare_afdb

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tar = folder / "afdb.tar"
        entries = write_tar(tar, model_files(), 1 if args.smoke else 5)
        limit = min(entries, 32 if args.smoke else 400)
        result = {"entries": entries, "workers": args.workers,
                  "scaling": "per-worker rate x workers (assumed linear; DataLoader workers are processes)"}  # fmt: skip
        result["tar_per_worker"] = collated_rate(load_afdb(tar, prefer="pdb"), limit)
        prepare_afdb(tar, folder / "parquet", shard_size=1000, prefer="pdb", progress=False)
        result["parquet_per_worker"] = collated_rate(load_afdb(folder / "parquet"), limit)
    for source in ("tar", "parquet"):
        per_worker = next((v for k, v in result[f"{source}_per_worker"].items() if k.endswith("per_s")), None)
        if per_worker is None:
            continue
        for level, rate in step_rates.items():
            result[f"{source}_keeps_up_{level}"] = per_worker * args.workers >= rate
    return result


results = {"smoke": args.smoke, "device": device, "steps": steps}
for level in setups:
    results[f"siamdiff_{level}"] = bench_step(level)
    print(level, results[f"siamdiff_{level}"], flush=True)
results["line_graph_linear"] = line_graph_linear()
print(results["line_graph_linear"], flush=True)
results["data_pipeline"] = pipeline({lv: results[f"siamdiff_{lv}"]["proteins_per_s"] for lv in setups})
print(results["data_pipeline"], flush=True)
write_results("gpu_smoke" if args.smoke else "gpu", results)
PY
