"""`siamdiff-hf embed` end to end: batches, Parquet columns and metadata, pooling, bad files and bad models."""

from __future__ import annotations

import gzip
import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file, save_file

import siamdiff_hf
from siamdiff_hf import (
    GearNetConfig,
    GearNetModel,
    ProteinStructureProcessor,
    SiamDiffConfig,
    SiamDiffForPreTraining,
    parse_structure,
)
from siamdiff_hf.cli import main
from siamdiff_hf.embedding import read_embedding_metadata

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("encoder")
    torch.manual_seed(0)
    GearNetModel(GearNetConfig(level="atom", hidden_dims=[16, 16])).save_pretrained(folder)
    ProteinStructureProcessor(crop_length=20, random_crop=True).save_pretrained(folder)
    return folder


def test_embed_writes_every_good_file_and_lists_the_bad_ones(tmp_path, model_dir, capsys):
    good = sorted(DATA.glob("*.pdb.gz"))[:3]
    garbage = tmp_path / "garbage.pdb"
    garbage.write_text("this is not a structure\n")
    waters = tmp_path / "waters.pdb"
    waters.write_text("HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00 10.00           O\nEND\n")
    output = tmp_path / "out" / "embeddings.parquet"
    args = ["embed", "--model", str(model_dir), *map(str, good), str(garbage), str(waters), "--output", str(output)]
    assert main([*args, "--batch-size", "2"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "embedded 3 of 5" in printed and "garbage.pdb" in printed and "waters.pdb" in printed
    for line in printed.splitlines():  # the summary names each skipped file once
        if "garbage.pdb" in line:
            assert line.count("garbage.pdb") == 1, line
    assert "skipped" in captured.err and "garbage.pdb" in captured.err  # a warning when it happened

    table = pq.read_table(output).to_pylist()
    assert [row["path"] for row in table] == [str(p) for p in good]
    for row, path in zip(table, good):
        protein = parse_structure(path)
        assert row["sequence"] == protein.sequence  # whole proteins: the saved crop setting is ignored
        assert len(row["residue_embeddings"]) == protein.length
        assert len(row["protein_embedding"]) == 32
    # The rows equal a direct forward pass of each protein alone.
    model = GearNetModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        direct = model(**ProteinStructureProcessor()([good[1]], return_tensors="pt"))
    expected = direct.protein_embeddings[0].numpy()
    np.testing.assert_allclose(table[1]["protein_embedding"], expected, rtol=1e-4, atol=1e-5)


def test_embed_fails_when_every_file_fails(tmp_path, model_dir, capsys):
    empty = tmp_path / "empty.cif"
    empty.write_text("")
    assert main(["embed", "--model", str(model_dir), str(empty), "--output", str(tmp_path / "x.parquet")]) == 1
    assert "empty.cif" in capsys.readouterr().out
    assert not (tmp_path / "x.parquet").exists()


def test_console_script_and_module_entry_point(model_dir, tmp_path):
    output = tmp_path / "e.parquet"
    command = [sys.executable, "-m", "siamdiff_hf", "embed", "-m", str(model_dir), str(DATA / "2xcjA.pdb.gz")]
    result = subprocess.run([*command, "-o", str(output)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert pq.read_table(output).num_rows == 1


def _with_insertion_codes(source: Path, target: Path) -> int:
    """Write ``source`` with its residues 2-4 renumbered 52, 52A, 52B and B-factor 10 + residue index.

    Returns the number of residues.
    """
    renumber = {1: "  52 ", 2: "  52A", 3: "  52B"}
    lines, residues = [], []
    for line in gzip.decompress(source.read_bytes()).decode().splitlines(keepends=True):
        if line.startswith("ATOM"):
            key = (line[21], line[22:27])
            if key not in residues:
                residues.append(key)
            index = residues.index(key)
            line = f"{line[:22]}{renumber.get(index, line[22:27])}{line[27:60]}{10.0 + index:6.2f}{line[66:]}"
        lines.append(line)
    target.write_text("".join(lines))
    return len(residues)


@pytest.fixture(scope="module")
def residue_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("residue_encoder")
    torch.manual_seed(1)
    GearNetModel(GearNetConfig(hidden_dims=[16], num_angle_bin=2)).save_pretrained(folder)
    ProteinStructureProcessor().save_pretrained(folder)
    return folder


def test_parquet_keeps_insertion_codes_b_factors_and_run_metadata(tmp_path, residue_model_dir):
    structure = tmp_path / "icodes.pdb"
    num_residues = _with_insertion_codes(DATA / "1dx5I.pdb.gz", structure)
    output = tmp_path / "e.parquet"
    assert main(["embed", "--model", str(residue_model_dir), str(structure), "-o", str(output)]) == 0
    (row,) = pq.read_table(output).to_pylist()
    assert row["residue_number"][1:4] == [52, 52, 52] and row["insertion_code"][:5] == ["", "", "A", "B", ""]
    assert row["b_factor"] == pytest.approx([10.0 + i for i in range(num_residues)])
    assert len(row["residue_embeddings"]) == num_residues  # 52, 52A and 52B are three residues
    metadata = read_embedding_metadata(output)
    assert metadata == {
        "model": str(residue_model_dir),
        "model_type": "gearnet",
        "level": "residue",
        "pooling": "sum",
        "embedding_dim": 16,
        "siamdiff_hf_version": siamdiff_hf.__version__,
    }


def test_pooling_mean_divides_the_sum_by_the_length(tmp_path, residue_model_dir):
    files = [str(DATA / "1dx5I.pdb.gz"), str(DATA / "2xcjA.pdb.gz")]
    for pooling in ("sum", "mean"):
        output = tmp_path / f"{pooling}.parquet"
        assert main(["embed", "-m", str(residue_model_dir), *files, "-o", str(output), "--pooling", pooling]) == 0
        assert read_embedding_metadata(output)["pooling"] == pooling
        for row in pq.read_table(output).to_pylist():
            residues = np.asarray(row["residue_embeddings"])
            expected = residues.sum(0) if pooling == "sum" else residues.mean(0)
            np.testing.assert_allclose(row["protein_embedding"], expected, rtol=1e-4, atol=1e-4)
    sums, means = (pq.read_table(tmp_path / f"{p}.parquet").column("protein_embedding").to_pylist() for p in
                   ("sum", "mean"))  # fmt: skip
    assert not np.allclose(sums[0], means[0])


def _broken_copies(model_dir: Path, root: Path) -> dict[str, tuple[Path, str]]:
    """Model folders broken in the ways users meet, with the file and the reason the error must name."""
    cases = {}
    for name in ("unknown_type", "wrong_shapes", "bad_value", "no_config", "missing_weights"):
        shutil.copytree(model_dir, root / name)
    weights = load_file(root / "missing_weights" / "model.safetensors")
    del weights["layers.1.linear.weight"]
    save_file(weights, root / "missing_weights" / "model.safetensors", metadata={"format": "pt"})
    cases["missing_weights"] = (root / "missing_weights", "1 weights of the config.json architecture are missing")
    config = json.loads((root / "unknown_type" / "config.json").read_text())
    (root / "unknown_type" / "config.json").write_text(json.dumps({**config, "model_type": "gearnett"}))
    cases["unknown_type"] = (root / "unknown_type" / "config.json", "unknown model_type 'gearnett'")
    GearNetModel(GearNetConfig(level="atom", hidden_dims=[8, 8])).save_pretrained(root / "small")
    shutil.copy(root / "small" / "model.safetensors", root / "wrong_shapes" / "model.safetensors")
    cases["wrong_shapes"] = (root / "wrong_shapes" / "model.safetensors", "do not fit config.json")
    (root / "bad_value" / "config.json").write_text(json.dumps({**config, "hidden_dims": "sixty-four"}))
    cases["bad_value"] = (root / "bad_value" / "config.json", "hidden_dims")
    (root / "no_config" / "config.json").unlink()
    cases["no_config"] = (root / "no_config", "no config.json")
    SiamDiffForPreTraining(SiamDiffConfig(encoder_config=GearNetConfig(hidden_dims=[8]))).save_pretrained(root / "st")
    cases["st"] = (root / "st", "pre-training model; embed its encoder")
    return cases


def test_unloadable_models_give_one_line_naming_the_file(tmp_path, model_dir, capsys):
    for name, (culprit, reason) in _broken_copies(model_dir, tmp_path).items():
        args = ["embed", "--model", str(tmp_path / name), str(DATA / "2xcjA.pdb.gz"), "-o", str(tmp_path / "e.pq")]
        assert main(args) == 1, name
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"siamdiff-hf embed: error: {culprit}") and reason in line, (name, line)
    assert not (tmp_path / "e.pq").exists()


def test_example_script_skips_bad_files_and_reports_them(tmp_path, residue_model_dir, monkeypatch, capsys):
    garbage = tmp_path / "garbage.pdb"
    garbage.write_text("not a structure\n")
    script = Path(__file__).parents[1] / "examples" / "extract_embeddings.py"
    monkeypatch.setattr(sys, "argv", [str(script), str(residue_model_dir), str(DATA / "2xcjA.pdb.gz"), str(garbage)])
    runpy.run_path(str(script), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    length = parse_structure(DATA / "2xcjA.pdb.gz").length
    assert lines[0] == f"{DATA / '2xcjA.pdb.gz'}: protein embedding (16,), residue embeddings ({length}, 16)"
    assert lines[1].startswith("skipped") and lines[1].count("garbage.pdb") == 1
