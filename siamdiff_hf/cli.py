"""The `siamdiff-hf` command line: one sub-command per module in `siamdiff_hf.commands`, and the rules they share.

Every command follows the same conventions:

- ``--model`` is always a model folder or Hub id (what ``from_pretrained`` takes); an architecture is named by
  ``--architecture`` with the model type (``gearnet``, ``gvp``, ``esm_gearnet``).
- ``-o/--output`` is where the result goes (a file for ``embed``, a folder elsewhere; for ``pretrain`` and
  ``finetune`` the run folder, the same as the override ``output_dir=PATH``).
- Commands that run a YAML config take dotted ``key=value`` overrides anywhere on the line; an option with an
  optional value (``--resume``) never takes one of them.
- Errors print one line to stderr, ``siamdiff-hf COMMAND: error: WHAT (FILE, REASON)``, and exit with 1 (2 for
  usage errors); ``--debug`` (before or after the command) shows the traceback and debug logs instead.
- ``--help`` lists examples, and it and usage errors return at once: a command imports torch and transformers only
  when it runs (``siamdiff_hf_cli.main``, the console script, parses before the package's ``__init__`` runs).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .errors import error_message, exit_code

# Each module defines `add_parser(subparsers)`, which registers its sub-command and sets `func(args) -> int`.
COMMAND_MODULES = (
    "pretrain",
    "finetune",
    "embed",
    "convert",
    "convert_fair_esm",
    "prepare_afdb",
    "afdb_urls",
    "push",
)

EXAMPLES = """\
examples:
  siamdiff-hf pretrain configs/quickstart.yaml
  siamdiff-hf embed --model outputs/quickstart/encoder tests/data/*.pdb.gz -o embeddings.parquet
  siamdiff-hf convert-torchdrug siamdiff_gearnet_res.pth -o hf_model/
  siamdiff-hf COMMAND --help
"""

# A `key=value` config override: a dotted key (no `/`, so paths such as `runs/a=b` are not taken for one).
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\-]*=")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``PROG: error: MESSAGE (see PROG --help)``, exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def example_epilog(*commands: str) -> str:
    """Return a command's ``--help`` epilog listing ``commands`` (use with `argparse.RawDescriptionHelpFormatter`)."""
    return "examples:\n" + "".join(f"  {command}\n" for command in commands)


def add_overrides_argument(parser: argparse.ArgumentParser) -> None:
    """Add the positional ``key=value`` config overrides; `main` collects them from anywhere on the line."""
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of config keys")
    parser.set_defaults(overrides_anywhere=True)


def add_output_dir_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``-o/--output DIR``: the run folder, the same as the override ``output_dir=DIR`` (it wins over one)."""
    parser.add_argument("-o", "--output", metavar="DIR", help="run folder (the same as output_dir=DIR)")


def add_run_config_arguments(parser: argparse.ArgumentParser, config_help: str) -> None:
    """Add what a YAML run-config command (``pretrain``, ``finetune``) starts with: the config, overrides, ``-o``."""
    parser.add_argument("config", help=config_help)
    add_overrides_argument(parser)
    add_output_dir_argument(parser)


def add_export_arguments(parser: argparse.ArgumentParser, folder: str) -> None:
    """Add ``--push-to-hub`` (uploads ``OUTPUT_DIR/folder``), ``--private`` and ``--dry-run`` of a run command."""
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help=f"upload OUTPUT_DIR/{folder} to this Hub repo")
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--dry-run", action="store_true", help="validate the config, print it and exit")


def run_config_command(
    args: argparse.Namespace,
    load: Callable[[list[str]], Any],
    train: Callable[[Any], int],
    extra_overrides: Sequence[str] = (),
) -> int:
    """Load a run config with the command's overrides, then print it (``--dry-run``) or ``train`` it.

    A `ConfigError` prints ``config error: WHY`` to stderr and returns 2; ``--private`` sets ``export.private``.
    """
    import yaml

    from .training.config_io import ConfigError

    try:
        config = load([*config_overrides(args), *extra_overrides])
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    if args.private:
        config.export.private = True
    if args.dry_run:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    return train(config)


def config_overrides(args: argparse.Namespace) -> list[str]:
    """Return the ``key=value`` overrides of a config command, ``-o/--output`` included as ``output_dir=``."""
    overrides = list(getattr(args, "overrides", None) or [])
    if getattr(args, "output", None):
        overrides.append(f"output_dir={args.output}")
    return overrides


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command (building it imports no heavy library)."""
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = ArgumentParser(
        prog="siamdiff-hf",
        description="Protein structure encoders and SiamDiff pre-training for the Hugging Face ecosystem.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="print the package version and exit")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"siamdiff_hf.commands.{name}").add_parser(subparsers)
    for command in subparsers.choices.values():  # `--debug` after the command too (SUPPRESS: no default set)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser, subparsers.choices


class _VersionAction(argparse.Action):
    """``--version``, reading the installed version only when asked (importlib.metadata is slow to import)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("siamdiff-hf")
        except PackageNotFoundError:
            found = "unknown"
        parser.exit(0, f"{parser.prog} {found}\n")


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; for commands with config overrides, take every ``key=value`` token as one first."""
    parser, commands = _build()
    position = next((i for i, token in enumerate(argv) if token in commands), None)
    if position is None or not commands[argv[position]].get_default("overrides_anywhere"):
        return parser.parse_args(argv)
    head, tail = argv[: position + 1], argv[position + 1 :]
    overrides = [token for token in tail if _OVERRIDE.match(token)]
    args = parser.parse_args(head + [token for token in tail if not _OVERRIDE.match(token)])
    args.overrides = [*(args.overrides or []), *overrides]
    return args


def main(argv: Sequence[str] | None = None, *, before_command: Callable[[], None] | None = None) -> int:
    """Run the sub-command named in ``argv`` and return its exit code (errors: one line on stderr, 1 or 2).

    ``before_command`` runs after parsing, before the command (the console script finishes importing the package
    there).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    debug = bool(getattr(args, "debug", False))
    import logging

    from .logging_utils import log_above_progress_bars

    log_above_progress_bars(logging.DEBUG if debug else logging.WARNING)
    try:
        if before_command is not None:
            before_command()
        return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as error:
        if debug:
            raise
        print(f"siamdiff-hf {args.command}: error: {error_message(error)}", file=sys.stderr)
        return exit_code(error)


if __name__ == "__main__":
    sys.exit(main())
