"""Parsing, validation and cropping of `Protein` (both backends, real PDB chains and synthetic edge cases)."""

from __future__ import annotations

import gzip
import io
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from Bio.PDB import MMCIFIO, PDBParser
from testing_utils import PROTEIN_FIELDS as FIELDS
from testing_utils import assert_same_protein as assert_same
from testing_utils import mmcif_from_pdb

from siamdiff_hf.protein import InvalidStructureError, Protein, parse_structure
from siamdiff_hf.protein import constants as C

BACKENDS = ("gemmi", "biopython")


def atom(record, serial, name, resname, chain, resnum, xyz, *, icode="", alt="", occ=1.0, b=20.0, element=None):
    """Return one PDB ATOM/HETATM line (element column filled unless ``element=''``)."""
    element = name[0] if element is None else element
    padded = name if len(name) == 4 else " " + name
    x, y, z = (f"{v:8.3f}" if isinstance(v, float) else f"{v:>8}" for v in xyz)
    return (
        f"{record:<6}{serial:>5} {padded:<4}{alt:1}{resname:>3} {chain:1}{resnum:>4}{icode:1}   "
        f"{x}{y}{z}{occ:6.2f}{b:6.2f}          {element:>2}"
    )


def residue_lines(resname, chain, resnum, names, *, record="ATOM", origin=0.0, icode="", b=20.0, **kw):
    """Return PDB lines placing ``names`` at distinct positions around ``origin``."""
    return [
        atom(record, 1, n, resname, chain, resnum, (origin + i, origin + 1.5 * i, 3.0), icode=icode, b=b, **kw)
        for i, n in enumerate(names)
    ]


def pdb_text(lines) -> bytes:
    return ("\n".join(lines) + "\nEND\n").encode()


def parse_both(data: bytes, **kw) -> Protein:
    """Parse with both backends, check they agree, return the gemmi result."""
    a = Protein.from_bytes(data, format=None, name="synthetic.pdb", backend="gemmi", **kw)
    b = Protein.from_bytes(data, format=None, name="synthetic.pdb", backend="biopython", **kw)
    assert_same(a, b)
    return a


# --- real structures ------------------------------------------------------------------------------------------


def test_backends_identical_on_pdb(structure_path):
    a = parse_structure(structure_path, backend="gemmi")
    b = parse_structure(structure_path, backend="biopython")
    assert_same(a, b)
    assert a.id == b.id == structure_path.name.split(".")[0]
    assert a.length > 50 and a.atom_mask[:, C.CA_INDEX].all()
    assert not (a.atom_mask & ~C.residue_atom37_mask()[a.residue_type]).any()  # only valid heavy-atom slots
    np.testing.assert_array_equal(a.atom_positions[~a.atom_mask], 0)
    assert len(a.chains) == 1 and a.chains[0] == structure_path.name.split(".")[0][-1]
    np.testing.assert_array_equal(a.b_factor, 100.0)


def test_backends_identical_on_mmcif(structure_path, tmp_path):
    pdb = parse_structure(structure_path)
    cif_path = tmp_path / "model.cif"
    cif_path.write_bytes(mmcif_from_pdb(structure_path))
    a = parse_structure(cif_path, backend="gemmi")
    b = parse_structure(cif_path, backend="biopython")
    assert_same(a, b)
    assert_same(a, pdb)  # author chain ids and residue numbers, like the PDB file


def test_robustness_file_3e8m(data_dir):
    """3e8mA has hydrogens, blank element columns and duplicated atom records without altloc."""
    path = data_dir / "3e8mA.pdb.gz"
    text = gzip.decompress(path.read_bytes()).decode()
    protein = parse_structure(path)
    assert protein.length == 164
    # the first of each duplicated record is kept
    lys2 = next(i for i, n in enumerate(protein.residue_number) if n == 2)
    cg = next(line for line in text.splitlines() if line[12:16] == " CG " and line[22:26] == "   2")
    expected = [float(cg[30:38]), float(cg[38:46]), float(cg[46:54])]
    np.testing.assert_array_equal(protein.atom_positions[lys2, C.ATOM37_INDEX["CG"]], np.float32(expected))
    assert protein.atom_mask.sum() == 1295  # heavy atoms only


def test_gz_plain_bytes_and_sniffing_identical(data_dir, tmp_path):
    gz_path = data_dir / "2xcjA.pdb.gz"
    raw = gzip.decompress(gz_path.read_bytes())
    reference = parse_structure(gz_path)
    (tmp_path / "2xcjA.pdb").write_bytes(raw)
    (tmp_path / "noext").write_bytes(raw)
    for backend in BACKENDS:
        assert_same(reference, parse_structure(tmp_path / "2xcjA.pdb", backend=backend))
        assert_same(reference, parse_structure(str(tmp_path / "noext"), backend=backend))
        assert_same(reference, parse_structure(raw, backend=backend))
        assert_same(reference, parse_structure(gz_path.read_bytes(), backend=backend))
    cif = mmcif_from_pdb(gz_path)
    (tmp_path / "model.cif.gz").write_bytes(gzip.compress(cif))
    (tmp_path / "cif_noext").write_bytes(cif)
    for source in (tmp_path / "model.cif.gz", tmp_path / "cif_noext", cif, gzip.compress(cif)):
        assert_same(reference, parse_structure(source))
    assert parse_structure(tmp_path / "model.cif.gz").id == "model"


def test_biopython_structure_and_model_inputs(data_dir):
    path = data_dir / "1mr1D.pdb.gz"
    reference = parse_structure(path)
    with gzip.open(path, "rt") as handle:
        structure = PDBParser(QUIET=True).get_structure("1mr1D", handle)
    assert_same(reference, Protein.from_biopython(structure))
    assert_same(reference, parse_structure(structure[0]))
    assert Protein.from_biopython(structure).id == "1mr1D"


def test_to_pdb_string_round_trip(structure_path):
    protein = parse_structure(structure_path)
    text = protein.to_pdb_string()
    assert text.rstrip().endswith("END") and "TER" in text
    assert all(line[76:78].strip() in "CNOS" for line in text.splitlines() if line.startswith("ATOM"))
    for backend in BACKENDS:
        assert_same(protein, Protein.from_bytes(text.encode(), format="pdb", backend=backend))


# --- synthetic edge cases ---------------------------------------------------------------------------------------


def synthetic_pdb() -> bytes:
    lines = ["HEADER    SYNTHETIC TEST", "MODEL        1"]
    # MSE as HETATM: SE becomes MET's SD
    lines += residue_lines("MSE", "A", 1, ["N", "CA", "C", "O", "CB", "CG", "SE", "CE"], record="HETATM",
                           element="")  # fmt: skip
    # altlocs: CA B wins on occupancy; CB tie -> first listed (A); hydrogens and deuterium dropped
    lines += [
        atom("ATOM", 9, "N", "ALA", "A", 2, (5.0, 5.0, 5.0)),
        atom("ATOM", 10, "CA", "ALA", "A", 2, (6.0, 5.0, 5.0), alt="A", occ=0.4),
        atom("ATOM", 11, "CA", "ALA", "A", 2, (6.5, 5.0, 5.0), alt="B", occ=0.6),
        atom("ATOM", 12, "CB", "ALA", "A", 2, (7.0, 5.0, 5.0), alt="A", occ=0.5),
        atom("ATOM", 13, "CB", "ALA", "A", 2, (7.5, 5.0, 5.0), alt="B", occ=0.5),
        atom("ATOM", 14, "H", "ALA", "A", 2, (8.0, 5.0, 5.0), element=""),
        atom("ATOM", 15, "HA", "ALA", "A", 2, (8.0, 6.0, 5.0)),
        atom("ATOM", 16, "D", "ALA", "A", 2, (8.0, 7.0, 5.0)),
        atom("ATOM", 17, "C", "ALA", "A", 2, (9.0, 5.0, 5.0)),
        atom("ATOM", 18, "C", "ALA", "A", 2, (9.9, 9.9, 9.9)),  # duplicate without altloc: first kept
        atom("ATOM", 19, "O", "ALA", "A", 2, (10.0, 5.0, 5.0)),
    ]
    # insertion codes
    lines += residue_lines("GLY", "A", 3, ["N", "CA", "C", "O"], origin=11.0)
    lines += residue_lines("GLY", "A", 3, ["N", "CA", "C", "O"], origin=12.0, icode="A")
    # missing CA: dropped and counted
    lines += residue_lines("SER", "A", 4, ["N", "C", "O", "CB", "OG"], origin=13.0)
    # non-standard amino acid with a backbone: unknown, backbone + CB only
    lines += residue_lines("XYZ", "A", 5, ["N", "CA", "C", "O", "CB", "CG", "CD"], record="HETATM", origin=14.0)
    lines += ["TER"]
    # ligand and waters
    lines += residue_lines("NAG", "A", 101, ["C1", "C2", "O5", "N2"], record="HETATM", origin=15.0)
    lines += residue_lines("HOH", "A", 201, ["O"], record="HETATM", origin=16.0)
    # chain B: a phosphoserine and a glycine; pLDDT-like B-factors
    lines += residue_lines("SEP", "B", 1, ["N", "CA", "C", "O", "CB", "OG", "P", "O1P"], origin=17.0, b=71.5)
    lines += residue_lines("GLY", "B", 2, ["N", "CA", "C", "O", "OXT"], origin=18.0, b=88.25)
    lines += residue_lines("HOH", "B", 202, ["O"], record="HETATM", origin=19.0)
    lines += ["ENDMDL", "MODEL        2"]
    lines += residue_lines("TRP", "C", 1, ["N", "CA", "C", "O"], origin=20.0)  # second model ignored
    lines += ["ENDMDL"]
    return pdb_text(lines)


def test_synthetic_rules():
    protein = parse_both(synthetic_pdb())
    assert protein.sequence == "MAGGXSG"
    assert protein.residue_type.tolist() == [14, 1, 0, 0, 20, 2, 0]
    assert protein.chain_id.tolist() == ["A"] * 5 + ["B"] * 2
    assert protein.residue_number.tolist() == [1, 2, 3, 3, 5, 1, 2]
    assert protein.insertion_code.tolist() == ["", "", "", "A", "", "", ""]
    assert protein.num_missing_ca == 1 and protein.missing_ca == {"A": 1}
    index = C.ATOM37_INDEX
    mse, ala, unk, sep, gly = protein.atom_mask[0], protein.atom_mask[1], protein.atom_mask[4], *protein.atom_mask[5:]
    assert mse[index["SD"]] and mse.sum() == 8
    assert protein.atom_positions[0, index["SD"]].tolist() == [6.0, 9.0, 3.0]
    assert ala.sum() == 5
    assert protein.atom_positions[1, index["CA"], 0] == 6.5  # altloc B (occupancy 0.6)
    assert protein.atom_positions[1, index["CB"], 0] == 7.0  # tie: first listed
    assert protein.atom_positions[1, index["C"], 0] == 9.0  # duplicate: first kept
    assert [C.ATOM37_NAMES[j] for j in np.flatnonzero(unk)] == ["N", "CA", "C", "CB", "O"]
    assert sep.sum() == 6 and gly[index["OXT"]]
    np.testing.assert_array_equal(protein.b_factor, np.float32([20, 20, 20, 20, 20, 71.5, 88.25]))
    np.testing.assert_array_equal(protein.plddt, protein.b_factor)


def test_chain_selection():
    data = synthetic_pdb()
    b = parse_both(data, chain="B")
    assert b.chains == ["B"] and b.length == 2 and b.num_missing_ca == 0
    assert parse_both(data, chain="A").num_missing_ca == 1
    both = parse_both(data, chain=["B", "A"])
    assert both.chains == ["A", "B"] and both.length == 7
    for backend in BACKENDS:
        with pytest.raises(InvalidStructureError, match=r"'Z'.*available chains: 'A', 'B'") as info:
            Protein.from_bytes(data, format="pdb", name="two_chains.pdb", chain="Z", backend=backend)
        assert info.value.source == "two_chains.pdb"
    full = parse_both(data)
    assert_same(full.select_chains("B"), b.select_chains(["B"]))


def test_chain_selection_real_file(data_dir):
    path = data_dir / "1mr1D.pdb.gz"
    assert parse_structure(path, chain="D").length == 96
    with pytest.raises(InvalidStructureError, match=r"1mr1D\.pdb\.gz.*available chains: 'D'"):
        parse_structure(path, chain="A")


def test_point_mutation_picks_highest_occupancy():
    lines = residue_lines("GLY", "A", 1, ["N", "CA", "C", "O"])
    lines += residue_lines("SER", "A", 2, ["N", "CA", "C", "O", "CB", "OG"], alt="A", occ=0.3, origin=5.0)
    lines += residue_lines("THR", "A", 2, ["N", "CA", "C", "O", "CB", "OG1", "CG2"], alt="B", occ=0.7, origin=6.0)
    protein = parse_both(pdb_text(lines))
    assert protein.sequence == "GT"


def test_discontinuous_chains_and_residues_are_grouped():
    """A chain or residue split by other records is one chain / one residue, at its first appearance."""
    lines = residue_lines("GLY", "A", 1, ["N", "CA"])
    lines += residue_lines("ALA", "B", 1, ["N", "CA", "C"], origin=4.0)
    lines += residue_lines("SER", "A", 2, ["N", "CA", "C"], origin=8.0)
    lines += residue_lines("GLY", "A", 1, ["C", "O"], origin=12.0)
    protein = parse_both(pdb_text(lines))
    assert protein.sequence == "GSA" and protein.chain_id.tolist() == ["A", "A", "B"]
    assert protein.atom_mask[0].sum() == 4


def test_mmcif_uses_author_chain_and_numbers(data_dir, tmp_path):
    """label_asym_id / label_seq_id differ from the author ids in real mmCIF files: the author ids are used."""
    cif = mmcif_from_pdb(data_dir / "3ny7A.pdb.gz").decode().splitlines()
    rows = [line.split() for line in cif if line.startswith("ATOM ")]
    for row in rows:
        row[6] = "Q"  # label_asym_id
    body = [line for line in cif if not line.startswith("ATOM ")]
    cut = max(i for i, line in enumerate(body) if line.startswith("_atom_site.")) + 1
    path = tmp_path / "relabelled.cif"
    path.write_text("\n".join(body[:cut] + [" ".join(r) for r in rows] + body[cut:]) + "\n")
    reference = parse_structure(data_dir / "3ny7A.pdb.gz")
    for backend in BACKENDS:
        protein = parse_structure(path, backend=backend)
        assert_same(protein, reference)
        assert protein.residue_number[0] == 433 and protein.chains == ["A"]


def shortcut_calls(monkeypatch) -> list[bool]:
    """Record, per parse, whether the common-layout shortcut of the rules built the protein."""
    from siamdiff_hf.protein import parsing

    calls: list[bool] = []
    original = parsing._simple_layout_protein

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(parsing, "_simple_layout_protein", spy)
    return calls


def test_simple_layout_equals_the_general_rules(structure_path, monkeypatch):
    """The shortcut for the common layout gives what the general rules give, on every real chain that takes it."""
    from siamdiff_hf.protein import parsing

    calls = shortcut_calls(monkeypatch)
    fast = parse_structure(structure_path)
    expected = structure_path.name not in ("2xcjA.pdb.gz", "3e8mA.pdb.gz")  # these two hold duplicate records
    assert calls == [expected]
    monkeypatch.setattr(parsing, "_simple_layout_protein", lambda *args, **kwargs: None)
    assert_same(fast, parse_structure(structure_path))


def test_simple_layout_declines_every_other_layout(monkeypatch):
    """Each departure from the common layout goes to the general rules, which agree with the reference table."""
    calls = shortcut_calls(monkeypatch)
    chain_a = residue_lines("GLY", "A", 1, ["N", "CA", "C", "O"]) + residue_lines("ALA", "A", 2, ["N", "CA", "CB"])
    chain_b = residue_lines("SER", "B", 1, ["N", "CA", "C", "OG"], origin=4.0)
    cases = {
        "two chains in order": (chain_a + chain_b, True),
        "chains out of order": (chain_b + chain_a, False),
        "a residue number going back": (chain_a[4:] + chain_a[:4], False),
        "a residue without CA": (chain_a + residue_lines("GLY", "A", 3, ["N", "C"], origin=6.0), False),
        "a water": (chain_a + residue_lines("HOH", "A", 9, ["O"], record="HETATM", origin=9.0), False),
        "a modified residue": (chain_a + residue_lines("MSE", "A", 3, ["N", "CA", "SE"], origin=6.0), False),
        "an altloc": (chain_a + residue_lines("GLY", "A", 3, ["N", "CA", "CA"], origin=6.0), False),
    }
    for name, (lines, simple) in cases.items():
        calls.clear()
        parse_both(pdb_text(lines))  # the gemmi result equals the reference table's
        assert calls == [simple], name


def awkward_pdb() -> bytes:
    """Records the vectorised gemmi path must treat exactly as the reference table does."""
    lines = residue_lines("ALA", " ", 1, ["N", "CA", "C", "O", "CB"], record="HETATM")  # blank chain, HETATM
    # MSE listing both SE and SD (both land in SD: the name listed last wins), SEC's SE becomes SG
    lines += residue_lines("MSE", " ", 2, ["N", "CA", "C", "SD", "CB", "SE"], origin=2.0, record="HETATM")
    lines += residue_lines("SEC", " ", 3, ["N", "CA", "C", "O", "CB", "SE"], origin=3.0, record="HETATM")
    lines += residue_lines("UNK", " ", 4, ["CA", "CB"], origin=4.0)  # UNK without a full backbone: kept
    lines += residue_lines("DPN", " ", 5, ["N", "CA", "O"], origin=5.0, record="HETATM")  # no C: a ligand
    # micro-heterogeneity where no variant has a CA: the first amino-acid variant is dropped and counted
    lines += residue_lines("GLY", " ", 6, ["N", "C", "O"], alt="A", occ=0.5, origin=6.0)
    lines += residue_lines("ALA", " ", 6, ["N", "C", "O", "CB"], alt="B", occ=0.5, origin=6.5)
    # equal CA occupancy between variants: the first listed wins; altloc ties per atom: the first listed
    lines += residue_lines("SER", " ", 7, ["N", "CA", "C", "OG"], alt="A", occ=0.5, origin=7.0)
    lines += residue_lines("THR", " ", 7, ["N", "CA", "C", "OG1"], alt="B", occ=0.5, origin=7.5)
    lines += residue_lines("LYS", " ", 8, ["N", "CA", "C"], icode="B", origin=8.0)
    lines += residue_lines("LYS", " ", 8, ["N", "CA", "C"], icode="A", origin=8.5)  # order of appearance
    lines += residue_lines("GLY", "X", -3, ["N", "CA", "C"], origin=9.0)  # negative residue number
    lines += residue_lines("HOH", " ", 300, ["O"], record="HETATM", origin=10.0)
    return pdb_text(lines)


def test_awkward_records_identical_in_both_backends():
    protein = parse_both(awkward_pdb())
    index = C.ATOM37_INDEX
    assert protein.sequence == "AMCXSKKG"
    assert protein.chain_id.tolist() == [""] * 7 + ["X"]
    assert protein.residue_number.tolist() == [1, 2, 3, 4, 7, 8, 8, -3]
    assert protein.insertion_code.tolist() == [""] * 5 + ["B", "A", ""]
    assert protein.missing_ca == {"": 1}
    assert protein.atom_positions[1, index["SD"]].tolist() == [7.0, 9.5, 3.0]  # SE, listed after SD
    assert protein.atom_mask[2, index["SG"]] and protein.atom_mask[3].sum() == 2


def test_mmcif_with_altlocs_insertion_codes_and_modified_residues(tmp_path):
    """The synthetic PDB written as mmCIF by Biopython (altlocs, icodes, MSE/SEP, HETATM) parses the same."""
    with io.StringIO(synthetic_pdb().decode()) as handle:
        structure = PDBParser(QUIET=True).get_structure("synthetic", handle)
    writer = MMCIFIO()
    writer.set_structure(structure)
    out = io.StringIO()
    writer.save(out)
    cif = out.getvalue().encode()
    reference = parse_both(synthetic_pdb())
    path = tmp_path / "synthetic.cif.gz"
    path.write_bytes(gzip.compress(cif))
    for backend in BACKENDS:
        assert_same(parse_structure(path, backend=backend), reference)


def test_aliases_are_parse_structure(data_dir):
    path = data_dir / "1dx5I.pdb.gz"
    reference = parse_structure(path)
    assert_same(Protein.from_file(path), reference)
    assert_same(Protein.from_bytes(path.read_bytes(), format=None, name="x/1dx5I.pdb.gz"), reference)
    assert Protein.from_bytes(path.read_bytes(), format=None, name="x/1dx5I.pdb.gz").id == "1dx5I"


# --- errors -------------------------------------------------------------------------------------------------------

NAN_LINE = atom("ATOM", 2, "CA", "GLY", "A", 1, ("nan", 1.0, 1.0))
ERROR_CASES = {
    "empty.pdb": (b"", "empty"),
    "blank.pdb": (b"\n \n", "empty"),
    "garbage.pdb": (np.random.default_rng(0).bytes(2000).replace(b"\x1f\x8b", b"xx"), "no atom records|cannot parse"),
    "text.pdb": (b"this is not a structure\nat all\n", "no atom records"),
    "waters.pdb": (
        pdb_text(
            residue_lines("HOH", "A", 1, ["O"], record="HETATM")
            + residue_lines("SO4", "A", 2, ["S", "O1", "O2"], record="HETATM")
        ),
        "no protein residues",
    ),
    "no_ca.pdb": (pdb_text(residue_lines("GLY", "A", 1, ["N", "C", "O"])), "no amino-acid residue has a CA"),
    "nan.pdb": (pdb_text([*residue_lines("GLY", "A", 1, ["N"]), NAN_LINE]), "NaN|coordinate"),
    "inf.pdb": (pdb_text([atom("ATOM", 2, "CA", "GLY", "A", 1, ("inf", 1.0, 1.0))]), "NaN/inf"),
    "letters.pdb": (pdb_text([atom("ATOM", 2, "CA", "GLY", "A", 1, ("abc", 1.0, 1.0))]), "coordinate"),
    "huge.pdb": (pdb_text([atom("ATOM", 2, "CA", "GLY", "A", 1, ("1.0e5", 1.0, 1.0))]), "absurd"),
    "corrupt.pdb.gz": (gzip.compress(synthetic_pdb())[:-20], "gzip"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_invalid_files_raise_naming_the_file(tmp_path, name, backend):
    data, reason = ERROR_CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InvalidStructureError, match=reason) as info:
        parse_structure(path, backend=backend)
    assert name in str(info.value) and info.value.source == str(path)
    assert isinstance(info.value, ValueError) and info.value.reason


def test_invalid_mmcif(tmp_path, data_dir):
    cif = mmcif_from_pdb(data_dir / "2xcjA.pdb.gz").decode()
    first = next(line for line in cif.splitlines() if line.startswith("ATOM 2 "))
    fields = first.split()
    fields[10] = "?"  # Cartn_x of the first CA
    path = tmp_path / "bad.cif"
    path.write_text(cif.replace(first, " ".join(fields)))
    for backend in BACKENDS:
        with pytest.raises(InvalidStructureError, match=r"bad\.cif"):
            parse_structure(path, backend=backend)
    (tmp_path / "junk.cif").write_text("data_junk\n_cell.length_a 1\n")
    for backend in BACKENDS:
        with pytest.raises(InvalidStructureError, match=r"junk\.cif"):
            parse_structure(tmp_path / "junk.cif", backend=backend)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(InvalidStructureError, match=r"nope\.pdb"):
        parse_structure(tmp_path / "nope.pdb")
    with pytest.raises(ValueError, match="backend"):
        parse_structure(synthetic_pdb(), backend="pymol")
    with pytest.raises(TypeError):
        parse_structure(42)


def test_error_pickles():
    error = pickle.loads(pickle.dumps(InvalidStructureError("x.pdb", "empty file")))
    assert (error.source, error.reason, str(error)) == ("x.pdb", "empty file", "x.pdb: empty file")


def test_validate_in_memory():
    protein = parse_both(synthetic_pdb())
    protein.validate()
    bad = protein.take(slice(None))
    bad.atom_positions[3, C.CA_INDEX, 1] = np.nan
    with pytest.raises(InvalidStructureError, match=r"NaN/inf.*chain 'A' residue 3A"):
        bad.validate("mine")
    bad = protein.take(slice(None))
    bad.atom_positions[2, C.CA_INDEX, 0] = 2e4
    with pytest.raises(InvalidStructureError, match=r"absurd.*1 residue\(s\) \(first: chain 'A' residue 3\)"):
        bad.validate()
    # coordinates of absent atoms are not checked: NaN or far-away junk there is not an error
    junk = protein.take(slice(None))
    absent = ~junk.atom_mask
    assert absent.any()
    junk.atom_positions[absent] = np.where(np.arange(absent.sum())[:, None] % 2, np.nan, 1e9)
    assert junk.validate() is junk
    bad = protein.take(slice(None))
    bad.atom_mask[0, C.CA_INDEX] = False
    with pytest.raises(InvalidStructureError, match="without CA"):
        bad.validate()
    with pytest.raises(InvalidStructureError, match="shape"):
        Protein.from_dict({**protein.to_dict(), "b_factor": np.zeros(3)}).validate()


# --- dicts ------------------------------------------------------------------------------------------------------


def test_dict_round_trip_and_defaults(data_dir):
    protein = parse_structure(data_dir / "2xdgA.pdb.gz")
    d = protein.to_dict()
    assert set(d) == {"id", *FIELDS}
    assert_same(protein, Protein.from_dict(d))
    # a datasets-style example: nested lists, pLDDT instead of B-factor, no numbering or chains
    minimal = {
        "residue_type": d["residue_type"].tolist(),
        "atom_positions": d["atom_positions"].tolist(),
        "atom_mask": d["atom_mask"].reshape(-1).tolist(),
        "plddt": d["b_factor"].tolist(),
    }
    restored = Protein.from_dict(minimal).validate()
    np.testing.assert_array_equal(restored.atom_positions, protein.atom_positions)
    np.testing.assert_array_equal(restored.b_factor, protein.b_factor)
    assert restored.chains == ["A"] and restored.residue_number.tolist() == list(range(1, protein.length + 1))
    from_sequence = Protein.from_dict({**minimal, "residue_type": None, "sequence": protein.sequence})
    np.testing.assert_array_equal(from_sequence.residue_type, protein.residue_type)


# --- crop ---------------------------------------------------------------------------------------------------------


def test_crop_length_contiguity_and_copy(data_dir):
    protein = parse_structure(data_dir / "3ny7A.pdb.gz")
    crop = protein.crop(50, generator=0)
    assert crop.length == 50
    start = int(np.flatnonzero(protein.residue_number == crop.residue_number[0])[0])
    for key in FIELDS:
        np.testing.assert_array_equal(getattr(crop, key), getattr(protein, key)[start : start + 50])
    first = protein.crop(50, random=False)
    np.testing.assert_array_equal(first.residue_number, protein.residue_number[:50])
    whole = protein.crop(500)
    assert_same(whole, protein)
    whole.atom_positions[0] = 1  # a copy, not a view
    assert not np.array_equal(whole.atom_positions[0], protein.atom_positions[0])
    with pytest.raises(ValueError):
        protein.crop(0)


def _starts(protein: Protein, max_length: int, draws: int, generator) -> Counter:
    return Counter(int(protein.crop(max_length, generator=generator).residue_number[0]) for _ in range(draws))


def test_crop_every_start_reachable_and_reproducible(data_dir):
    protein = parse_structure(data_dir / "2xcjA.pdb.gz").take(slice(0, 20))
    numbers = protein.residue_number.tolist()
    # 6 possible starts (0..5), 600 draws: P(some start never drawn) < 6 * (5/6)^600 ~ 1e-47
    for generator in (np.random.default_rng(1), torch.Generator().manual_seed(1)):
        counts = _starts(protein, 15, 600, generator)
        assert set(counts) == set(numbers[:6])
        assert min(counts.values()) > 60  # roughly uniform (expected 100 each)
    assert _starts(protein, 15, 30, np.random.default_rng(7)) == _starts(protein, 15, 30, np.random.default_rng(7))
    a = [protein.crop(15, generator=np.random.default_rng(3)).residue_number[0] for _ in range(3)]
    b = [protein.crop(15, generator=3).residue_number[0] for _ in range(3)]
    assert a == b
    torch.manual_seed(5)
    c = protein.crop(15).residue_number[0]
    torch.manual_seed(5)
    assert protein.crop(15).residue_number[0] == c  # None: torch's global RNG


def _numbered(lines: list[str]) -> list[str]:
    """Give records serial numbers 1, 2, ... (columns 7-11)."""
    return [line[:6] + f"{i + 1:>5}" + line[11:] for i, line in enumerate(lines)]


def test_exact_zero_coordinates_are_checked_by_serial():
    """gemmi reads text it cannot parse as 0.0: records with a 0.0 are looked up and their text checked."""
    lines = _numbered(residue_lines("GLY", "A", 1, ["N", "CA", "C", "O"]))
    lines[1] = lines[1][:30] + f"{0.0:8.3f}" + lines[1][38:]  # a genuine 0.000
    protein = parse_both(pdb_text(lines))
    assert protein.atom_positions[0, C.CA_INDEX, 0] == 0
    bad = list(lines)
    bad[2] = bad[2][:38] + "   x.yz " + bad[2][46:]
    with pytest.raises(InvalidStructureError, match=r"invalid coordinate in record 'ATOM      3  C"):
        Protein.from_bytes(pdb_text(bad), format="pdb", name="bad.pdb")
    # the serial does not identify the record (a duplicate serial, or none): every record is screened
    for serial in ("    1", "     "):
        unnamed = list(bad)
        unnamed[2] = unnamed[2][:6] + serial + unnamed[2][11:]
        with pytest.raises(InvalidStructureError, match="invalid coordinate in record"):
            Protein.from_bytes(pdb_text(unnamed), format="pdb", name="bad.pdb")


def test_a_bad_coordinate_in_a_record_not_kept_is_an_error_in_both_backends():
    """A water's unparsable coordinate (which gemmi reads as 0.0) fails the file, as in Biopython, though the water
    itself would be dropped and no kept atom has a 0.0."""
    lines = _numbered(residue_lines("GLY", "A", 1, ["N", "CA", "C", "O"], origin=1.0))
    water = residue_lines("HOH", "A", 2, ["O"], record="HETATM", origin=9.0)[0]
    lines += _numbered([*lines, water[:30] + "   x.yz " + water[38:]])[-1:]
    for backend in ("gemmi", "biopython"):
        with pytest.raises(InvalidStructureError, match=r"bad\.pdb.*coordinate"):
            Protein.from_bytes(pdb_text(lines), format="pdb", name="bad.pdb", backend=backend)
