"""load_afdb: AFDB-shaped tars, directories and Foldcomp databases streamed from paths, file:// and HTTP."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from _fixtures import (
    Entry,
    afdb_entries,
    corrupt_gzip,
    serve_directory,
    write_afdb_tar,
    write_foldcomp_db,
)
from datasets.distributed import split_dataset_by_node

from siamdiff_hf.data import (
    AFDB_FEATURES,
    SourceError,
    StreamCounts,
    StreamFilters,
    afdb_proteome_urls,
    load_afdb,
    reset_skip_counts,
    skip_counts,
)
from siamdiff_hf.protein import parse_structure

ARRAY_KEYS = ("residue_type", "atom_positions", "atom_mask", "plddt")


def direct(entry, fmt: str = "pdb", backend: str = "gemmi") -> dict:
    """The example of ``entry`` parsed directly, without the stream."""
    protein = parse_structure(getattr(entry, f"{fmt}_gz"), format=fmt, id=entry.id, backend=backend)
    return {"id": protein.id, "residue_type": protein.residue_type, "atom_positions": protein.atom_positions,
            "atom_mask": protein.atom_mask, "plddt": protein.b_factor, "length": protein.length}  # fmt: skip


def assert_same(example: dict, expected: dict) -> None:
    assert example["id"] == expected["id"]
    assert int(example["length"]) == expected["length"]
    for key in ARRAY_KEYS:
        got, want = np.asarray(example[key]), np.asarray(expected[key])
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)
    assert np.asarray(example["atom_positions"]).dtype == np.float32


@pytest.fixture(scope="module")
def tars(tmp_path_factory) -> list[Path]:
    """Three AFDB proteome tars holding the six entries (3 + 2 + 1)."""
    folder = tmp_path_factory.mktemp("afdb")
    entries = afdb_entries()
    return [write_afdb_tar(folder / f"UP00000000{i}_{i}_TEST_v4.tar", part)
            for i, part in enumerate((entries[:3], entries[3:5], entries[5:]))]  # fmt: skip


def test_stream_from_path_file_url_and_http_matches_direct_parsing(tars):
    entries = afdb_entries()
    expected = [direct(entry) for entry in entries]
    assert len({float(np.mean(entry.plddt)) for entry in entries}) == len(entries)  # pLDDT varies
    with serve_directory(tars[0].parent) as base_url:
        for sources in (tars, [f"file://{t}" for t in tars], [f"{base_url}/{t.name}" for t in tars]):
            dataset = load_afdb(sources)
            assert dataset.num_shards == 3
            assert dataset.features == AFDB_FEATURES
            examples = list(dataset)
            assert [e["id"] for e in examples] == [e.id for e in entries]
            for example, want, entry in zip(examples, expected, entries):
                assert_same(example, want)
                np.testing.assert_allclose(example["plddt"], entry.plddt, atol=1e-3)
    # the default reads each entry's PDB member; its mmCIF member (gemmi or Biopython) gives the same arrays
    for backend in ("gemmi", "biopython"):
        for example, entry in zip(load_afdb(tars[0], prefer="cif", backend=backend), entries):
            assert_same(example, direct(entry, "pdb"))
            assert_same(example, direct(entry, "cif", backend))


def test_directories_globs_numpy_torch_and_map_style(tmp_path):
    entries = afdb_entries()
    for entry in entries:  # a directory of loose files, both formats per entry
        (tmp_path / f"{entry.id}.cif.gz").write_bytes(entry.cif_gz)
        (tmp_path / f"{entry.id}.pdb").write_bytes(entry.pdb.encode())
    dataset = load_afdb(tmp_path, files_per_shard=4)
    assert dataset.num_shards == 2
    for example, entry in zip(dataset.with_format("numpy"), entries):
        assert example["atom_positions"].shape == (int(example["length"]), 37, 3)
        assert_same(example, direct(entry, "cif"))
    pdb_only = load_afdb(str(tmp_path / "*.pdb"), prefer="pdb")
    for example, entry in zip(pdb_only.with_format("torch"), entries):
        assert example["atom_positions"].dtype == torch.float32 and example["atom_mask"].dtype == torch.bool
        assert_same({k: v.numpy() if torch.is_tensor(v) else v for k, v in example.items()}, direct(entry, "pdb"))
    table = load_afdb(tmp_path, streaming=False, min_length=90, cache_dir=str(tmp_path / "cache"))
    kept = [entry for entry in entries if direct(entry)["length"] >= 90]
    assert table.num_rows == len(kept) and table["id"] == [entry.id for entry in kept]
    assert_same(table.with_format("numpy")[0], direct(kept[0]))


def test_filters_and_unopenable_sources(tars, tmp_path):
    lengths = {entry.id: direct(entry)["length"] for entry in afdb_entries()}
    means = {entry.id: float(np.mean(entry.plddt)) for entry in afdb_entries()}
    reset_skip_counts()
    ids = [e["id"] for e in load_afdb(tars, min_length=90, max_length=150, min_plddt=55)]
    assert ids == [i for i in lengths if 90 <= lengths[i] <= 150 and means[i] >= 55]
    counts = skip_counts()
    assert counts["examples"] == len(ids)
    assert counts["filtered_length"] + counts["filtered_plddt"] == len(lengths) - len(ids)
    with pytest.raises(SourceError, match=r"nope\.tar"):
        load_afdb(tmp_path / "nope.tar")
    with serve_directory(tmp_path) as base_url, pytest.raises(SourceError, match=r"missing_v4\.tar"):
        load_afdb(f"{base_url}/missing_v4.tar")


def _complete_entries(path: Path) -> list[str]:
    """Ids with a complete member in a possibly truncated tar (the stream delivers an entry's preferred member, or
    the other one where the tar ends inside the preferred one)."""
    ids: list[str] = []
    with contextlib.suppress(tarfile.ReadError, EOFError), tarfile.open(path, "r|") as archive:
        for member in archive:
            archive.extractfile(member).read()
            entry = member.name.split(".")[0]
            if entry not in ids:
                ids.append(entry)
    return ids


def test_corrupt_member_truncated_tar_and_garbage_are_skipped_and_counted(tmp_path, caplog):
    entries = afdb_entries()
    bad = entries[1]
    damaged = [entries[0], Entry(bad.id, bad.plddt, corrupt_gzip(bad.pdb_gz), corrupt_gzip(bad.cif_gz)), entries[2]]
    damaged_tar = write_afdb_tar(tmp_path / "damaged.tar", damaged,
                                 extra=[("AF-QTEXT-F1-model_v4.pdb", b"HEADER    no atoms\nEND\n")])  # fmt: skip
    truncated = write_afdb_tar(tmp_path / "truncated.tar", entries[3:], truncate_at=0.6)
    complete = _complete_entries(truncated)
    assert 0 < len(complete) < 3
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "AF-A0JUNK-F1-model_v4.pdb").write_bytes(bytes(range(256)) * 8)
    (loose / f"{entries[0].id}.cif.gz").write_bytes(entries[0].cif_gz)

    reset_skip_counts()
    with caplog.at_level(logging.WARNING, logger="siamdiff_hf.data.afdb"):
        examples = list(load_afdb([damaged_tar, truncated, loose], report_skips=True))
    assert [e["id"] for e in examples] == [entries[0].id, entries[2].id, *complete, entries[0].id]
    for example in examples:
        assert_same(example, direct(next(e for e in entries if e.id == example["id"])))
    counts = skip_counts()
    assert counts["corrupt_gzip"] == 1 and counts["truncated_tar"] == 1
    assert counts["parse_error"] + counts["invalid_structure"] == 2  # the atom-less member and the junk file
    assert sum(int(e["num_skipped"]) for e in examples) == 4  # every failure precedes a delivered example
    messages = "\n".join(record.getMessage() for record in caplog.records)
    for name in (f"{bad.id}.pdb.gz", "truncated.tar", "AF-QTEXT", "AF-A0JUNK"):
        assert name in messages


def test_two_ranks_two_workers_see_each_example_once(tmp_path):
    entries = afdb_entries()
    tars = [write_afdb_tar(tmp_path / f"shard{i}.tar", entries[i::4]) for i in range(4)]
    dataset = load_afdb(tars).shuffle(seed=7, buffer_size=4)
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        seen = []
        for rank in range(2):
            node = split_dataset_by_node(dataset, rank=rank, world_size=2)
            loader = torch.utils.data.DataLoader(node, batch_size=None, num_workers=2, collate_fn=lambda x: x)
            seen.extend(example["id"] for example in loader)
        assert sorted(seen) == sorted(entry.id for entry in entries), epoch


RESUME_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from siamdiff_hf.data import load_afdb
    out = []
    for args in json.loads(sys.argv[1]):
        dataset = load_afdb(args["sources"], min_length=args["min_length"])
        if args["shuffle"]:
            dataset = dataset.shuffle(seed=3, buffer_size=1)
        dataset.set_epoch(args["epoch"])
        dataset.load_state_dict(args["state"])
        out.append([example["id"] for example in dataset])
    print(json.dumps(out))
    """
)


def test_resume_in_a_new_process_neither_repeats_nor_skips(tmp_path):
    entries = afdb_entries()
    bad = entries[2]
    parts = [list(entries[:3]), list(entries[3:])]
    parts[0][2] = Entry(bad.id, bad.plddt, corrupt_gzip(bad.pdb_gz), corrupt_gzip(bad.cif_gz))
    tars = [str(write_afdb_tar(tmp_path / f"s{i}.tar", part)) for i, part in enumerate(parts)]
    tars.append(str(write_afdb_tar(tmp_path / "s2.tar", entries[:2], truncate_at=0.7)))

    def build(shuffle: bool):
        dataset = load_afdb(tars, min_length=85)  # drops the 84-residue chain; one member is corrupt
        if shuffle:
            dataset = dataset.shuffle(seed=3, buffer_size=1)  # shard order shuffled per epoch, state exact
        dataset.set_epoch(1)
        return dataset

    fulls, firsts, scenarios = [], [], []
    for shuffle in (False, True):
        fulls.append([example["id"] for example in build(shuffle)])
        assert len(fulls[-1]) >= 5
        dataset, first = build(shuffle), []
        for example in dataset:
            first.append(example["id"])
            if len(first) == 3:
                state = dataset.state_dict()
                break
        firsts.append(first)
        scenarios.append({"sources": tars, "min_length": 85, "shuffle": shuffle, "epoch": 1, "state": state})
    assert fulls[0] != fulls[1]  # the shuffled epoch reads shards in another order
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, json.dumps(scenarios)], capture_output=True,
                            text=True, env=env, timeout=120, check=True)  # fmt: skip
    rests = json.loads(result.stdout.strip().splitlines()[-1])
    for full, first, rest in zip(fulls, firsts, rests):
        assert first + rest == full


def test_foldcomp_database_round_trip(tmp_path):
    foldcomp = pytest.importorskip("foldcomp")
    # Foldcomp 1.0 segfaults on a chain with a gap (2xdgA); AFDB models have none, so those entries are used
    entries = [e for e in afdb_entries() if np.diff(parse_structure(e.pdb_gz, format="pdb").residue_number).max() == 1]
    assert len(entries) == 5
    database = write_foldcomp_db(tmp_path / "afdb_test", entries)
    dataset = load_afdb(database, foldcomp_shard_size=3)
    assert dataset.num_shards == 2
    examples = list(dataset)
    assert [e["id"] for e in examples] == [entry.id for entry in entries]
    for example, entry in zip(examples, entries):
        _, pdb_string = foldcomp.decompress(foldcomp.compress(entry.id, entry.pdb))
        decoded = parse_structure(pdb_string.encode(), format="pdb", id=entry.id)
        original = direct(entry, "pdb")
        assert_same(example, {**direct(entry, "pdb"), "atom_positions": decoded.atom_positions,
                              "atom_mask": decoded.atom_mask, "plddt": decoded.b_factor})  # fmt: skip
        # Foldcomp is lossy (internal coordinates): close to the original model, same residues
        np.testing.assert_array_equal(decoded.residue_type, original["residue_type"])
        ca = original["atom_mask"][:, 1]
        assert np.abs(decoded.atom_positions[ca, 1] - original["atom_positions"][ca, 1]).max() < 1.0
        np.testing.assert_allclose(decoded.b_factor, entry.plddt, atol=1.0)


def test_afdb_proteome_urls_and_cli(capsys):
    from siamdiff_hf.cli import main

    urls = afdb_proteome_urls()
    assert len(urls) == 21 and len(set(urls)) == 21
    assert urls[8] == "https://ftp.ebi.ac.uk/pub/databases/alphafold/latest/UP000005640_9606_HUMAN_v4.tar"
    assert afdb_proteome_urls(["ecoli"], swissprot="cif") == [
        "https://ftp.ebi.ac.uk/pub/databases/alphafold/latest/UP000000625_83333_ECOLI_v4.tar",
        "https://ftp.ebi.ac.uk/pub/databases/alphafold/latest/swissprot_cif_v4.tar",
    ]
    with pytest.raises(ValueError, match="unknown species"):
        afdb_proteome_urls([21])
    assert main(["afdb-urls", "--species", "0-1,MAIZE", "--swissprot", "pdb", "--with-names"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == [
        "Arabidopsis thaliana", "Caenorhabditis elegans", "Zea mays", "Swiss-Prot"]  # fmt: skip


def test_stream_counts_object_is_explicit_and_separate_from_the_process_counts(tars):
    reset_skip_counts()
    mine = StreamCounts()
    ids = [e["id"] for e in load_afdb(tars, filters=StreamFilters(min_length=90), counts=mine)]
    assert mine.as_dict()["examples"] == len(ids) and mine.as_dict()["filtered_length"] == 6 - len(ids)
    assert mine.total == 6 and skip_counts()["examples"] == 0  # the process-wide counts were not touched
    with pytest.raises(ValueError, match="either filters= or"):
        load_afdb(tars, filters=StreamFilters(), min_length=3)
    with pytest.raises(ValueError, match="max_length"):
        load_afdb(tars, max_length=0)


def _write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_of_another_schema_or_with_wrong_lengths(tars, tmp_path, caplog):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from siamdiff_hf.data import prepare_afdb

    other = _write_parquet(tmp_path / "other.parquet", [{"name": "x", "sequence": "MKV"}])
    with pytest.raises(SourceError, match=r"other\.parquet.*no column 'id', 'residue_type'.*columns: name, sequence"):
        list(load_afdb(other))
    summary = prepare_afdb(tars[:1], tmp_path / "good", progress=False)
    table = pq.read_table(summary.shards[0])
    lengths = table.column("length").to_pylist()
    lengths[1] -= 1  # the second row's length disagrees with its arrays
    column = pa.array(lengths, type=table.schema.field("length").type)
    bad = table.set_column(table.schema.get_field_index("length"), "length", column)
    pq.write_table(bad, tmp_path / "bad.parquet")
    reset_skip_counts()
    with caplog.at_level(logging.WARNING, logger="siamdiff_hf.data.afdb"):
        examples = list(load_afdb(tmp_path / "bad.parquet"))
    entries = afdb_entries()
    assert [e["id"] for e in examples] == [entries[0].id, entries[2].id]  # the others are not shifted
    for example, entry in zip(examples, (entries[0], entries[2])):
        assert_same(example, direct(entry))
    assert skip_counts()["invalid_row"] == 1
    assert f"bad.parquet row 1 ({entries[1].id})" in caplog.text and "column 'length' says" in caplog.text
    wrong_type = _write_parquet(tmp_path / "types.parquet", [{"id": "a", "residue_type": 3, "atom_positions": 1,
                                "atom_mask": 1, "plddt": 1.0, "length": 1}])  # fmt: skip
    with pytest.raises(SourceError, match=r"types\.parquet.*another type"):
        list(load_afdb(wrong_type))
