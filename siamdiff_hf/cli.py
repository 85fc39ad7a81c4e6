"""The `siamdiff-hf` command line: one sub-command per module in `siamdiff_hf.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines `add_parser(subparsers)`, which registers its sub-command and sets `func(args) -> int`.
COMMAND_MODULES = (
    "pretrain",
    "embed",
    "convert",
    "convert_fair_esm",
    "prepare_afdb",
    "afdb_urls",
    "push",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(prog="siamdiff-hf", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"siamdiff_hf.commands.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"siamdiff_hf.commands.{name}":
                raise
            continue  # sub-command not part of this build
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the sub-command named in ``argv`` and return its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
