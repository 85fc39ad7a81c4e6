"""ATOM3D tasks (PSR, MSP, PIP, RES) read from LMDBs written in ATOM3D's layout from the tests/data chains."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from _downstream_fixtures import DATA, atom_frame, atom_rows, col, frame, pip_item, res_item, write_atom3d_lmdb

from siamdiff_hf.data import atom3d, downstream
from siamdiff_hf.data.atom3d import Atom3DLMDB, AtomFrame, protein_from_atoms
from siamdiff_hf.data.downstream import DownstreamDataWarning, load_downstream
from siamdiff_hf.protein import InvalidStructureError, parse_structure
from siamdiff_hf.protein import constants as C

CHAINS = ("1dx5I", "1mr1D", "2xcjA", "2xdgA", "3e8mA", "3ny7A")
FIELDS = ("residue_type", "atom_positions", "atom_mask", "residue_number", "insertion_code", "chain_id", "b_factor")


def _load(task, root, tmp_path, **kwargs):
    with pytest.warns(DownstreamDataWarning) if kwargs.pop("expect_skips", False) else _no_warning():
        return load_downstream(task, root, "train", cache_dir=tmp_path / "cache", return_report=True, **kwargs)


class _no_warning:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error", DownstreamDataWarning)

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


# --- atom frames -> Protein ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CHAINS)
def test_atom_frame_gives_the_parsed_file_arrays(name):
    path = DATA / f"{name}.pdb.gz"
    protein = protein_from_atoms(AtomFrame.from_split(atom_frame(path)), id=name)
    reference = parse_structure(path)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(protein, field), getattr(reference, field), err_msg=field)


def test_atom_frame_rules_hydrogens_altlocs_modified_waters():
    rows = atom_rows(DATA / "2xcjA.pdb.gz")
    first = [r for r in rows if r[col("residue")] == rows[0][col("residue")]]
    number = first[0][col("residue")]
    ca = next(r for r in first if r[col("name")] == "CA")
    alt = list(ca)
    alt[col("altloc")], alt[col("occupancy")], alt[col("x")] = "B", 0.6, ca[col("x")] + 1.0
    ca[col("altloc")], ca[col("occupancy")] = "A", 0.4
    hydrogen = list(ca)
    hydrogen[col("name")], hydrogen[col("element")], hydrogen[col("x")] = "HA", "H", 99.0
    water = list(ca)
    water[col("resname")], water[col("hetero")], water[col("residue")], water[col("name")] = "HOH", "W", 900, "O"
    for r in rows:
        if r[col("residue")] == number + 1:  # the second residue becomes selenomethionine
            r[col("resname")] = "MSE"
    selenium = list(next(r for r in rows if r[col("residue")] == number + 1))
    selenium[col("name")], selenium[col("element")], selenium[col("x")] = "SE", "SE", -5.0
    shown = frame([*rows, alt, hydrogen, water, selenium])
    protein = protein_from_atoms(AtomFrame.from_split(shown))
    reference = parse_structure(DATA / "2xcjA.pdb.gz")
    assert protein.length == reference.length  # the water is dropped, no residue added
    assert protein.atom_positions[0, C.CA_INDEX, 0] == pytest.approx(ca[col("x")] + 1.0)  # occupancy 0.6 wins
    assert protein.residue_type[1] == C.RESIDUE_ID["MET"]  # MSE -> MET, its SE -> SD
    assert protein.atom_mask[1, C.ATOM37_INDEX["SD"]] and protein.atom_positions[1, C.ATOM37_INDEX["SD"], 0] == -5.0
    assert not (protein.atom_positions == 99.0).any()  # the hydrogen is gone
    present = {C.ATOM37_NAMES[j] for j in np.flatnonzero(protein.atom_mask[1])}
    assert present == {"N", "CA", "C", "O", "CB", "CG", "SD"}  # ASN's OD1/ND2 have no MET slot
    np.testing.assert_array_equal(protein.atom_mask[2:], reference.atom_mask[2:])


def test_atom_frame_without_ca_raises_naming_the_item():
    rows = [r for r in atom_rows(DATA / "2xcjA.pdb.gz") if r[col("name")] != "CA"]
    with pytest.raises(InvalidStructureError, match=r"item\[3\].*no amino-acid residue has a CA"):
        protein_from_atoms(AtomFrame.from_split(frame(rows)), source="item[3]")


# --- the LMDB reader ----------------------------------------------------------------------------------------------


def test_lmdb_reader_layout_and_corrupt_item(tmp_path):
    items = [{"atoms": atom_frame(DATA / "2xcjA.pdb.gz"), "id": "2xcj.pdb"}, b"\x1f\x8bnot really gzip"]
    write_atom3d_lmdb(tmp_path / "db", items)
    db = Atom3DLMDB(tmp_path / "db")
    assert len(db) == 2 and db.serialization_format == "json" and db.ids() == {"2xcj.pdb": 0, "raw1": 1}
    item = db.item(0)
    assert isinstance(item["atoms"], AtomFrame) and len(item["atoms"]) == len(item["atoms"]["x"])
    with pytest.raises(atom3d.CorruptItemError, match=r"db\[1\]: cannot decode"):
        db.item(1)
    with pytest.raises(FileNotFoundError, match=r"no data\.mdb"):
        Atom3DLMDB(tmp_path)


def test_lmdb_that_is_not_atom3d_names_the_file(tmp_path):
    import lmdb

    bad_count = {b"num_examples": b"many", b"serialization_format": b"json"}
    for name, entries in (("plain", {b"key": b"value"}), ("bad-count", bad_count)):
        env = lmdb.open(str(tmp_path / name))
        with env.begin(write=True) as txn:
            for key, value in entries.items():
                txn.put(key, value)
        env.close()
        with pytest.raises(ValueError, match=rf"{name}: not an ATOM3D LMDB") as info:
            Atom3DLMDB(tmp_path / name)
        assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such ATOM3D LMDB"):
        Atom3DLMDB(tmp_path / "absent")


def test_wrong_schema_items_are_counted(tmp_path):
    rows = atom_rows(DATA / "2xdgA.pdb.gz")
    no_x = frame([r[: col("x")] + r[col("x") + 1 :] for r in rows])
    no_x["columns"] = [c for c in no_x["columns"] if c != "x"]
    good = {"original_atoms": frame(rows), "mutated_atoms": frame(_mutate(rows, rows[0][col("residue")])),
            "id": "ok", "label": "0"}  # fmt: skip
    items = [
        good,
        {"atoms": frame(rows), "id": "a PSR item"},  # the other task's schema
        {"original_atoms": no_x, "mutated_atoms": frame(rows), "id": "no x column", "label": "1"},
        {"original_atoms": {"columns": ["x"], "data": [[1.0, 2.0]]}, "mutated_atoms": frame(rows), "id": "ragged"},
        gzip.compress(b"[1, 2]"),  # JSON, but not an item
    ]
    path = write_atom3d_lmdb(tmp_path / "msp" / "train", items)
    ds, report = _load("msp", tmp_path / "msp", tmp_path, expect_skips=True)
    assert len(ds) == 1 and ds["id"] == ["ok"] and report["items"] == 5
    assert report["corrupt_item"] == 3 and report["invalid_structure"] == 1
    with pytest.raises(atom3d.CorruptItemError, match=r"train\[3\]: malformed DataFrame 'original_atoms'"):
        Atom3DLMDB(path).item(3)


# --- PSR ----------------------------------------------------------------------------------------------------------


def _psr_lmdb(root: Path) -> tuple[Path, list]:
    """PSR items as atom3d's `examples/psr/dataset/prepare_lmdb.py` writes them: ``atoms`` of ``<target>/<decoy>.pdb``
    (``bp_to_df``: ensemble = structure = the file name, subunit 0), ``id`` = ``str((target, decoy))``, ``scores``
    (the score file's columns, ``-`` as ``_``) and ``file_path``."""
    rng = np.random.default_rng(0)
    items, expected = [], []
    for target, name in (("T0001", "2xcjA"), ("T0002", "3e8mA")):  # 3e8mA carries hydrogens
        rows = atom_rows(DATA / f"{name}.pdb.gz")
        for d in range(3):
            decoy = f"{target}TS{d:03d}_1"
            shift = rng.normal(size=3).round(3)
            moved = [list(r) for r in rows]
            for r in moved:
                r[col("ensemble")] = r[col("structure")] = f"{decoy}.pdb"
                r[col("x")], r[col("y")], r[col("z")] = (r[col(a)] + s for a, s in zip("xyz", shift))
            gdt = float(rng.uniform())
            scores = {"gdt_ts": gdt, "gdt_ha": gdt / 2, "rmsd": 2.0, "tm": 0.5}
            items.append({"atoms": frame(moved), "id": str((target, decoy)), "scores": scores,
                          "file_path": f"/psr/{target}/{decoy}.pdb"})  # fmt: skip
            expected.append((target, decoy, gdt, moved))
    items.insert(2, b"corrupt")
    return write_atom3d_lmdb(root / "split-by-year" / "data" / "train", items), expected


def test_psr_rows_labels_ids_coordinates_and_corrupt_item(tmp_path):
    _, expected = _psr_lmdb(tmp_path / "psr")
    ds, report = _load("psr", tmp_path / "psr", tmp_path, expect_skips=True)
    assert len(ds) == 6 and report["items"] == 7 and report["corrupt_item"] == 1
    assert ds["target"] == [e[0] for e in expected] and ds["decoy"] == [e[1] for e in expected]
    np.testing.assert_allclose(ds["labels"], [e[2] for e in expected], rtol=1e-6)
    row = ds.with_format("numpy")[4]  # T0002, decoy 1: hydrogens in the frame
    atoms = [r for r in expected[4][3] if r[col("element")] != "H"]
    ca = np.array([[r[col(a)] for a in "xyz"] for r in atoms if r[col("name")] == "CA"], dtype=np.float32)
    np.testing.assert_array_equal(row["atom_positions"][:, C.CA_INDEX], ca)
    reference = parse_structure(DATA / "3e8mA.pdb.gz")  # hydrogens and duplicated records: the parser's rules
    np.testing.assert_array_equal(row["atom_mask"], reference.atom_mask)
    shift = ca[0] - reference.atom_positions[0, C.CA_INDEX]
    np.testing.assert_allclose(row["atom_positions"][row["atom_mask"]], (reference.atom_positions + shift)[
        reference.atom_mask], atol=2e-3)  # fmt: skip
    assert row["id"] == "T0002/T0002TS001_1" and row["length"] == len(ca)


def test_psr_target_and_decoy_from_the_file_path_when_the_id_is_not_a_pair():
    item = {"id": "3", "file_path": "/psr/T0759/3D-JIGSAW_SL1_TS1.pdb"}  # atom3d's own source of the id
    assert downstream._target_and_decoy(item) == ("T0759", "3D-JIGSAW_SL1_TS1")
    assert downstream._target_and_decoy({"id": "('T0759', 'x_TS2')"}) == ("T0759", "x_TS2")
    assert downstream._target_and_decoy({"id": "7"}) == ("7", "7")


def test_cache_hit_second_load_and_rebuild_on_source_change(tmp_path, monkeypatch):
    path, _ = _psr_lmdb(tmp_path / "psr")
    first, _ = _load("psr", path, tmp_path, expect_skips=True)

    def fail(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setitem(downstream._CONVERTERS, "psr", fail)
    second, report = _load("psr", path, tmp_path, expect_skips=True)  # served from the cache
    assert second["decoy"] == first["decoy"] and report["corrupt_item"] == 1
    assert [f["filename"] for f in second.cache_files] == [f["filename"] for f in first.cache_files]
    with pytest.raises(Exception, match="converted again"):
        _load("psr", path, tmp_path, max_items=3)  # other options: another cache entry
    stat = os.stat(path / "data.mdb")
    os.utime(path / "data.mdb", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(Exception, match="converted again"):
        _load("psr", path, tmp_path)  # the source changed


def test_parallel_conversion_gives_the_same_rows(tmp_path):
    _psr_lmdb(tmp_path / "psr")
    serial, _ = _load("psr", tmp_path / "psr", tmp_path / "a", expect_skips=True)
    parallel, report = _load("psr", tmp_path / "psr", tmp_path / "b", expect_skips=True, num_proc=2)
    assert parallel["id"] == serial["id"] and report["corrupt_item"] == 1
    np.testing.assert_array_equal(
        np.concatenate(parallel.with_format("numpy")["atom_positions"]),
        np.concatenate(serial.with_format("numpy")["atom_positions"]),
    )


# --- MSP ----------------------------------------------------------------------------------------------------------


def _mutate(rows, number, new="THR"):
    """VAL -> THR at ``number``: CG1 becomes OG1 (an oxygen) and moves 0.4 A; the other atoms stay."""
    out = [list(r) for r in rows]
    for r in out:
        if r[col("residue")] == number:
            r[col("resname")] = new
            if r[col("name")] == "CG1":
                r[col("name")], r[col("element")], r[col("x")] = "OG1", "O", r[col("x")] + 0.4
    return out


def test_msp_pairs_mutated_residue_window_and_length_mismatch(tmp_path):
    rows = atom_rows(DATA / "2xdgA.pdb.gz")
    reference = parse_structure(DATA / "2xdgA.pdb.gz")
    k = int(np.flatnonzero(reference.residue_type == C.RESIDUE_ID["VAL"])[0])
    number = int(reference.residue_number[k])
    mutated = _mutate(rows, number)
    shorter = [r for r in rows if r[col("residue")] != reference.residue_number[-1]]
    items = [
        {"original_atoms": frame(rows), "mutated_atoms": frame(mutated), "id": f"2XDG_A_VA{number}T", "label": "1"},
        {"original_atoms": frame(rows), "mutated_atoms": frame(shorter), "id": "2XDG_A_bad", "label": "0"},
    ]
    write_atom3d_lmdb(tmp_path / "msp" / "train", items)
    ds, report = _load("msp", tmp_path / "msp", tmp_path, expect_skips=True)
    assert len(ds) == 1 and report["length_mismatch"] == 1
    row = ds.with_format("numpy")[0]
    assert row["labels"] == 1.0 and row["mutation"] == f"2XDG_A_VA{number}T"
    assert row["selection_1"].tolist() == [k] and row["selection_2"].tolist() == [k]
    assert row["residue_type_1"][k] == C.RESIDUE_ID["VAL"] and row["residue_type_2"][k] == C.RESIDUE_ID["THR"]
    og1, cg1 = C.ATOM37_INDEX["OG1"], C.ATOM37_INDEX["CG1"]
    assert row["atom_mask_2"][k, og1] and not row["atom_mask_2"][k, cg1]
    assert row["atom_positions_2"][k, og1, 0] == pytest.approx(row["atom_positions_1"][k, cg1, 0] + 0.4)
    np.testing.assert_array_equal(np.delete(row["residue_type_1"], k), np.delete(row["residue_type_2"], k))
    np.testing.assert_array_equal(row["atom_positions_1"], reference.atom_positions)

    window, _ = _load("msp", tmp_path / "msp", tmp_path, expect_skips=True, max_length=20)
    start = max(0, min(k - 10, reference.length - 20))
    w = window.with_format("numpy")[0]
    assert w["length_1"] == w["length_2"] == 20 and w["selection_1"].tolist() == [k - start]
    np.testing.assert_array_equal(w["residue_number_1"], reference.residue_number[start : start + 20])


def test_msp_window_is_the_official_truncation():
    assert downstream.msp_window(300, 10, 400) == (0, 300)
    assert downstream.msp_window(1000, 10, 400) == (0, 400)  # clipped at the start
    assert downstream.msp_window(1000, 500, 400) == (300, 700)  # centred
    assert downstream.msp_window(1000, 990, 400) == (600, 1000)  # clipped at the end


# --- PIP ----------------------------------------------------------------------------------------------------------


def test_pip_pairs_sampling_and_crops(tmp_path):
    item, contacts = pip_item()
    ensemble = "1dx5I.pdb.gz_1_A_1dx5I.pdb.gz_1_B"
    assert item["id"] == ensemble
    write_atom3d_lmdb(tmp_path / "pip" / "train", [item])
    ds, _report = _load("pip", tmp_path / "pip", tmp_path)
    rows = ds.with_format("numpy")
    labels = np.asarray(ds["labels"])
    assert len(contacts) > 10 and (labels == 1).sum() == 10 and (labels == 0).sum() == 10
    full = {c: parse_structure(DATA / "1dx5I.pdb.gz") for c in "AB"}
    for row in rows:
        s1, s2 = int(row["selection_1"][0]), int(row["selection_2"][0])
        r1, r2 = int(row["residue_number_1"][s1]), int(row["residue_number_2"][s2])
        assert row["chain_id_1"][s1] == "A" and row["chain_id_2"][s2] == "B" and row["ensemble"] == ensemble
        assert ((r1, r2) in contacts) == (row["labels"] == 1.0)
        for side, sel in (("1", s1), ("2", s2)):
            pos, mask = row[f"atom_positions_{side}"], row[f"atom_mask_{side}"]
            distance = np.linalg.norm(pos - pos[sel, C.CA_INDEX], axis=-1)
            assert (distance[mask] <= 30.0 + 1e-4).all() and mask[:, C.CA_INDEX].all()
            source = full["A"]
            number = row[f"residue_number_{side}"]
            rows_in_source = np.searchsorted(source.residue_number, number)
            np.testing.assert_array_equal(pos[mask], source.atom_positions[rows_in_source][mask])
            inside = source.atom_mask & (np.linalg.norm(source.atom_positions - pos[sel, C.CA_INDEX], axis=-1) <= 30.0)
            chain = (source.residue_number >= 400) == (side == "2")
            assert mask.sum() == (inside & chain[:, None] & inside[:, [C.CA_INDEX]]).sum()
    again, _ = _load("pip", tmp_path / "pip", tmp_path / "again")
    assert again["id"] == ds["id"]  # seeded: the same draw
    other, _ = _load("pip", tmp_path / "pip", tmp_path, seed=1)
    assert other["id"] != ds["id"]


# --- RES ----------------------------------------------------------------------------------------------------------


def test_res_environments_labels_hidden_target(tmp_path):
    rows = atom_rows(DATA / "2xcjA.pdb.gz")
    reference = parse_structure(DATA / "2xcjA.pdb.gz")
    picks = [10, 30, 50]
    targets = [("A", int(reference.residue_number[i]), C.RESIDUE_NAMES[reference.residue_type[i]]) for i in picks]
    item = res_item(rows, [*targets, ("A", int(reference.residue_number[5]), "XYZ")])
    copy = [list(r) for r in rows] + [[*r[:4], "B", *r[5:13], r[13] + 3.0, *r[14:]] for r in rows]  # same numbers
    ambiguous = res_item(copy, [targets[0]], item_id="2xcj-twice")
    write_atom3d_lmdb(tmp_path / "res" / "train", [item, ambiguous])
    ds, report = _load("res", tmp_path / "res", tmp_path, expect_skips=True)
    assert len(ds) == 3 and report["unknown_label"] == 1 and report["ambiguous_target"] == 1
    assert ds["target_residue"] == [f"{c}_{n}_{r}" for c, n, r in targets]
    for row, (_chain, number, resname) in zip(ds.with_format("numpy"), targets):
        target = row["residue_number"] == number
        assert target.sum() == 1 and (row["hidden_residue_types"] == target).all()
        assert row["labels"][target][0] == C.RESIDUE_ID[resname] and (row["labels"][~target] == -100).all()
        assert row["residue_type"][target][0] == 0  # hidden as the official code hides it
        present = [C.ATOM37_NAMES[j] for j in np.flatnonzero(row["atom_mask"][target][0])]
        assert sorted(present) == ["C", "CA", "N", "O"]  # the environment holds no side chain of the target
        source = np.searchsorted(reference.residue_number, row["residue_number"])
        np.testing.assert_array_equal(row["residue_type"][~target], reference.residue_type[source][~target])
        np.testing.assert_array_equal(row["atom_positions"][row["atom_mask"]],
                                      reference.atom_positions[source][row["atom_mask"]])  # fmt: skip
    by_chain, report = _load("res", tmp_path / "res", tmp_path, expect_skips=True, target_match="chain")
    assert len(by_chain) == 4 and report["unknown_label"] == 1 and "ambiguous_target" not in report


# --- options and errors -------------------------------------------------------------------------------------------


def test_bad_arguments_name_the_problem(tmp_path):
    _psr_lmdb(tmp_path / "psr")
    with pytest.raises(ValueError, match="unknown downstream task 'foo'"):
        load_downstream("foo", tmp_path)
    with pytest.raises(TypeError, match=r"unknown option.*max_length"):
        load_downstream("psr", tmp_path / "psr", max_length=3, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no ATOM3D LMDB for split 'test'"):
        load_downstream("psr", tmp_path / "psr", "test", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="target_match"):
        load_downstream("res", tmp_path / "psr", target_match="x", cache_dir=tmp_path)


# --- rows -> the heads' batch -------------------------------------------------------------------------------------


def test_rows_collate_into_head_inputs(tmp_path):
    from siamdiff_hf.protein.collator import ProteinDataCollator

    rows = [r for r in atom_rows(DATA / "2xcjA.pdb.gz") if r[col("element")] != "H"]
    reference = parse_structure(DATA / "2xcjA.pdb.gz")
    targets = [("A", int(reference.residue_number[i]), C.RESIDUE_NAMES[reference.residue_type[i]]) for i in (3, 9)]
    write_atom3d_lmdb(tmp_path / "res" / "train", [res_item(rows, targets)])
    item, _ = pip_item()
    write_atom3d_lmdb(tmp_path / "pip" / "train", [item])
    res, _ = _load("res", tmp_path / "res", tmp_path)
    pip, _ = _load("pip", tmp_path / "pip", tmp_path, num_positives=2)
    collator = ProteinDataCollator()
    batch = collator([res.with_format("numpy")[i] for i in range(len(res))])
    lengths = res["length"]
    assert batch["residue_type"].shape == (sum(lengths),) and batch["labels"].shape == (sum(lengths),)
    assert int((batch["labels"] != -100).sum()) == 2 and batch["hidden_residue_types"].sum() == 2
    pairs = collator([pip.with_format("numpy")[i] for i in range(len(pip))])
    assert pairs["labels"].shape == (len(pip),) and pairs["selection_1"].shape == (len(pip),)
    assert pairs["selection_batch_2"].tolist() == list(range(len(pip)))
    first = pip.with_format("numpy")[0]
    assert pairs["residue_type_1"][pairs["selection_1"][0]] == first["residue_type_1"][first["selection_1"][0]]
