"""Errors a user can act on, and how the command line shows any error: one line naming the culprit and the reason."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not hold a state dict the converter can map (every converter)."""


class ModelLoadError(OSError):
    """A model folder or Hub id that `from_pretrained` cannot load: missing, unknown model type, unfit weights."""


class UsageError(ValueError):
    """Command-line arguments that cannot work together (the CLI exits with 2, as argparse does for its errors)."""


# Exceptions whose message is written for the user: shown as they are. Any other exception is shown with its type
# and a hint that ``--debug`` prints the traceback.
_USER_FACING = (OSError, KeyboardInterrupt)


def error_message(error: BaseException) -> str:
    """Return ``error`` as one line: its message's first non-empty line, with the type when it is unexpected.

    The package's own errors (subclasses of `ValueError`/`OSError` defined in `siamdiff_hf`: invalid structures,
    configs, checkpoints, sources) and the operating system's (file not found, ...) already name the file and the
    reason, so they are shown alone; anything else (a bug, or a library error without context) gets its type.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = lines[0] if lines else type(error).__name__
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        message = f"{error.filename}: {error.strerror}"  # "[Errno 2] ...: 'x'" -> "x: No such file or directory"
    ours = type(error).__module__.startswith("siamdiff_hf") and isinstance(error, (ValueError, OSError))
    if ours or isinstance(error, _USER_FACING):
        return message
    return f"{type(error).__name__}: {message} (run with --debug for the traceback)"


def exit_code(error: BaseException) -> int:
    """Return the CLI exit code for an error: 2 for usage errors, 130 for Ctrl-C, 1 for every other failure."""
    if isinstance(error, UsageError):
        return 2
    if isinstance(error, KeyboardInterrupt):
        return 130
    return 1
