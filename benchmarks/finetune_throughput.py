"""Proteins/s of a fine-tuning step (forward, backward, Adam step) at the paper's batch, CPU, fp32 and bf16, and the
frozen-encoder path's speed-up.

Setups (paper widths, random weights, real structures from `common.structure_files`):

* ``ec_residue``: residue GearNet-Edge ([512] x 6) with the EC head (538 labels, BCE), global batch 8 (SiamDiff
  `config/res/ec_gearnet.yaml`: 2 per GPU x 4), chains cropped to ``--ec-crop`` residues;
* ``psr_atom``: atom GearNet-Edge ([128] x 6) with the PSR head (regression), batch 8 (`config/atom/psr_gearnet.yaml`),
  chains cropped to ``--psr-crop`` residues.

For each: the full fine-tuning step in fp32 and under bf16 autocast, and the frozen-encoder step with cached
embeddings (``freeze_encoder`` + ``cache_embeddings``: the head's MLP on cached inputs, what `finetune` trains then),
plus the one-off encoder pass that fills the cache. Steps are interleaved (A, B, A, B) over ``--repeats`` rounds
and ratios are taken per round, so load from other jobs hits both sides alike. Writes
benchmarks/results/finetune_throughput.json.

    python benchmarks/finetune_throughput.py [--repeats 3] [--threads 2] [--setups ec_residue psr_atom]
        [--bf16-setups ec_residue] [--ec-crop 300] [--psr-crop 150]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from common import batch_of, write_results


def setups(ec_crop: int, psr_crop: int) -> dict[str, dict]:
    from siamdiff_hf.models import GearNetConfig

    return {
        "ec_residue": {"config": GearNetConfig(level="residue", num_labels=538,
                                               problem_type="multi_label_classification"),
                       "batch": 8, "crop": ec_crop},
        "psr_atom": {"config": GearNetConfig(level="atom", num_labels=1, problem_type="regression"),
                     "batch": 8, "crop": psr_crop},
    }  # fmt: skip


def labels_for(config, batch_size: int) -> torch.Tensor:
    if config.problem_type == "regression":
        return torch.rand(batch_size, 1)
    labels = torch.zeros(batch_size, config.num_labels)
    labels[torch.arange(batch_size), torch.randint(config.num_labels, (batch_size,))] = 1
    return labels


def step_fn(model, optimizer, inputs, precision: str):
    """Return a callable running one optimiser step of ``model`` on ``inputs``."""

    def step():
        context = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with context:
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def bench(name: str, setup: dict, repeats: int, bf16: bool) -> dict:
    from siamdiff_hf.models import GearNetForProteinClassification

    torch.manual_seed(0)
    model = GearNetForProteinClassification(setup["config"]).train()
    inputs = {**batch_of(setup["batch"], setup["crop"]), "labels": labels_for(setup["config"], setup["batch"])}
    full = step_fn(model, torch.optim.Adam(model.parameters(), lr=1e-4), inputs, "fp32")
    variants = {"full_fp32": full}
    if bf16:
        variants["full_bf16"] = step_fn(model, torch.optim.Adam(model.parameters(), lr=1e-4), inputs, "bf16")

    # Frozen encoder: the MLP's inputs computed once (the cache fill), then head-only steps.
    captured = []
    hook = model.mlp.register_forward_hook(lambda module, args, output: captured.append(args[0].detach()))
    model.eval()
    with torch.no_grad():
        started = time.perf_counter()
        model(**inputs)
        cache_fill = time.perf_counter() - started
    hook.remove()
    features, labels = captured[-1], inputs["labels"]
    head_optimizer = torch.optim.Adam(model.mlp.parameters(), lr=1e-4)

    def cached_step():
        loss = model.loss(model.mlp(features), labels, "protein")
        loss.backward()
        head_optimizer.step()
        head_optimizer.zero_grad()

    variants["frozen_cached"] = cached_step
    model.train()
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):  # interleaved rounds
        for key, fn in variants.items():
            started = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - started)
    result = {"batch": setup["batch"], "crop": setup["crop"], "residues": int(inputs["residue_type"].shape[0]),
              "cache_fill_s": cache_fill, "steps": {}}  # fmt: skip
    for key, values in times.items():
        median = statistics.median(values)
        result["steps"][key] = {"median_s": median, "proteins_per_s": setup["batch"] / median, "times_s": values}
    ratios = {}
    if bf16:
        ratios["bf16_speedup_over_fp32"] = statistics.median(
            [a / b for a, b in zip(times["full_fp32"], times["full_bf16"], strict=True)]
        )
    ratios["frozen_cached_speedup_over_full_fp32"] = statistics.median(
        [a / b for a, b in zip(times["full_fp32"], times["frozen_cached"], strict=True)]
    )
    result["ratios"] = ratios
    print(name, {k: round(v["proteins_per_s"], 2) for k, v in result["steps"].items()}, ratios)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--setups", nargs="+", default=["ec_residue", "psr_atom"])
    parser.add_argument("--ec-crop", type=int, default=300)
    parser.add_argument("--psr-crop", type=int, default=150)
    parser.add_argument(
        "--bf16-setups",
        nargs="*",
        default=None,
        help="setups also timed under bf16 autocast (default: all; slow on CPUs without native BF16)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = setups(args.ec_crop, args.psr_crop)
    bf16 = args.setups if args.bf16_setups is None else args.bf16_setups
    results = {name: bench(name, chosen[name], args.repeats, name in bf16) for name in args.setups}
    write_results("finetune_throughput", {
        "what": "one fine-tuning optimiser step (forward, backward, Adam) at the paper's batch, CPU; frozen_cached "
                "= head-only step on cached encoder outputs (cache_embeddings); measured interleaved under load",
        "threads": args.threads, "repeats": args.repeats, "crops": {"ec": args.ec_crop, "psr": args.psr_crop},
        "results": results,
    })  # fmt: skip


if __name__ == "__main__":
    main()
