"""`siamdiff-hf pretrain CONFIG.yaml [key=value ...]`: SiamDiff / DiffPreT pre-training (also under accelerate)."""

from __future__ import annotations

import argparse
import sys

from ..cli import add_export_arguments, add_run_config_arguments, run_config_command


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pre-train an encoder with SiamDiff/DiffPreT from a YAML run config",
        description="Pre-train from a YAML run config, e.g. `siamdiff-hf pretrain configs/quickstart.yaml`; on "
        "several GPUs or machines `accelerate launch -m siamdiff_hf pretrain CONFIG.yaml`. Overrides are dotted "
        "key=value pairs (output_dir=runs/a stages.0.max_steps=5 data.batch_size=4). The final encoder lands in "
        "OUTPUT_DIR/encoder. SIGTERM/SIGINT save a checkpoint before exiting; --resume continues from it.",
    )
    add_run_config_arguments(parser, "YAML run config (see configs/)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="latest|PATH",
        help="continue from the newest checkpoint in OUTPUT_DIR/checkpoints (or from PATH)",
    )
    add_export_arguments(parser, "encoder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.config import load_config

    return run_config_command(args, lambda overrides: load_config(args.config, overrides), lambda c: _pretrain(c, args))


def _pretrain(config, args: argparse.Namespace) -> int:
    from ..training import TrainingInterrupted, pretrain

    try:
        pretrain(config, resume=args.resume, push_to_hub=args.push_to_hub)
    except TrainingInterrupted as interrupted:
        print(f"{interrupted}; continue with --resume", file=sys.stderr)
        return 128 + int(interrupted.signum)
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
