"""`siamdiff-hf finetune CONFIG.yaml [key=value ...]`: fine-tune an encoder on a downstream task with Trainer."""

from __future__ import annotations

import argparse
import sys

from ..cli import add_export_arguments, add_run_config_arguments, run_config_command


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune an encoder on a downstream task (EC, GO, PSR, MSP, PIP, RES) from a YAML config",
        description="Fine-tune from a YAML config with the official protocol (best validation epoch, its test "
        "metrics, mean +- std over seeds), e.g. `siamdiff-hf finetune configs/finetune/quickstart.yaml`; on several "
        "GPUs `accelerate launch -m siamdiff_hf finetune CONFIG.yaml`. Overrides are dotted key=value pairs "
        "(output_dir=runs/ec model.encoder=PATH training.num_train_epochs=5). Results: OUTPUT_DIR/metrics.json and "
        "the best model in OUTPUT_DIR/model.",
    )
    add_run_config_arguments(parser, "YAML fine-tuning config (see configs/finetune/)")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="run these seeds (e.g. --seeds 0 1 2)")
    parser.add_argument("--resume", action="store_true", help="continue each seed from its newest checkpoint")
    add_export_arguments(parser, "model")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.finetune_config import load_finetune_config

    seeds = [f"seeds=[{','.join(str(s) for s in args.seeds)}]"] if args.seeds else []
    return run_config_command(
        args, lambda overrides: load_finetune_config(args.config, overrides, check_paths=not args.dry_run),
        lambda config: _finetune(config, args), seeds,
    )  # fmt: skip


def _finetune(config, args: argparse.Namespace) -> int:
    from ..training.config_io import ConfigError
    from ..training.finetuning import finetune

    try:
        finetune(config, resume=args.resume, push_to_hub=args.push_to_hub)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    return 0
