"""prepare-afdb: tars -> Parquet shards in 2 processes, loaded back by load_afdb and datasets' parquet builder."""

from __future__ import annotations

import numpy as np
import pytest
from _fixtures import afdb_entries, serve_directory, write_afdb_tar
from datasets import load_dataset

from siamdiff_hf.cli import main
from siamdiff_hf.data import AFDB_FEATURES, load_afdb, prepare_afdb

ARRAY_KEYS = ("residue_type", "atom_positions", "atom_mask", "plddt")


def assert_same(got: dict, want: dict) -> None:
    assert got["id"] == want["id"] and int(got["length"]) == int(want["length"])
    for key in ARRAY_KEYS:
        a, b = np.asarray(got[key]), np.asarray(want[key])
        assert a.shape == b.shape, key
        assert a.dtype == b.dtype or key == "residue_type", key
        np.testing.assert_array_equal(a, b, err_msg=key)


@pytest.fixture(scope="module")
def tars(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tars")
    entries = afdb_entries()
    return [write_afdb_tar(folder / f"p{i}.tar", entries[i::2]) for i in range(2)]


def test_prepare_afdb_cli_two_processes_round_trip(tars, tmp_path, capsys):
    output = tmp_path / "parquet"
    argv = ["prepare-afdb", *map(str, tars), "--output", str(output), "--num-proc", "2", "--shard-size", "2",
            "--max-length", "150", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    summary = capsys.readouterr().out
    assert "kept 5, filtered 1 (filtered_length 1), failed 0" in summary
    shards = sorted(p.name for p in output.glob("*.parquet"))
    assert shards == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]  # 2 + 3 kept, parts of <= 2
    assert not list(output.glob(".prepare-*"))

    expected = list(load_afdb(tars, max_length=150))  # direct parsing of the same tars, same order
    assert len(expected) == 5
    from_parquet = load_afdb(output)
    assert from_parquet.num_shards == 3
    for got, want in zip(from_parquet, expected, strict=True):
        assert_same(got, want)
    hub_style = load_dataset("parquet", data_files=str(output / "*.parquet"), split="train", streaming=True)
    assert hub_style.features == AFDB_FEATURES
    for got, want in zip(hub_style.with_format("numpy"), expected, strict=True):
        assert_same(got, want)
    with serve_directory(output) as base_url:  # Parquet over HTTP (range requests through fsspec)
        urls = [f"{base_url}/{name}" for name in shards]
        for got, want in zip(load_afdb(urls), expected, strict=True):
            assert_same(got, want)
    with pytest.raises(FileExistsError):
        prepare_afdb(tars, output)


def test_prepare_afdb_in_process_matches_and_counts(tars, tmp_path):
    summary = prepare_afdb(tars, tmp_path / "out", num_proc=1, min_plddt=65, progress=False)
    means = [float(np.mean(entry.plddt)) for entry in afdb_entries()]
    assert summary.kept == sum(m >= 65 for m in means) and summary.filtered == sum(m < 65 for m in means)
    assert summary.failed == 0 and len(summary.shards) == 2
    assert [e["id"] for e in load_afdb(tmp_path / "out")] == [e["id"] for e in load_afdb(tars, min_plddt=65)]
