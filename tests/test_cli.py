"""The command line's shared conventions: fast help, one-line errors and exit codes, --debug, flags, overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from siamdiff_hf.cli import _parse, build_parser, main
from siamdiff_hf.errors import CheckpointError, ModelLoadError, UsageError, error_message, exit_code

ROOT = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data"

# Run the console script's entry point in a fresh interpreter and report what it imported.
_PROBE = """
import sys, siamdiff_hf_cli
try:
    code = siamdiff_hf_cli.main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print("heavy:", sorted(m for m in ("torch", "transformers", "datasets", "accelerate") if m in sys.modules))
sys.exit(code)
"""


def probe(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=120, cwd=ROOT)


def commands() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def test_help_and_usage_errors_import_no_heavy_library():
    result = probe("--help")
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stdout and "examples:" in result.stdout
    for name in commands():
        assert f"  {name} " in result.stdout or f"  {name}\n" in result.stdout, name
    usage = probe("embed", "--model", "x")  # files and --output missing
    assert usage.returncode == 2 and "heavy: []" in usage.stdout
    (line,) = usage.stderr.strip().splitlines()
    assert line.startswith("siamdiff-hf embed: error:") and "--output" in line and "--help" in line


def test_every_command_help_shows_an_example():
    for name, parser in commands().items():
        assert f"siamdiff-hf {name} " in parser.format_help(), f"{name} --help has no example"


def test_missing_model_folder_is_one_line_on_stderr_with_exit_1(tmp_path, capsys):
    missing = tmp_path / "no_such_model"
    args = ["embed", "--model", str(missing), str(DATA / "2xcjA.pdb.gz"), "-o", str(tmp_path / "e.parquet")]
    assert main(args) == 1
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line == f"siamdiff-hf embed: error: {missing}: no such model folder"
    assert "Traceback" not in captured.out + captured.err
    # --debug before or after the command shows the real exception instead
    for debug_args in (["--debug", *args], [*args, "--debug"]):
        with pytest.raises(ModelLoadError, match="no such model folder"):
            main(debug_args)


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["embed", "--model", "m", "x.pdb", "-o", "x.parquet", "--pooling", "max"])
    assert exit.value.code == 2
    assert "invalid choice: 'max'" in capsys.readouterr().err
    folder = tmp_path / "logs"
    folder.mkdir()
    assert main(["push", str(folder), "someone/repo"]) == 2  # no config.json: not an exported model folder
    assert "no config.json" in capsys.readouterr().err


def test_error_messages_name_the_culprit_and_type_unexpected_errors():
    assert error_message(CheckpointError("a.pth: not a state dict\nmore detail")) == "a.pth: not a state dict"
    assert error_message(FileNotFoundError(2, "No such file or directory", "x.pdb")) == (
        "x.pdb: No such file or directory"
    )
    unexpected = error_message(RuntimeError("size mismatch for layers.0.weight"))
    assert unexpected.startswith("RuntimeError: size mismatch") and "--debug" in unexpected
    assert [exit_code(e) for e in (UsageError("x"), ValueError("x"), KeyboardInterrupt())] == [2, 1, 130]


def test_key_value_overrides_are_never_taken_by_an_option():
    args = _parse(["pretrain", "configs/quickstart.yaml", "--resume", "stages.0.max_steps=3", "seed=1", "-o", "r"])
    assert args.resume == "latest" and args.overrides == ["stages.0.max_steps=3", "seed=1"] and args.output == "r"
    args = _parse(["pretrain", "configs/quickstart.yaml", "seed=1", "--resume", "runs/a=b/checkpoints/x"])
    assert args.resume == "runs/a=b/checkpoints/x" and args.overrides == ["seed=1"]  # a path is not an override


def test_output_flag_and_overrides_reach_the_config(tmp_path, capsys):
    quickstart = str(ROOT / "configs" / "quickstart.yaml")
    assert main(["pretrain", quickstart, "--resume", "stages.0.max_steps=3", "-o", str(tmp_path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert f"output_dir: {tmp_path}" in printed and "max_steps: 3" in printed


def test_architecture_flag_speaks_model_types(capsys):
    for spelling in ("esm_gearnet", "esm-gearnet"):
        assert _parse(["convert-torchdrug", "a.pth", "-o", "x", "--architecture", spelling]).architecture == (
            "esm_gearnet"
        )
    old = _parse(["convert-torchdrug", "a.pth", "-o", "x", "--model", "gvp"])  # the old flag still works
    assert old.architecture == "gvp" and "deprecated" in capsys.readouterr().err


def test_package_warnings_print_above_progress_bars(monkeypatch):
    import logging

    from tqdm.auto import tqdm

    from siamdiff_hf import logging_utils

    written = []
    monkeypatch.setattr(logging_utils.tqdm, "write", lambda message, file=None: written.append(message))
    log = logging.getLogger("siamdiff_hf")
    saved = (log.handlers[:], log.level, log.propagate)
    try:
        handler = logging_utils.log_above_progress_bars()
        assert logging_utils.log_above_progress_bars() is handler  # idempotent
        with tqdm(total=2, disable=True) as bar:
            logging.getLogger("siamdiff_hf.data.afdb").warning("skipped %s: %s", "x.pdb", "no atoms")
            bar.update(1)
        assert written == ["WARNING: skipped x.pdb: no atoms"]
    finally:
        log.handlers[:] = saved[0]
        log.setLevel(saved[1])
        log.propagate = saved[2]
