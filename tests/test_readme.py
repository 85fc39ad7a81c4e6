"""The README's commands run as written: every fenced bash command is checked, the short ones are run.

Setup lines (venv, pip) are checked against setup.cfg; `siamdiff-hf` command lines are parsed by the real CLI (flags
and values must exist) and config-driven ones are validated with `--dry-run`; the quickstart and the embed
command are run exactly as written (slow), in a folder that links the repository's files, twice for the
quickstart (it must be rerunnable), then the Python snippets of the embedding and fine-tuning sections. A README
command of a kind this file does not know fails the test, so new commands get checked too.
"""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from packaging.requirements import Requirement

from siamdiff_hf.cli import _parse, main

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
RUN_AS_WRITTEN = (  # run by test_quickstart_and_embed_run_as_written, in this order
    ".venv/bin/siamdiff-hf pretrain configs/quickstart.yaml",
    ".venv/bin/siamdiff-hf embed --model outputs/quickstart/encoder siamdiff_hf/resources/structures/*.pdb.gz "
    "--output embeddings.parquet",
)

PYTHON_RUN_AS_WRITTEN = ("Embeddings for your own structures", "Fine-tuning")  # sections whose snippets run


def readme_commands() -> list[str]:
    """Every command of the README's ```bash blocks: continuation lines joined, comments and `&&` split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            commands.extend(" ".join(part.split()) for part in line.split("&&") if part.strip())
    return commands


def siamdiff_arguments(command: str) -> list[str] | None:
    """The `siamdiff-hf` arguments of a command (direct, or after `accelerate launch ... -m siamdiff_hf`)."""
    tokens = shlex.split(command)
    if tokens[0] == ".venv/bin/siamdiff-hf":
        return tokens[1:]
    if tokens[:2] == [".venv/bin/accelerate", "launch"] and "-m" in tokens:
        start = tokens.index("-m")
        assert tokens[start + 1] == "siamdiff_hf", command
        launcher = tokens[2:start]
        if "--config_file" in launcher:
            assert (ROOT / launcher[launcher.index("--config_file") + 1]).is_file(), command
        return tokens[start + 2 :]
    return None


def test_readme_has_the_commands_a_new_user_runs():
    commands = readme_commands()
    for command in RUN_AS_WRITTEN:
        assert command in commands, command
    assert not [c for c in commands if c.startswith("siamdiff-hf ")], "use .venv/bin/siamdiff-hf (not on PATH)"


def test_every_readme_command_is_valid(tmp_path, capsys):
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    requirements = {Requirement(r).name: Requirement(r) for r in setup["options"]["install_requires"].split("\n") if r}
    for command in readme_commands():
        arguments = siamdiff_arguments(command)
        tokens = shlex.split(command)
        if arguments is not None:
            args = _parse(arguments)  # raises SystemExit on an unknown flag or a bad value
            config = getattr(args, "config", None)
            if config is not None:  # config commands: the config resolves with the command's own overrides
                assert main([*arguments, "--dry-run", f"output_dir={tmp_path}"]) == 0, command
                capsys.readouterr()
        elif tokens[:3] == ["python3", "-m", "venv"]:
            assert tokens[3] == ".venv", command
        elif tokens[0] == ".venv/bin/pip" and tokens[1] == "install":
            for spec in tokens[2:]:
                if spec.startswith("-"):
                    continue
                extras = re.fullmatch(r"(-e )?\.\[(\w+)\]", spec)
                if spec.startswith(".") and extras:
                    assert extras.group(2) in setup["options.extras_require"], spec
                elif spec != ".":
                    pinned = Requirement(spec)
                    assert requirements[pinned.name].specifier.contains(next(iter(pinned.specifier)).version), spec
        elif tokens[:3] == [".venv/bin/python", "-m", "pytest"]:
            assert (ROOT / "tests").is_dir()
        elif tokens[:2] == [".venv/bin/ruff", "check"]:
            assert "ruff" in setup["options.extras_require"]["test"]
        elif tokens[0] == ".venv/bin/python" and tokens[1].endswith(".py"):
            assert (ROOT / tokens[1]).is_file(), command
        else:
            pytest.fail(f"README command of an unknown kind, check it here: {command}")


@pytest.fixture
def repository_view(tmp_path) -> Path:
    """A folder that looks like the repository root (links to its files), so runs write outputs there."""
    if not (ROOT / ".venv" / "bin" / "siamdiff-hf").exists():
        pytest.skip("needs the README's setup (.venv with siamdiff-hf installed)")
    for name in (".venv", "configs", "siamdiff_hf", "tests"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


@pytest.mark.slow
def test_quickstart_and_embed_run_as_written(repository_view):
    def run(command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", command], cwd=repository_view, capture_output=True, text=True,
                              timeout=1800)  # fmt: skip

    quickstart, embed = RUN_AS_WRITTEN
    for attempt in (1, 2):  # the second run starts afresh over the first one's checkpoints
        result = run(quickstart)
        assert result.returncode == 0, (attempt, result.stderr[-2000:])
    encoder = repository_view / "outputs" / "quickstart" / "encoder"
    assert (encoder / "model.safetensors").is_file() and "nothing useful" in (encoder / "README.md").read_text()
    result = run(embed)
    assert result.returncode == 0, result.stderr[-2000:]
    table = pq.read_table(repository_view / "embeddings.parquet")
    assert table.num_rows == len(list((ROOT / "siamdiff_hf" / "resources" / "structures").glob("*.pdb.gz")))
    for section in PYTHON_RUN_AS_WRITTEN:  # the sections' Python snippets, on the quickstart's encoder
        (repository_view / "snippet.py").write_text(readme_python(section))
        result = run(".venv/bin/python snippet.py")
        assert result.returncode == 0, (section, result.stderr[-2000:])


def readme_python(section: str) -> str:
    """The ```python blocks of one README section (a `### ` heading), joined into one script."""
    text = README.read_text()
    start = text.index(f"\n### {section}\n")
    end = min(i for i in (text.find("\n## ", start + 1), text.find("\n### ", start + 1), len(text)) if i != -1)
    blocks = re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)
    assert blocks, section
    return "\n".join(blocks)
