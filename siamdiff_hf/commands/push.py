"""`siamdiff-hf push DIR REPO_ID`: upload an exported encoder folder (with its model card) to the Hub."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import example_epilog


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="upload an exported model folder and its README.md model card to the Hugging Face Hub",
        description="Upload a folder written by `siamdiff-hf pretrain` (e.g. OUTPUT_DIR/encoder) as it is, so its "
        "README.md model card is the one on the Hub. Log in first (`hf auth login`) or pass --token.",
        epilog=example_epilog("siamdiff-hf push outputs/quickstart/encoder username/siamdiff-gearnet-edge --private"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="exported folder (config.json, model.safetensors, README.md...)")
    parser.add_argument("repo_id", help="Hub model repo, e.g. username/siamdiff-gearnet-edge")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--token", help="Hub token (default: the logged-in one)")
    parser.add_argument("--commit-message", default="Upload siamdiff-hf model", help="commit message")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..hub import push_folder

    if not (args.folder / "config.json").is_file():
        raise UsageError(f"{args.folder}: no config.json, so not an exported model folder (e.g. OUTPUT_DIR/encoder)")
    if not (args.folder / "README.md").exists():
        print(f"warning: {args.folder} has no README.md model card", file=sys.stderr)
    url = push_folder(args.folder, args.repo_id, private=args.private, token=args.token,
                      commit_message=args.commit_message)  # fmt: skip
    print(f"uploaded {args.folder} to {args.repo_id}: {url}")
    return 0
