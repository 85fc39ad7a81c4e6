"""The `siamdiff-hf` console script: parse the command line before the `siamdiff_hf` package imports torch.

Importing `siamdiff_hf` registers its models with transformers, which imports torch and transformers (10-20 s on
a small machine). This module sits outside the package so that it can create the package's module object without
running its ``__init__``: ``--help`` and usage errors then return at once, and the package is imported in full
just before the command runs. ``python -m siamdiff_hf`` (used by ``accelerate launch``) imports it in full first.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

PACKAGE = "siamdiff_hf"


def main(argv: Sequence[str] | None = None) -> int:
    """Run `siamdiff_hf.cli.main`, running the package's ``__init__`` only once a command is about to run."""
    finish_import = None
    if PACKAGE not in sys.modules:
        spec = importlib.util.find_spec(PACKAGE)
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package  # submodules import from it; its __init__ has not run yet

        def finish_import() -> None:
            spec.loader.exec_module(package)

    from siamdiff_hf.cli import main as cli_main

    return cli_main(argv, before_command=finish_import)


if __name__ == "__main__":
    sys.exit(main())
