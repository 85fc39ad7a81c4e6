"""Checks of the downstream readers against the released files in ``../shared/data`` (a developer's checkout only).

The test suite never reads ``../shared`` (a user's clone has none): its tests build every format themselves. This
script holds the readers to the real released files where they are present beside the repository (override the
folder with ``SIAMDIFF_SHARED_DATA``):

* ``ec_go_splits``: DeepFRI's nrPDB-EC split lists and 95%/30% identity flags (538 EC terms, 720 test chains
  below 30% identity);
* ``atom3d_lmdb``: four entries of an ATOM3D LMDB as released (``bp_to_df``'s 20 columns, a DataFrame marked in
  ``types``), read without ``atom3d``.

Usage: ``python benchmarks/real_data_checks.py``; prints one line per check and exits with 1 if one fails.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from siamdiff_hf.data import atom3d
from siamdiff_hf.data.atom3d import Atom3DLMDB, protein_from_atoms
from siamdiff_hf.data.deepfri import read_split
from siamdiff_hf.protein import constants as C

SHARED = Path(os.environ.get("SIAMDIFF_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def check_deepfri_splits(root: Path) -> None:
    """Every listed EC chain is counted, the terms are 538, and the 30% cutoff keeps 720 test chains."""
    with tempfile.TemporaryDirectory() as empty:
        counts = {}
        for split in ("train", "valid", "test"):
            result = read_split(root, "ec", split, structure_dir=empty)
            assert len(result.terms) == 538 and not result.chains  # no structures there: all counted missing
            counts[split] = result.counts
        lines = {s: len((root / f"nrPDB-EC_2020.04_{s}.txt").read_text().split()) for s in counts}
        assert {s: c["listed"] for s, c in counts.items()} == lines
        assert counts["test"]["removed_by_cutoff"] == 0  # every EC test chain is flagged 1 at 95%
        cut = read_split(root, "ec", "test", test_cutoff=0.3, structure_dir=empty).counts["removed_by_cutoff"]
        assert cut == lines["test"] - 720, cut


def check_atom3d_lmdb(root: Path) -> None:
    """The released layout reads into proteins whose CA coordinates and insertion codes are the frame's."""
    db = Atom3DLMDB(root)
    ids = db.ids()
    assert len(db) == len(ids) == 4
    for name, index in ids.items():
        item = db.item(index)
        atoms = item["atoms"]
        protein = protein_from_atoms(atoms, id=name, source=f"{root}[{index}]")
        amino = np.isin(atoms["resname"], C.RESIDUE_NAMES) & (atoms["name"] == "CA") & (atoms["model"] == 1)
        keys = set(zip(atoms["chain"][amino], atoms["residue"][amino], atoms["insertion_code"][amino]))
        assert protein.length == len(keys) and json.dumps(protein.chains)
        assert tuple(atoms) == atom3d.ATOM_COLUMNS and item["types"]["atoms"] == atom3d.DATAFRAME_TYPE
        kinds = {c: atoms[c].dtype.kind for c in atoms}
        assert {c for c, k in kinds.items() if k == "i"} == {"subunit", "model", "residue", "serial_number"}
        assert {c for c, k in kinds.items() if k == "f"} == {"occupancy", "bfactor", "x", "y", "z"}
        np.testing.assert_allclose(
            protein.atom_positions[:, C.CA_INDEX], np.stack([atoms[a][amino] for a in "xyz"], -1), atol=1e-5
        )  # these entries have one CA per residue, in file order
        icode = atoms["insertion_code"][amino]
        np.testing.assert_array_equal(protein.insertion_code, np.where(icode == " ", "", icode))


CHECKS = {"ec_go_splits": check_deepfri_splits, "atom3d_lmdb": check_atom3d_lmdb}


def main() -> int:
    failed = 0
    for folder, check in CHECKS.items():
        root = SHARED / folder
        if not root.is_dir():
            print(f"skipped {folder}: {root} not present")
            continue
        try:
            check(root)
        except AssertionError as error:
            failed += 1
            print(f"FAILED {folder}: {error!r}")
            continue
        print(f"ok {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
