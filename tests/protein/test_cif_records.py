"""`read_cif_records`: the numpy ``_atom_site`` reader gives gemmi's records, or None where it cannot be sure.

Reference: gemmi's own path (`parsing._gemmi_records`: ``cif.read_string`` + ``make_structure_from_block`` +
``FlatStructure``), and Biopython's MMCIFParser through ``parse_structure(..., backend="biopython")``.
"""

from __future__ import annotations

import gemmi
import numpy as np
import pytest
from testing_utils import assert_same_protein, mmcif_from_pdb

from siamdiff_hf.protein import Protein, parse_structure, parsing
from siamdiff_hf.protein import cif_records as cr
from siamdiff_hf.protein.cif_records import read_cif_records
from siamdiff_hf.protein.records import AtomRecords

RECORD_FIELDS = ("chain", "resnum", "icode", "resname", "name", "occ", "pos", "b")
COLUMNS = (
    "group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id", "label_comp_id", "label_asym_id",
    "label_entity_id", "label_seq_id", "pdbx_PDB_ins_code", "Cartn_x", "Cartn_y", "Cartn_z", "occupancy",
    "B_iso_or_equiv", "pdbx_formal_charge", "auth_seq_id", "auth_comp_id", "auth_asym_id", "auth_atom_id",
    "pdbx_PDB_model_num",
)  # fmt: skip
BACKBONE = ("N", "CA", "C", "O")


# --- helpers ------------------------------------------------------------------------------------------------------


def gemmi_records(data: bytes) -> AtomRecords | None:
    return parsing._gemmi_records(data, "cif")


def assert_same_records(fast: AtomRecords, slow: AtomRecords) -> None:
    """Exact equality (bytes, so -0.0 differs from 0.0) and equal dtypes of every record array."""
    assert fast.num_records == slow.num_records
    for key in RECORD_FIELDS:
        x, y = np.ascontiguousarray(getattr(fast, key)), np.ascontiguousarray(getattr(slow, key))
        assert x.dtype == y.dtype and x.shape == y.shape, key
        assert x.tobytes() == y.tobytes(), key


def protein(records: AtomRecords) -> Protein:
    return parsing._protein_from_columns(records, "x", "x")


def in_file_order(records: AtomRecords) -> bool:
    """gemmi's records are in file order when their serials (``_atom_site.id``, increasing in the file) are."""
    return bool((np.diff(records.serial) > 0).all())


def check(data: bytes, *, biopython: bool = True) -> AtomRecords:
    """Assert the fast records are gemmi's (and give the same Protein, also as Biopython's); return them."""
    fast = read_cif_records(data)
    assert fast is not None
    slow = gemmi_records(data)
    assert in_file_order(slow)
    assert_same_records(fast, slow)
    reference = protein(fast)
    assert_same_protein(reference, protein(slow))
    if biopython:
        assert_same_protein(reference, parse_structure(data, format="cif", backend="biopython", id="x"))
    return fast


def general_path(monkeypatch, data: bytes) -> AtomRecords | None:
    """Read ``data`` with the aligned-columns route switched off."""
    with monkeypatch.context() as patch:
        patch.setattr(cr, "_aligned_table", lambda *args: None)
        return read_cif_records(data)


def site(name, resname, chain, seq, xyz, **kw) -> dict[str, str]:
    """Return one ``_atom_site`` row (column -> token), the label_ ids equal to the auth_ ones unless given."""
    x, y, z = (f"{v:.3f}" if isinstance(v, float) else v for v in xyz)
    row = {
        "group_PDB": "ATOM", "id": "0", "type_symbol": name[0], "label_atom_id": name, "label_alt_id": ".",
        "label_comp_id": resname, "label_asym_id": chain, "label_entity_id": "1", "label_seq_id": str(seq),
        "pdbx_PDB_ins_code": "?", "Cartn_x": x, "Cartn_y": y, "Cartn_z": z, "occupancy": "1.00",
        "B_iso_or_equiv": "20.00", "pdbx_formal_charge": "?", "auth_seq_id": str(seq), "auth_comp_id": resname,
        "auth_asym_id": chain, "auth_atom_id": name, "pdbx_PDB_model_num": "1",
    }  # fmt: skip
    row.update({k: str(v) for k, v in kw.items()})
    return row


def residue(resname, chain, seq, names=BACKBONE, origin=0.0, **kw) -> list[dict[str, str]]:
    """Return rows placing ``names`` at distinct positions around ``origin``."""
    return [site(n, resname, chain, seq, (origin + i, origin + 1.5 * i, 3.0 - i), **kw) for i, n in enumerate(names)]


def cif(rows, *, columns=COLUMNS, aligned: bool = False, newline: str = "\n", sep: str = " ") -> bytes:
    """Return an mmCIF document with one ``_atom_site`` loop of ``rows`` (ids numbered in order unless set),
    columns padded to equal widths when ``aligned``."""
    table = [[str(i + 1) if c == "id" and row[c] == "0" else row[c] for c in columns] for i, row in enumerate(rows)]
    if aligned:
        widths = [max(len(r[j]) for r in table) for j in range(len(columns))]
        table = [[v.ljust(w) for v, w in zip(r, widths)] for r in table]
    lines = ["data_test", "#", "_entry.id test", "#", "loop_", *(f"_atom_site.{c}" for c in columns)]
    lines += [sep.join(r) for r in table] + ["#", ""]
    return newline.join(lines).encode()


def gemmi_cif(path, *, entities: bool = False) -> bytes:
    """Return mmCIF text written by gemmi from a PDB file (with label_ ids when ``entities``)."""
    structure = gemmi.read_structure(str(path))
    if entities:
        structure.setup_entities()
    return structure.make_mmcif_document().as_string().encode()


# --- real chains --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["gemmi", "gemmi-entities", "biopython"])
def test_real_chains_match_gemmi(structure_path, writer, monkeypatch):
    if writer == "biopython":
        data = mmcif_from_pdb(structure_path)
    else:
        data = gemmi_cif(structure_path, entities=writer == "gemmi-entities")
    fast = check(data, biopython=writer == "biopython")  # Biopython misreads gemmi's altloc rows ("defined twice")
    assert fast.num_records > 500 and fast.serial is None
    _, _, tags, body = cr._find_loop(data)
    aligned = cr._aligned_table(data, np.frombuffer(data, np.uint8), body, len(tags))
    assert (aligned is not None) == (writer == "biopython")  # MMCIFIO pads its columns, gemmi does not
    assert_same_records(general_path(monkeypatch, data), fast)  # both routes read the same records


def test_afdb_style_file(monkeypatch):
    """An AlphaFold DB-like loop: aligned, auth_ columns, pLDDT per residue, the loop at the end of the file."""
    rows = []
    for i, resname in enumerate(["MET", "ALA", "GLY", "SER", "LYS"]):
        for r in residue(resname, "A", i + 1, (*BACKBONE, "CB") if resname != "GLY" else BACKBONE, origin=4.0 * i):
            r.update(occupancy="1.0", B_iso_or_equiv=f"{50 + 7.3 * i:.2f}")
            rows.append(r)
    data = cif(rows, aligned=True)[: -len("#\n")]  # no line after the loop's last row
    fast = check(data)
    assert_same_records(general_path(monkeypatch, data), fast)


# --- synthetic cases ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("aligned", [False, True])
def test_altlocs_insertion_codes_modified_residues(aligned):
    rows = residue("ALA", "A", 10, (*BACKBONE, "CB"))
    rows += residue("SER", "A", 11, ("N", "CA", "C", "O"), origin=5.0)
    rows += [
        site("CB", "SER", "A", 11, (6.0, 7.0, 8.0), label_alt_id="A", occupancy="0.40"),
        site("CB", "SER", "A", 11, (6.5, 7.5, 8.5), label_alt_id="B", occupancy="0.60"),
        site("OG", "SER", "A", 11, (6.1, 7.1, 8.1), label_alt_id="A", occupancy="0.40"),
        site("OG", "SER", "A", 11, (6.6, 7.6, 8.6), label_alt_id="B", occupancy="0.60"),
    ]
    rows += residue("GLY", "A", 52, BACKBONE, origin=10.0)
    rows += residue("GLY", "A", 52, BACKBONE, origin=12.0, pdbx_PDB_ins_code="A")
    rows += residue("VAL", "A", 52, (*BACKBONE, "CB"), origin=14.0, pdbx_PDB_ins_code="B")
    rows += residue("MSE", "A", 53, (*BACKBONE, "CB", "CG", "SE", "CE"), origin=16.0, group_PDB="HETATM")
    rows += residue("SEP", "A", 54, (*BACKBONE, "CB", "OG", "P"), origin=20.0, group_PDB="HETATM")
    fast = check(cif(rows, aligned=aligned))
    assert set(fast.icode.tolist()) == {32, ord("A"), ord("B")}
    assert sorted(set(fast.occ.tolist())) == pytest.approx([0.4, 0.6, 1.0])


def test_first_model_only():
    model1 = residue("ALA", "A", 1, BACKBONE) + residue("GLY", "A", 2, BACKBONE, origin=3.0)
    model2 = residue("ALA", "A", 1, BACKBONE, origin=30.0, pdbx_PDB_model_num="2")
    fast = check(cif(model1 + model2))
    assert fast.num_records == len(model1) and fast.pos.max() < 30
    # the first model is the first row's, whatever its number; its rows after another model's still belong to it
    rows = model2 + model1 + residue("SER", "A", 2, BACKBONE, origin=40.0, pdbx_PDB_model_num="2")
    fast = read_cif_records(cif(rows))
    assert_same_records(fast, gemmi_records(cif(rows)))
    assert fast.num_records == len(model2) + len(BACKBONE)
    # numbers read as integers: "02" is model 2; a null model number is model 0
    rows = residue("ALA", "A", 1, BACKBONE, pdbx_PDB_model_num="2")
    rows += residue("ALA", "A", 1, BACKBONE, origin=9.0, pdbx_PDB_model_num="02")
    rows += residue("ALA", "A", 1, BACKBONE, origin=19.0, pdbx_PDB_model_num="?")
    assert read_cif_records(cif(rows)).num_records == 8
    assert_same_records(read_cif_records(cif(rows)), gemmi_records(cif(rows)))


def test_label_and_auth_ids_differ():
    rows = residue("ALA", "B", 101, BACKBONE, label_asym_id="A", label_seq_id=1)
    rows += residue("GLY", "B", 102, BACKBONE, origin=3.0, label_asym_id="A", label_seq_id=2)
    rows += residue("LEU", "C", -3, (*BACKBONE, "CB"), origin=6.0, label_asym_id="D", label_seq_id=1)
    fast = check(cif(rows))
    assert fast.chain.tobytes()[:1] == b"B" and fast.resnum.tolist()[-1] == -3


def test_hydrogens_waters_ligands_and_nulls():
    rows = residue("ALA", "A", 1, (*BACKBONE, "CB", "H", "HA", "HB1"))
    rows += residue("HOH", "A", 201, ("O",), origin=9.0, group_PDB="HETATM", label_seq_id=".", label_asym_id="B")
    rows += residue("HEM", "A", 301, ("FE", "NA"), origin=12.0, group_PDB="HETATM", label_seq_id=".")
    rows[1].update(occupancy="?", B_iso_or_equiv=".")  # gemmi's Atom defaults: 1.0, 20.0
    rows[2].update(pdbx_PDB_ins_code=".", label_alt_id="?")
    fast = check(cif(rows, aligned=True), biopython=False)  # Biopython cannot read a null occupancy
    assert fast.occ[1] == 1.0 and fast.b[1] == 20.0


def test_negative_numbers_zeros_and_number_forms(monkeypatch):
    rows = residue("ALA", "A", -5, BACKBONE)
    rows += residue("GLY", "A", -4, BACKBONE, origin=-6.0)
    rows[0].update(Cartn_x="-0.000", Cartn_y="+1.5", Cartn_z=".5")
    rows[1].update(Cartn_x="5.", Cartn_y="-.25", Cartn_z="-1234.56789", B_iso_or_equiv="-0.0")  # a 11-byte token
    rows[2].update(Cartn_x="0123.4500", Cartn_y="12345678.012345", occupancy="+0.5", auth_seq_id="-05")
    rows[3].update(Cartn_z="-0", auth_seq_id="-000005")
    for row in rows[4:]:
        row.update(auth_seq_id="+0004")
    data = cif(rows)
    fast = check(data, biopython=False)  # Biopython splits the residue at "-05" (a different string)
    assert np.signbit(fast.pos[0, 0]) and np.signbit(fast.b[1]) and np.signbit(fast.pos[3, 2])
    assert fast.resnum.tolist() == [-5] * 4 + [4] * 4
    assert_same_records(read_cif_records(cif(rows, aligned=True)), fast)
    assert_same_records(general_path(monkeypatch, cif(rows, aligned=True)), fast)


def test_auth_nulls_fall_back_to_label_per_row():
    rows = residue("ALA", "A", 7, BACKBONE)
    rows[1].update(auth_atom_id="?", auth_comp_id=".", auth_asym_id="?", auth_seq_id="?")
    rows[2].update(auth_atom_id="?", label_atom_id="?")  # both null: an empty name
    fast = check(cif(rows), biopython=False)
    assert fast.name[2] == 0 and fast.chain[1] == fast.chain[0]


@pytest.mark.parametrize("keep", ["label", "auth"])
def test_one_set_of_id_columns(keep):
    drop = "auth_" if keep == "label" else "label_"
    columns = [c for c in COLUMNS if not (c.startswith(drop) and c[len(drop) :] in ("atom_id", "comp_id", "seq_id"))]
    rows = residue("ALA", "A", 3, BACKBONE) + residue("TRP", "A", 4, (*BACKBONE, "CB"), origin=4.0)
    check(cif(rows, columns=columns), biopython=False)


def test_optional_columns_absent():
    optional = ("occupancy", "B_iso_or_equiv", "pdbx_PDB_ins_code", "pdbx_PDB_model_num")
    columns = [c for c in COLUMNS if c not in optional]
    fast = check(cif(residue("ALA", "A", 1, BACKBONE), columns=columns), biopython=False)
    assert (fast.occ == 1.0).all() and (fast.b == 20.0).all() and (fast.icode == 32).all()


def test_split_residue_rows_give_the_same_protein():
    """gemmi joins a residue's rows listed apart within a chain: its records are then not in file order."""
    rows = residue("ALA", "A", 10, ("N", "CA")) + residue("GLY", "A", 11, BACKBONE, origin=4.0)
    rows += residue("ALA", "A", 10, ("C", "O", "CB"), origin=8.0)
    data = cif(rows)
    fast, slow = read_cif_records(data), gemmi_records(data)
    assert not in_file_order(slow)
    assert_same_protein(protein(fast), protein(slow))
    assert sorted(fast.pos[:, 0].tolist()) == sorted(np.asarray(slow.pos)[:, 0].tolist())


def test_layout_variants(monkeypatch):
    """Tabs, CRLF line ends, mixed-case tags, quotes inside tokens and comments after the loop are plain CIF."""
    rows = residue("ALA", "A", 1, (*BACKBONE, "CB")) + residue("SER", "A", 2, BACKBONE, origin=4.0)
    rows[5].update(label_atom_id="O5'", auth_atom_id="O5'")
    for data in (
        cif(rows, sep="\t"),
        cif(rows, newline="\r\n"),
        cif(rows, aligned=True).replace(b"Cartn_x", b"CARTN_X").replace(b"_atom_site.id", b"_ATOM_SITE.ID"),
        cif(rows)[: -len("#\n")] + b"# a comment\n\n#\n_other.tag 1\n",
        cif(rows).replace(b"\n#\n", b"\n"),  # the loop at EOF
    ):
        check(data, biopython=False)


# --- files left to gemmi ------------------------------------------------------------------------------------------


def _rows() -> list[dict[str, str]]:
    return residue("ALA", "A", 1, (*BACKBONE, "CB")) + residue("GLY", "A", 2, BACKBONE, origin=4.0)


def _with(row: int = 2, **kw) -> bytes:
    rows = _rows()
    rows[row].update(kw)
    return cif(rows)


def _last_row_after_comment() -> bytes:
    lines = cif(_rows()).split(b"\n")
    lines[-3], lines[-2] = lines[-2], lines[-3]  # "#" before the last row: the loop goes on after the comment
    return b"\n".join(lines)


FALLBACKS = {
    "quoted name": _with(label_atom_id='"C"', auth_atom_id="'C'"),
    "quoted prime": _with(label_atom_id='"O5\'"', auth_atom_id='"O5\'"'),
    "text field": cif(_rows()).replace(b"\nATOM 3 ", b"\n;text\n;\nATOM 3 ", 1).replace(b"ATOM 3 ", b"", 1),
    "comment in loop": cif(_rows()).replace(b"\nATOM 4 ", b"\n# comment\nATOM 4 "),
    "comment token": _with(auth_comp_id="#x"),
    "values after a comment": _last_row_after_comment(),
    "a tag straight after the rows": cif(_rows())[: -len("#\n")] + b"_other.tag 1\n",
    "a damaged row starting with _": cif(_rows()).replace(b"\nATOM 5 ", b"\n_ATOM 5 "),
    "a damaged row starting with loop_": cif(_rows()).replace(b"\nATOM 5 ", b"\nloop_\nATOM 5 "),
    "coordinate ?": _with(Cartn_x="?"),
    "coordinate exponent": _with(Cartn_y="1.5e3"),
    "coordinate text": _with(Cartn_z="abc"),
    "coordinate two points": _with(Cartn_z="1.2.3"),
    "coordinate 16 digits": _with(Cartn_x="1234567890.123456"),
    "occupancy word": _with(occupancy="high"),
    "residue number with icode": _with(auth_seq_id="15A"),
    "residue number null": _with(auth_seq_id="?", label_seq_id="."),
    "residue number point": _with(auth_seq_id="1.0"),
    "label_seq_id not an integer": _with(row=0, label_seq_id="x"),
    "charge not an integer": _with(pdbx_formal_charge="1+"),
    "model not an integer": _with(pdbx_PDB_model_num="one"),
    "altloc of 2 characters": _with(label_alt_id="AB"),
    "insertion code of 2 characters": _with(pdbx_PDB_ins_code="AB"),
    "insertion codes differing in case": cif(
        _rows()[:4]
        + residue("GLY", "A", 1, BACKBONE, pdbx_PDB_ins_code="a")[:1]
        + residue("GLY", "A", 1, BACKBONE, pdbx_PDB_ins_code="A")
    ),
    "atom name of 8": _with(auth_atom_id="ABCDEFGH"),
    "residue name of 8": _with(auth_comp_id="LONGNAME"),
    "subchain of 8": _with(label_asym_id="ABCDEFGH"),
    "shortened CCD code": _with(auth_comp_id="~AB"),
    "keyword token": _with(auth_comp_id="data_x"),
    "stop_ token": _with(auth_comp_id="stop_"),
    "tag token": _with(auth_comp_id="_x"),
    "non-ASCII": _with(auth_comp_id="AL\u00c9"),
    "control byte": _with(auth_comp_id="A\x01A"),
    "missing Cartn_z": cif(_rows(), columns=[c for c in COLUMNS if c != "Cartn_z"]),
    "missing label_alt_id": cif(_rows(), columns=[c for c in COLUMNS if c != "label_alt_id"]),
    "missing atom names": cif(_rows(), columns=[c for c in COLUMNS if not c.endswith("atom_id")]),
    "ragged rows": cif(_rows()).replace(b" ALA A 1 1 ", b" ALA A 1 ", 1),
    "duplicate tag": cif(_rows()).replace(b"_atom_site.group_PDB", b"_atom_site.occupancy"),
    "second _atom_site item": cif(_rows()).replace(b"_entry.id test", b"_atom_site.dummy 1"),
    "two data blocks, after": cif(_rows()) + b"data_second\n_entry.id two\n",
    "two data blocks, before": b"data_first\n_entry.id one\n#\n" + cif(_rows()),
    "save frame": cif(_rows()).replace(b"_entry.id test", b"save_frame\n_x.y 1\nsave_"),
    "no loop": b"data_x\n_atom_site.id 1\n_atom_site.Cartn_x 1.0\n",
    "empty loop": cif(_rows()).split(b"\nATOM")[0] + b"\n#\n",
    "not CIF": b"ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00  0.00           N\n",
    "empty": b"",
}


@pytest.mark.parametrize("case", FALLBACKS)
def test_fallback_returns_none(case):
    assert read_cif_records(FALLBACKS[case]) is None


def test_fallbacks_are_real_problems_or_gemmi_edge_cases():
    """Most files left to gemmi are ones gemmi fails on or reads differently: spot-check that."""
    with pytest.raises(Exception):  # noqa: B017 - gemmi raises RuntimeError or ValueError
        gemmi_records(FALLBACKS["label_seq_id not an integer"])
    with pytest.raises(Exception):  # noqa: B017
        gemmi_records(FALLBACKS["altloc of 2 characters"])
    with pytest.raises(Exception):  # noqa: B017
        gemmi_records(FALLBACKS["atom name of 8"])
    assert np.isnan(np.asarray(gemmi_records(FALLBACKS["coordinate ?"]).pos)).any()
    mixed = gemmi_records(FALLBACKS["insertion codes differing in case"])
    assert set(mixed.icode.tolist()) <= {32, ord("a")}  # gemmi files "A" rows under the "a" residue


def record_rows(records: AtomRecords) -> list[bytes]:
    """Return each record as bytes, sorted: the records as a multiset."""
    columns = [np.ascontiguousarray(getattr(records, k)).reshape(records.num_records, -1) for k in RECORD_FIELDS]
    return sorted(b"".join(c[i].tobytes() for c in columns) for i in range(records.num_records))


def test_random_mutations_never_disagree_with_gemmi():
    """Mutating bytes of the loop: the reader never raises, and whenever it returns records gemmi reads the file
    without error and gives the same records (where gemmi joins a split residue: the same records in another
    order, and the same Protein)."""
    rng = np.random.default_rng(7)
    alphabet = list(b"0123456789.-+?# \t\n\r'\";_$aAbBzZ~e\x00\xc3") + [ord("\n")] * 4
    altloc = _rows()
    altloc[3].update(label_alt_id="A", occupancy="0.5")
    altloc[7].update(pdbx_PDB_ins_code="B")
    bases = [cif(_rows()), cif(_rows(), aligned=True), cif(altloc, aligned=True), cif(altloc, newline="\r\n")]
    accepted = 0
    for _ in range(400):
        base = bases[rng.integers(len(bases))]
        text = bytearray(base)
        for _ in range(rng.integers(1, 4)):
            pos = int(rng.integers(base.index(b"loop_"), len(text)))
            action = rng.integers(4)
            if action == 0:
                text[pos] = alphabet[rng.integers(len(alphabet))]
            elif action == 1:
                text.insert(pos, alphabet[rng.integers(len(alphabet))])
            elif action == 2:
                del text[pos]
            else:  # repeat a few bytes
                text[pos:pos] = text[pos : pos + int(rng.integers(1, 12))]
        data = bytes(text)
        fast = read_cif_records(data)
        if fast is None:
            continue
        accepted += 1
        slow = gemmi_records(data)  # must not raise
        assert slow is not None
        assert record_rows(fast) == record_rows(slow)
        if fast.num_records == slow.num_records and all(
            np.ascontiguousarray(getattr(fast, k)).tobytes() == np.ascontiguousarray(getattr(slow, k)).tobytes()
            for k in RECORD_FIELDS
        ):
            continue
        try:
            expected = protein(slow)
        except Exception as err:  # the rules reject both alike
            with pytest.raises(type(err)):
                protein(fast)
        else:
            assert_same_protein(protein(fast), expected)
    assert accepted > 50  # many mutations keep the file readable (a changed digit, an added space)


def test_threads_share_nothing():
    """The scan buffers are kept per thread: readers in parallel threads give each file its own records."""
    from concurrent.futures import ThreadPoolExecutor

    files = [cif(_rows(), aligned=True), cif(residue("TRP", "B", 9, (*BACKBONE, "CB"), origin=7.0) * 40)]
    expected = [read_cif_records(data) for data in files]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(read_cif_records, files * 20))
    for i, records in enumerate(results):
        assert_same_records(records, expected[i % 2])
