"""EC and GO read from folders in DeepFRI's and TorchDrug's layouts built from the tests/data chains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _downstream_fixtures import DATA, write_deepfri

from siamdiff_hf.data.deepfri import read_split
from siamdiff_hf.data.downstream import TASKS, DownstreamDataWarning, downstream_features, load_downstream
from siamdiff_hf.protein import parse_structure

EC_TERMS = ["1.1.1.1", "2.7.11.1", "3.4.21.-", "3.2.1.17"]
EC_SPLITS = {
    "train": {"2XDG-A": "2xdgA.pdb.gz", "2XCJ-A": "2xcjA.pdb.gz", "9ZZZ-A": "2xcjA.pdb.gz"},
    "valid": {"1MR1-D": "1mr1D.pdb.gz"},
    "test": {"1DX5-I": "1dx5I.pdb.gz", "3NY7-A": "3ny7A.pdb.gz"},
}
EC_ANNOTATIONS = {"2XDG-A": "1.1.1.1,3.4.21.-", "2XCJ-A": "2.7.11.1", "1MR1-D": "3.2.1.17", "1DX5-I": "1.1.1.1",
                  "3NY7-A": "2.7.11.1,3.2.1.17", "9ZZZ-A": "1.1.1.1"}  # fmt: skip
CUTOFFS = {"1DX5-I": (0, 0, 0, 1, 1), "3NY7-A": (0, 0, 0, 0, 1)}


@pytest.fixture()
def ec_root(tmp_path):
    root = write_deepfri(tmp_path / "ec", "ec", EC_SPLITS, EC_ANNOTATIONS, EC_TERMS, CUTOFFS)
    (root / "structures" / "9ZZZ-A.pdb.gz").unlink()  # listed and annotated, but no structure file
    return root


def test_ec_rows_labels_coordinates_and_missing_structure(ec_root, tmp_path):
    with pytest.warns(DownstreamDataWarning, match="missing_structure 1"):
        ds, report = load_downstream("ec", ec_root, "train", cache_dir=tmp_path / "c", return_report=True)
    assert ds["id"] == ["2XDG-A", "2XCJ-A"] and report["listed"] == 3 and report["missing_structure"] == 1
    assert report["label_names"] == EC_TERMS
    rows = ds.with_format("numpy")
    np.testing.assert_array_equal(rows["labels"], [[1, 0, 1, 0], [0, 1, 0, 0]])
    reference = parse_structure(DATA / "2xdgA.pdb.gz")
    row = rows[0]
    np.testing.assert_array_equal(row["atom_positions"], reference.atom_positions)
    np.testing.assert_array_equal(row["atom_mask"], reference.atom_mask)
    np.testing.assert_array_equal(row["residue_type"], reference.residue_type)
    assert list(row["chain_id"]) == ["A"] * reference.length and row["length"] == reference.length


@pytest.mark.parametrize(("cutoff", "expected"), [(0.95, ["1DX5-I", "3NY7-A"]), (0.7, ["1DX5-I"]), (0.5, [])])
def test_ec_test_cutoff_filtering(ec_root, tmp_path, cutoff, expected):
    split = read_split(ec_root, "ec", "test", test_cutoff=cutoff)
    assert split.chains == expected and split.counts["removed_by_cutoff"] == 2 - len(expected)
    ds = load_downstream("ec", ec_root, "test", cache_dir=tmp_path / "c", test_cutoff=cutoff)
    assert list(ds["id"]) == expected and ds.features["labels"].length == len(EC_TERMS)  # 0.5: an empty split
    with pytest.raises(ValueError, match="test_cutoff must be one of"):
        read_split(ec_root, "ec", "test", test_cutoff=0.9)


def test_go_torchdrug_layout_branches_and_empty_branch(tmp_path):
    terms = {"MF": ["GO:1", "GO:2"], "BP": ["GO:3", "GO:4", "GO:5"], "CC": ["GO:6"]}
    splits = {"train": {"2XDG-A": "2xdgA.pdb.gz", "2XCJ-A": "2xcjA.pdb.gz"}, "valid": {}, "test": {}}
    annotations = {"2XDG-A": ("GO:2", "GO:3,GO:5", ""), "2XCJ-A": ("GO:1,GO:2", "", "GO:6")}
    root = write_deepfri(tmp_path / "go", "go", splits, annotations, terms, {}, layout="torchdrug")
    for txt in root.glob("*_train.txt"):
        txt.unlink()  # TorchDrug's zip: the split is the folder
    by_branch = {}
    for task in ("go-mf", "go-bp", "go-cc"):
        ds = load_downstream(task, root, "train", cache_dir=tmp_path / "c")
        assert ds.features["labels"].length == len(terms[task[-2:].upper()])
        by_branch[task] = dict(zip(ds["id"], [list(x) for x in ds["labels"]]))
    assert by_branch["go-mf"] == {"2XCJ-A": [1, 1], "2XDG-A": [0, 1]}
    assert by_branch["go-bp"] == {"2XCJ-A": [0, 0, 0], "2XDG-A": [1, 0, 1]}  # an empty branch: all-zero target
    assert by_branch["go-cc"] == {"2XCJ-A": [1], "2XDG-A": [0]}


def test_multi_chain_file_keeps_the_named_chain(tmp_path):
    a = parse_structure(DATA / "2xdgA.pdb.gz").to_pdb_string().rsplit("END", 1)[0]
    b = parse_structure(DATA / "1mr1D.pdb.gz").to_pdb_string()
    root = write_deepfri(tmp_path / "ec", "ec", {"train": {}}, {"1MR1-D": "1.1.1.1"}, EC_TERMS, {})
    (root / "structures" / "1MR1-D.pdb").write_text(a + b)
    (root / "nrPDB-EC_2020.04_train.txt").write_text("1MR1-D\n")
    ds = load_downstream("ec", root, "train", cache_dir=tmp_path / "c")
    assert set(ds[0]["chain_id"]) == {"D"} and ds[0]["length"] == parse_structure(DATA / "1mr1D.pdb.gz").length


def test_chain_ids_differing_only_in_case_get_their_own_structure(tmp_path):
    # The released lists hold such pairs (EC: 3H4P-A / 3H4P-a; GO: 233 of them); the PDB code is case-insensitive.
    splits = {"train": {"2XDG-A": "2xdgA.pdb.gz", "2XDG-a": "2xcjA.pdb.gz", "1MR1-D": "1mr1D.pdb.gz"}}
    annotations = {"2XDG-A": "1.1.1.1", "2XDG-a": "2.7.11.1", "1MR1-D": "3.2.1.17", "1MR1-d": "3.2.1.17"}
    root = write_deepfri(tmp_path / "ec", "ec", splits, annotations, EC_TERMS, {})
    (root / "structures" / "1MR1-D.pdb.gz").rename(root / "structures" / "1mr1-D.pdb.gz")  # lower-case PDB code
    (root / "nrPDB-EC_2020.04_train.txt").write_text("2XDG-A\n2XDG-a\n1MR1-D\n1MR1-d\n")
    split = read_split(root, "ec", "train")
    assert split.chains == ["2XDG-A", "2XDG-a", "1MR1-D"] and split.counts["missing_structure"] == 1  # no 1MR1-d
    assert Path(split.files["2XDG-a"]).name == "2XDG-a.pdb.gz" and Path(split.files["1MR1-D"]).name == "1mr1-D.pdb.gz"
    with pytest.warns(DownstreamDataWarning, match="missing_structure 1"):
        ds = load_downstream("ec", root, "train", cache_dir=tmp_path / "c")
    assert ds[1]["length"] == parse_structure(DATA / "2xcjA.pdb.gz").length != ds[0]["length"]


def test_missing_or_bad_deepfri_files_name_the_file(ec_root, tmp_path):
    (ec_root / "nrPDB-EC_2020.04_valid.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"ec: no nrPDB-EC\*_valid\.txt list and no valid/ folder"):
        load_downstream("ec", ec_root, "valid", cache_dir=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match=r"no annotation file matching 'nrPDB-GO\*_annot\.tsv'"):
        read_split(ec_root, "go-mf", "train")
    annot = ec_root / "nrPDB-EC_2020.04_annot.tsv"
    annot.write_text(annot.read_text() + "1ABC-A\t9.9.9.9\n")
    with pytest.raises(ValueError, match=r"annot\.tsv:10: term '9\.9\.9\.9' is not in the file's term list"):
        read_split(ec_root, "ec", "train")
    annot.write_text("### EC-numbers\n")
    with pytest.raises(ValueError, match=r"annot\.tsv: not a DeepFRI annotation file"):
        read_split(ec_root, "ec", "train")
    with pytest.raises(FileNotFoundError, match="absent: not a directory"):
        read_split(tmp_path / "absent", "ec", "train")


def test_task_table_and_features():
    assert {t: TASKS[t].num_labels for t in TASKS} == {
        "ec": 538, "go-bp": 1943, "go-mf": 489, "go-cc": 320, "psr": 1, "msp": 1, "pip": 1, "res": 20,
    }  # fmt: skip
    assert {t: TASKS[t].metric for t in TASKS} == {
        "ec": "f1_max", "go-bp": "f1_max", "go-mf": "f1_max", "go-cc": "f1_max", "psr": "spearman", "msp": "auroc",
        "pip": "auroc", "res": "accuracy",
    }  # fmt: skip
    assert TASKS["res"].problem_type == "single_label_classification" and TASKS["res"].level == "residue"
    assert TASKS["psr"].problem_type == "regression" and TASKS["msp"].level == TASKS["pip"].level == "pair"
    assert downstream_features("ec")["labels"].length == 538
    assert {"selection_1", "selection_2", "residue_type_1", "atom_positions_2"} <= set(downstream_features("pip"))
