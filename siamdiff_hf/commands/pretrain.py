"""`siamdiff-hf pretrain CONFIG.yaml [key=value ...]`: SiamDiff / DiffPreT pre-training (also under accelerate)."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pre-train an encoder with SiamDiff/DiffPreT from a YAML run config",
        description="Pre-train from a YAML run config, e.g. `siamdiff-hf pretrain configs/quickstart.yaml`; on "
        "several GPUs or machines `accelerate launch -m siamdiff_hf pretrain CONFIG.yaml`. Overrides are dotted "
        "key=value pairs (output_dir=runs/a stages.0.max_steps=5 data.batch_size=4). The final encoder lands in "
        "OUTPUT_DIR/encoder. SIGTERM/SIGINT save a checkpoint before exiting; --resume continues from it.",
    )
    parser.add_argument("config", help="YAML run config (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of config keys")
    parser.add_argument("-o", "--output", metavar="DIR", help="run folder (the same as output_dir=DIR)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="latest|PATH",
        help="continue from the newest checkpoint in OUTPUT_DIR/checkpoints (or from PATH)",
    )
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload OUTPUT_DIR/encoder to this Hub repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--dry-run", action="store_true", help="validate the config, print it and exit")
    parser.set_defaults(func=run, overrides_anywhere=True)  # cli.main collects key=value from anywhere on the line


def run(args: argparse.Namespace) -> int:
    import yaml

    from ..training.config import ConfigError, load_config

    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output_dir={args.output}")
    try:
        config = load_config(args.config, overrides)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    if args.private:
        config.export.private = True
    if args.dry_run:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0

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
