"""`siamdiff-hf embed` end to end: batches, Parquet output, bad files skipped and listed, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from siamdiff_hf import GearNetConfig, GearNetModel, ProteinStructureProcessor, parse_structure
from siamdiff_hf.cli import main

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
    printed = capsys.readouterr().out
    assert "embedded 3 of 5" in printed and "garbage.pdb" in printed and "waters.pdb" in printed

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
