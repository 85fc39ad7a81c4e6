"""`siamdiff-hf finetune CONFIG.yaml [key=value ...]`: fine-tune an encoder on a downstream task with Trainer."""

from __future__ import annotations

import argparse
import sys


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
    parser.add_argument("config", help="YAML fine-tuning config (see configs/finetune/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of config keys")
    parser.add_argument("-o", "--output", metavar="DIR", help="run folder (the same as output_dir=DIR)")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="run these seeds (e.g. --seeds 0 1 2)")
    parser.add_argument("--resume", action="store_true", help="continue each seed from its newest checkpoint")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload OUTPUT_DIR/model to this Hub repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--dry-run", action="store_true", help="validate the config, print it and exit")
    parser.set_defaults(func=run, overrides_anywhere=True)


def run(args: argparse.Namespace) -> int:
    import yaml

    from ..training.config_io import ConfigError
    from ..training.finetune_config import load_finetune_config

    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output_dir={args.output}")
    if args.seeds:
        overrides.append(f"seeds=[{','.join(str(s) for s in args.seeds)}]")
    try:
        config = load_finetune_config(args.config, overrides, check_paths=not args.dry_run)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    if args.private:
        config.export.private = True
    if args.dry_run:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0

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
