"""Log records that keep tqdm progress bars intact: the package's warnings written with `tqdm.write`.

A plain `logging` handler writes to stderr in the middle of a bar's line, so a skip warning during `pretrain` or
`embed` tears the bar in two; `tqdm.write` prints above the bar and redraws it. Modules log with
``logging.getLogger(__name__)`` as usual; the command line (or a user's script) calls `log_above_progress_bars`.
"""

from __future__ import annotations

import logging
import sys

from tqdm.auto import tqdm

PACKAGE_LOGGER = "siamdiff_hf"


class TqdmHandler(logging.Handler):
    """A handler that prints each record with ``tqdm.write`` to stderr (where tqdm draws its bars)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's contract: a broken handler reports, never raises
            self.handleError(record)


def log_above_progress_bars(level: int = logging.WARNING, logger: str = PACKAGE_LOGGER) -> TqdmHandler:
    """Route ``logger`` (default: every `siamdiff_hf.*` module) through a `TqdmHandler` at ``level``; return it.

    Idempotent: a second call only changes the level. The records no longer propagate to the root logger, so they
    are printed once.
    """
    log = logging.getLogger(logger)
    handler = next((h for h in log.handlers if isinstance(h, TqdmHandler)), None)
    if handler is None:
        handler = TqdmHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
    handler.setLevel(level)
    log.setLevel(level)
    log.propagate = False
    return handler
