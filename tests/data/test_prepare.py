"""prepare-afdb: tars -> Parquet shards in 2 processes, loaded back by load_afdb and datasets' parquet builder;
per-input-shard names, resumption, errors and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _fixtures import afdb_entries, corrupt_gzip, serve_directory, write_afdb_tar
from datasets import load_dataset

from siamdiff_hf.cli import main
from siamdiff_hf.data import AFDB_FEATURES, SourceError, StreamFilters, load_afdb, prepare_afdb

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
    assert shards == ["train-p0-00000.parquet", "train-p1-00000.parquet", "train-p1-00001.parquet"]  # 2 + 3 kept
    assert sorted(p.name for p in output.glob("*.done.json")) == ["p0.done.json", "p1.done.json"]
    assert not list(output.glob("*.partial"))

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
    with pytest.raises(ValueError, match=r"p0\.done\.json.*other settings \(filters"):
        prepare_afdb(tars, output, shard_size=2)  # the same folder without --max-length


def test_prepare_afdb_in_process_matches_and_counts(tars, tmp_path):
    summary = prepare_afdb(tars, tmp_path / "out", num_proc=1, min_plddt=65, progress=False)
    means = [float(np.mean(entry.plddt)) for entry in afdb_entries()]
    assert summary.kept == sum(m >= 65 for m in means) and summary.filtered == sum(m < 65 for m in means)
    assert summary.failed == 0 and len(summary.shards) == 2
    assert [e["id"] for e in load_afdb(tmp_path / "out")] == [e["id"] for e in load_afdb(tars, min_plddt=65)]


def test_resume_converts_only_unfinished_input_shards(tars, tmp_path):
    output = tmp_path / "out"
    first = prepare_afdb(tars[:1], output, progress=False)
    assert first.units == 1 and first.resumed == 0
    written = {p.name: p.stat().st_mtime_ns for p in output.glob("*.parquet")}
    (output / "train-p1-00000.parquet.partial").write_bytes(b"half-written by a killed job")
    second = prepare_afdb(tars, output, progress=False)  # p0 is done; p1 is converted (stale partial replaced)
    assert second.units == 2 and second.resumed == 1
    assert {p.name: p.stat().st_mtime_ns for p in output.glob("train-p0-*.parquet")} == written
    assert not list(output.glob("*.partial"))
    assert second.kept == len(afdb_entries()) and len(second.shards) == 2
    assert [e["id"] for e in load_afdb(output)] == [e["id"] for e in load_afdb(tars)]
    third = prepare_afdb(tars, output, filters=StreamFilters(), progress=False)  # nothing left to do
    assert third.resumed == 2 and third.kept == second.kept and third.shards == second.shards
    done = json.loads((output / "p1.done.json").read_text())
    assert done["counts"]["examples"] == 3 and done["parts"] == ["train-p1-00000.parquet"]


def test_cli_errors_and_exit_codes(tars, tmp_path, capsys):
    missing = tmp_path / "nope.tar"
    assert main(["prepare-afdb", str(missing), "-o", str(tmp_path / "a"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "nope.tar" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()  # nothing created for a missing input
    with pytest.raises(SourceError):
        prepare_afdb(missing, tmp_path / "b")
    entries = afdb_entries()
    broken = [type(e)(e.id, e.plddt, corrupt_gzip(e.pdb_gz), corrupt_gzip(e.cif_gz)) for e in entries[:2]]
    bad_tar = write_afdb_tar(tmp_path / "bad.tar", broken)
    assert main(["prepare-afdb", str(bad_tar), "-o", str(tmp_path / "c"), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "failed 2 (corrupt_gzip 2)" in captured.out and "every structure failed" in captured.err
    assert main(["prepare-afdb", str(tars[0]), "-o", str(tmp_path / "d"), "--min-length", "500",
                 "--max-length", "100"]) == 2  # fmt: skip
    assert "min_length (500) is larger than max_length (100)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="min_plddt"):
        StreamFilters(min_plddt=140)


# --- the packed layout ---------------------------------------------------------------------------------------


def test_packed_layout_streams_the_same_examples(tars, tmp_path, capsys):
    output = tmp_path / "packed"
    argv = ["prepare-afdb", *map(str, tars), "-o", str(output), "--layout", "packed", "--shard-size", "2",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    expected = list(load_afdb(tars))
    got = list(load_afdb(output))
    assert len(got) == len(expected) == len(afdb_entries())
    for a, b in zip(got, expected, strict=True):
        assert_same(a, b)
    import pyarrow.parquet as pq

    from siamdiff_hf.data.packed import is_packed

    schema = pq.read_schema(next(output.glob("*.parquet")))
    assert is_packed(schema) and str(schema.field("atom_positions").type) == "large_binary"
    assert json.loads((output / "p0.done.json").read_text())["layout"] == "packed"
    with pytest.raises(ValueError, match=r"other settings \(layout: 'packed'\)"):
        prepare_afdb(tars, output, shard_size=2, progress=False)  # the same folder in the arrays layout
    with pytest.raises(ValueError, match="unknown Parquet layout 'flat'"):
        prepare_afdb(tars, tmp_path / "x", layout="flat", progress=False)


def test_markers_without_a_layout_resume_as_arrays(tars, tmp_path):
    output = tmp_path / "out"
    prepare_afdb(tars[:1], output, progress=False)
    marker = output / "p0.done.json"
    done = json.loads(marker.read_text())
    del done["layout"]  # written by a version without layouts
    marker.write_text(json.dumps(done))
    assert prepare_afdb(tars[:1], output, progress=False).resumed == 1


def test_packed_rows_with_wrong_sizes_are_skipped(tars, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from siamdiff_hf.data import StreamCounts
    from siamdiff_hf.data.packed import packed_table

    rows = [dict(example) for example in load_afdb(tars)][:3]
    table = packed_table(rows)
    positions = table.column("atom_positions").to_pylist()
    positions[1] = positions[1][:-4]  # one float short
    masks = table.column("atom_mask").to_pylist()
    masks[2] = bytes([2]) * len(masks[2])  # not 0/1
    table = table.set_column(2, "atom_positions", pa.array(positions, pa.large_binary()))
    table = table.set_column(3, "atom_mask", pa.array(masks, pa.large_binary()))
    path = tmp_path / "bad.parquet"
    pq.write_table(table.replace_schema_metadata(packed_table(rows).schema.metadata), path)
    counts = StreamCounts()
    kept = list(load_afdb(path, counts=counts))
    assert [e["id"] for e in kept] == [rows[0]["id"]] and counts.as_dict()["invalid_row"] == 2


def test_packed_metadata_over_other_columns_names_the_file(tars, tmp_path):
    """A file that says it is packed but holds the arrays layout's columns: one SourceError naming the file."""
    import pyarrow.parquet as pq

    from siamdiff_hf.data.packed import METADATA_KEY, PACKED_METADATA

    prepare_afdb(tars[:1], tmp_path / "arrays", progress=False)
    table = pq.read_table(next((tmp_path / "arrays").glob("*.parquet")))
    path = tmp_path / "mislabelled.parquet"
    pq.write_table(table.replace_schema_metadata({METADATA_KEY: json.dumps(PACKED_METADATA)}), path)
    with pytest.raises(SourceError, match=r"mislabelled\.parquet: a column has another type than the packed layout"):
        list(load_afdb(path))
