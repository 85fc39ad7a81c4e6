"""`parse_structure`: PDB / mmCIF bytes or files (gzipped or not) -> a validated `Protein`.

The parsing rules, applied identically by both backends:

- only the first model is read;
- residue identity is ``(chain, author residue number, insertion code)``; residues keep their order of first
  appearance, grouped by chain (chains in order of first appearance); mmCIF files use the ``auth_`` ids;
- per atom name the record with the highest occupancy wins (ties and duplicate records: the first listed);
  where one residue id carries several residue names (micro-heterogeneity) the name whose CA has the highest
  occupancy wins;
- standard amino acids keep their atom37 heavy atoms; common modified residues map to their parent
  (`constants.MODIFIED_RESIDUES`, atoms renamed by `constants.MODIFIED_ATOM_RENAMES`: MSE's SE becomes SD);
  ``UNK`` and other residues with an N/CA/C backbone become the unknown type (id 20) with the atoms of
  `constants.UNKNOWN_RESIDUE_ATOMS`; waters and ligands are dropped; hydrogens never match an atom37 slot;
- amino-acid residues without a CA are dropped and counted in `Protein.missing_ca`;
- the B-factor of a residue is its CA's (pLDDT for AlphaFold DB models).

Backends: ``"gemmi"`` (default) reads the file with gemmi and exports the atom table as arrays
(``gemmi.FlatStructure``), then applies the rules with numpy sorts and scatters, no Python loop over atoms or
residues. For mmCIF it first tries `read_cif_records`, which tokenises only the ``_atom_site`` loop with numpy and
gives the values gemmi gives (tested record for record); files beyond its plain layout go to gemmi.
``"biopython"`` walks Bio.PDB's hierarchy into a dictionary table that applies the same rules record by record:
slow, simple, and the reference the tests hold the gemmi path to (identical arrays).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from siamdiff_hf.protein import constants as C
from siamdiff_hf.protein.cif_records import read_cif_records
from siamdiff_hf.protein.formats import GZIP_ERRORS, entry_id, gunzip, is_gzipped, normalise_format, structure_format
from siamdiff_hf.protein.protein import InvalidStructureError, Protein
from siamdiff_hf.protein.records import AtomRecords, names_as_int

BACKENDS: tuple[str, ...] = ("gemmi", "biopython")

_WATERS = frozenset({"HOH", "WAT", "DOD", "H2O", "D2O", "TIP", "TIP3", "SOL"})
_UNKNOWN_NAMES = frozenset({"UNK"})
_BACKBONE = ("N", "CA", "C")
# Atom names worth looking at: atom37 slots plus the names that modified residues rename into them.
_KEPT_NAMES = frozenset(C.ATOM37_NAMES) | frozenset(n for r in C.MODIFIED_ATOM_RENAMES.values() for n in r)
_RESIDUE_ATOM37_MASK = C.residue_atom37_mask()
_CIF_START = re.compile(rb"\A\s*(?:#[^\n]*\n\s*)*data_")


def check_backend(backend: str) -> str:
    """Return ``backend`` if it is one of `BACKENDS`, else raise ValueError naming the choices."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    return backend


# --- entry point ------------------------------------------------------------------------------------------------


def parse_structure(
    source: str | os.PathLike | bytes | Any,
    *,
    format: str | None = None,
    chain: str | list[str] | None = None,
    backend: str = "gemmi",
    id: str | None = None,
    name: str | None = None,
) -> Protein:
    """Return the `Protein` of a PDB / mmCIF file (optionally gzipped), raw bytes, or a Bio.PDB Structure/Model.

    Args:
        source: a path (``.pdb``, ``.ent``, ``.cif``, ``.mmcif``, each optionally ``.gz``), file content as bytes
            (gzip detected by its magic number), or a Bio.PDB ``Structure``/``Model`` (then ``backend`` is unused).
        format: ``"pdb"`` or ``"cif"``/``"mmcif"``; default: from the file name, else sniffed from the content.
        chain: keep only this chain (or these chains), by author chain id.
        backend: ``"gemmi"`` (default, fast) or ``"biopython"``; both give identical arrays.
        id: the protein id; default: the file name without its extensions, or the Structure's id.
        name: how errors name a bytes source (e.g. ``"shard.tar!AF-X.cif.gz"``); its suffix gives the format
            when ``format`` is None, and its base name the default id. Default: ``"<bytes>"`` (id ``""``).

    Raises:
        InvalidStructureError: unreadable, empty or invalid structure, unknown chain; names the source.
    """
    if hasattr(source, "level") and hasattr(source, "get_list"):
        return _parse_biopython_object(source, chain=chain, id=id)
    check_backend(backend)
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "<bytes>"
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        name = name or str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as err:
            raise InvalidStructureError(name, f"cannot read file ({err.strerror or err})") from err
    else:
        raise TypeError(f"cannot parse a structure from {type(source).__name__}")
    if format is None:
        format = structure_format(name)
    return _parse_bytes(data, fmt=format, name=name, chain=chain, backend=backend, id=id)


def _parse_bytes(data: bytes, *, fmt: str | None, name: str, chain, backend: str, id: str | None) -> Protein:
    """Return the `Protein` of raw (possibly gzipped) PDB/mmCIF bytes; ``name`` is used in errors."""
    if is_gzipped(data):
        try:
            data = gunzip(data)
        except GZIP_ERRORS as err:
            raise InvalidStructureError(name, f"corrupt gzip data ({err})") from err
    if not data or data.isspace():  # not `data.strip()`, which copies the whole file
        raise InvalidStructureError(name, "empty file")
    fmt = normalise_format(fmt, name) if fmt is not None else ("cif" if _CIF_START.match(data[:4096]) else "pdb")
    protein_id = id if id is not None else _stem(name)
    columns = None
    try:
        if backend == "gemmi":
            columns = _gemmi_columns(data, fmt)
            protein = _protein_from_columns(columns, name, protein_id)
        else:
            model = _first_model(_biopython_structure(data, fmt, protein_id))
            table = _table_from_biopython(model) if model is not None else _ResidueTable()
            protein = table.to_protein(name, protein_id)
    except InvalidStructureError:
        raise
    except Exception as err:  # parser errors come in many types (ValueError, RuntimeError, KeyError, ...)
        raise InvalidStructureError(name, f"cannot parse as {fmt} ({type(err).__name__}: {err})") from err
    if columns is not None and fmt == "pdb" and _has_zero_coordinate(columns):
        _check_zero_records(data, name, columns)  # gemmi writes 0.0 for unparsable numbers
    return _finish(protein, name, chain)


def _has_zero_coordinate(columns: AtomRecords) -> bool:
    """Return True if a record (kept or not: the Biopython backend rejects a bad coordinate in any record) has a
    coordinate exactly 0.0."""
    return np.count_nonzero(columns.pos) < columns.pos.size


def _parse_biopython_object(structure: Any, *, chain, id: str | None) -> Protein:
    """Return the `Protein` of the first model of a Bio.PDB Structure (or of a Model)."""
    model = _first_model(structure)
    parent = structure if structure.level == "S" else structure.get_parent()
    structure_id = id if id is not None else str(getattr(parent, "id", "") or "")
    source = structure_id or "<biopython structure>"
    table = _table_from_biopython(model) if model is not None else _ResidueTable()
    return _finish(table.to_protein(source, structure_id), source, chain)


def _finish(protein: Protein, source: str, chain) -> Protein:
    """Return ``protein`` restricted to ``chain`` (when given), validated."""
    if chain is not None:
        protein = protein.select_chains(chain, source=source)
    return protein.validate(source)


def _stem(name: str) -> str:
    """Return a file name without directories and structure/gzip extensions (``""`` for ``<bytes>``)."""
    if name.startswith("<") and name.endswith(">"):
        return ""
    base = os.path.basename(name)
    stem = entry_id(base)
    return stem[:-3] if stem == base and base.lower().endswith(".gz") else stem


# --- gemmi backend: arrays ----------------------------------------------------------------------------------------

# Atom names the rules look at as 8-byte integers (gemmi's char arrays viewed as uint64), sorted for
# np.searchsorted; `_NAME_SLOT` is each one's atom37 slot (-1: a name only renamed into a slot, e.g. SE).
_NAMES = sorted(_KEPT_NAMES, key=lambda n: np.frombuffer(n.encode().ljust(8, b"\0"), dtype=np.uint64)[0])
_NAME_TABLE = np.array([np.frombuffer(n.encode().ljust(8, b"\0"), dtype=np.uint64)[0] for n in _NAMES])
_NAME_SLOT = np.array([C.ATOM37_INDEX.get(n, -1) for n in _NAMES], dtype=np.int64)
_NAME_CODE = {n: i for i, n in enumerate(_NAMES)}
_BACKBONE_SLOT = np.full(len(_NAMES), -1)  # name code -> 0, 1, 2 for N, CA, C; -1 for other names
_BACKBONE_SLOT[[_NAME_CODE[n] for n in _BACKBONE]] = np.arange(len(_BACKBONE))
_CA_CODE = _NAME_CODE["CA"]
# residue type x (atom37 slot + 1 spare column for "no slot"), flat: may this record fill this slot?
_SLOT_ALLOWED = np.concatenate([_RESIDUE_ATOM37_MASK, np.zeros((len(_RESIDUE_ATOM37_MASK), 1), bool)], 1).ravel()


_HASH_BITS = 10  # 1,024 slots for the ~45 kept names


def _name_hash(table: np.ndarray, bits: int = _HASH_BITS) -> tuple[np.uint64, np.ndarray, np.ndarray]:
    """Return a multiplier and the (2**bits,) slot tables of a perfect hash of ``table``'s names.

    ``slot = (name * multiplier) >> (64 - bits)`` is distinct for every kept name: a record's code is
    ``codes[slot]``, valid where ``names[slot]`` equals its name. Five integer operations per record instead of
    a binary search; the multiplier is drawn from a seeded generator, so it is the same in every process.
    """
    rng = np.random.default_rng(0)
    while True:
        multiplier = np.uint64(rng.integers(1, 2**63, dtype=np.uint64) | np.uint64(1))
        slots = (table * multiplier) >> np.uint64(64 - bits)
        if len(np.unique(slots)) == len(table):
            names = np.zeros(2**bits, dtype=np.uint64)
            codes = np.zeros(2**bits, dtype=np.int64)
            names[slots], codes[slots] = table, np.arange(len(table))
            return multiplier, names, codes


_HASH_MULTIPLIER, _HASH_NAMES, _HASH_CODES = _name_hash(_NAME_TABLE)
_HASH_SHIFT = np.uint64(64 - _HASH_BITS)
_ICODES = np.array(["" if c in (0, 32) else chr(c) for c in range(256)])  # insertion code byte -> str
_NOT_AMINO, _IF_BACKBONE = -1, -2  # residue-name classes besides a residue type id


def _gemmi_columns(data: bytes, fmt: str) -> AtomRecords | None:
    """Return the first model's records (None when the file holds no model): mmCIF files in the plain layout
    through `read_cif_records` (only the atom_site loop, 4-5x faster than gemmi's whole document), the rest
    through gemmi; both give the same values."""
    if fmt == "cif":
        records = read_cif_records(data)
        if records is not None:
            return records
    return _gemmi_records(data, fmt)


def _gemmi_records(data: bytes, fmt: str) -> AtomRecords | None:
    """Return the first model's records read by gemmi (None when the file holds no model)."""
    import gemmi

    if fmt == "cif":
        document = gemmi.cif.read_string(data)
        structure = gemmi.make_structure_from_block(document[0]) if len(document) else None
    else:
        structure = gemmi.read_pdb_string(data)
    if structure is None or len(structure) == 0:
        return None
    if len(structure) > 1:
        del structure[1:]
    flat = gemmi.FlatStructure(structure)

    # resnums, icodes, occ, pos, b_iso and serials are strided views into gemmi's atom structs (128 bytes apart):
    # the columns the rules scan are copied contiguous once (pos too: it is converted and screened for zeros
    # whole); b and serial are only gathered from
    return AtomRecords(
        chain=names_as_int(flat.chain_ids), resnum=np.ascontiguousarray(flat.resnums),
        icode=np.ascontiguousarray(flat.icodes).view(np.uint8), resname=names_as_int(flat.residue_names),
        name=names_as_int(flat.atom_names), occ=np.ascontiguousarray(flat.occ), pos=np.ascontiguousarray(flat.pos),
        b=flat.b_iso,
        serial=flat.serials,
    )  # fmt: skip


def _protein_from_columns(columns: AtomRecords | None, source: str, protein_id: str) -> Protein:
    """Return the `Protein` of atom-record arrays (the rules in the module docstring), not yet validated.

    Atoms come grouped in runs (gemmi's residues); runs are grouped into residue ids and variants (residue names
    within an id), then the best record of each (variant, atom name) is scattered into atom37.
    """
    if columns is None or columns.num_records == 0:
        raise InvalidStructureError(source, "no atom records (empty file or not PDB/mmCIF)")
    slot = (columns.name * _HASH_MULTIPLIER) >> _HASH_SHIFT
    code = _HASH_CODES[slot]
    kept = np.flatnonzero(_HASH_NAMES[slot] == columns.name)
    if len(kept) == 0:
        raise InvalidStructureError(source, "no protein residues (only waters, ligands or other molecules)")
    if len(kept) == columns.num_records:  # every record a kept name (no hydrogens nor ligands): no copies
        occ, chain, resnum, icode, resname = columns.occ, columns.chain, columns.resnum, columns.icode, columns.resname
    else:
        code, occ = code[kept], columns.occ[kept]
        chain, resnum, icode = columns.chain[kept], columns.resnum[kept], columns.icode[kept]
        resname = columns.resname[kept]
    new_run = _first_of_run(chain, resnum, icode, resname)
    run_start = np.flatnonzero(new_run)
    run_of = np.cumsum(new_run) - 1  # atom -> run
    residue_class, run_resname, renames = _RESIDUE_NAMES.lookup(resname[run_start])
    simple = _simple_layout_protein(
        columns, kept, code, chain, resnum, icode, residue_class[run_resname], bool(renames), run_start, run_of,
        protein_id,
    )  # fmt: skip
    if simple is not None:
        return simple

    # chains by first appearance; residue ids (chain, number, insertion code) by first appearance in their chain
    chain_names, chain_first, run_chain = _unique(chain[run_start])
    chain_rank = np.argsort(np.argsort(chain_first))[run_chain].astype(np.int64)
    key = (chain_rank << 40) | ((resnum[run_start].astype(np.int64) + 2**31) << 8) | icode[run_start]
    residue_keys, residue_first, run_residue = _unique(key)
    residue_rank = residue_keys >> 40
    variant_keys, variant_first, run_variant = _unique(run_residue.astype(np.int64) * len(residue_class) + run_resname)
    variant_residue, variant_resname = np.divmod(variant_keys, len(residue_class))
    variant_of = run_variant[run_of]

    # best record per (variant, atom name): highest occupancy, then first listed
    name_key = variant_of * len(_NAME_TABLE) + code
    if np.bincount(name_key).max() == 1:  # no altlocs nor duplicate records: every record is the best
        best = best_listed = np.arange(len(kept))
    else:
        order = np.argsort(name_key, kind="stable")
        group = np.cumsum(_first_of_run(name_key[order])) - 1
        starts = np.flatnonzero(_first_of_run(group))
        winners = np.flatnonzero(occ[order] == np.maximum.reduceat(occ[order], starts)[group])
        winners = winners[_first_of_run(group[winners])]
        best = order[winners]
        best_listed = order[starts][group[winners]]  # where each atom name was first listed in its variant
    best_variant, best_code = variant_of[best], code[best]

    backbone = np.zeros((len(variant_keys), len(_BACKBONE)), dtype=bool)
    backbone_slot = _BACKBONE_SLOT[best_code]
    is_backbone = backbone_slot >= 0
    backbone[best_variant[is_backbone], backbone_slot[is_backbone]] = True
    variant_type = residue_class[variant_resname]
    variant_type = np.where(
        (variant_type == _IF_BACKBONE) & backbone.all(1), C.UNKNOWN_RESIDUE, np.maximum(variant_type, _NOT_AMINO)
    )
    is_ca = best_code == _CA_CODE
    ca_score = np.full(len(variant_keys), -np.inf)
    ca_score[best_variant[is_ca]] = occ[best[is_ca]]
    has_ca = np.zeros(len(variant_keys), dtype=bool)
    has_ca[best_variant[is_ca]] = True

    # best variant per residue: amino acids only, highest CA occupancy, then first listed
    if len(variant_keys) == len(residue_keys):  # one residue name per residue id: variant i is residue i
        chosen = np.where(variant_type >= 0, np.arange(len(variant_keys)), -1)
    else:
        amino = np.flatnonzero(variant_type >= 0)
        by_score = amino[np.lexsort((variant_first[amino], -ca_score[amino], variant_residue[amino]))]
        first_of_residue = _first_of_run(variant_residue[by_score])
        chosen = np.full(len(residue_keys), -1)
        chosen[variant_residue[by_score[first_of_residue]]] = by_score[first_of_residue]

    residue_order = np.lexsort((residue_first, residue_rank))
    candidate = residue_order[chosen[residue_order] >= 0]
    with_ca = has_ca[chosen[candidate]]
    residues = candidate[with_ca]
    missing = np.bincount(residue_rank[candidate[~with_ca]], minlength=len(chain_names))
    names_by_rank = [_decode(chain_names[i]) for i in np.argsort(chain_first)]
    if len(residues) == 0:
        if missing.sum():
            raise InvalidStructureError(source, "no amino-acid residue has a CA atom")
        raise InvalidStructureError(source, "no protein residues (only waters, ligands or other molecules)")

    row_of_residue = np.full(len(residue_keys), -1)
    row_of_residue[residues] = np.arange(len(residues))
    residue_type = variant_type[chosen[residues]]
    # atom37 scatter of the chosen variants' best records (renamed, restricted to each type's slots)
    best_residue = variant_residue[best_variant]
    take = np.flatnonzero((chosen[best_residue] == best_variant) & (row_of_residue[best_residue] >= 0))
    row = row_of_residue[best_residue[take]]
    slot = _NAME_SLOT[best_code[take]]
    for resname_index, old, new in renames:
        renamed = (variant_resname[best_variant[take]] == resname_index) & (best_code[take] == _NAME_CODE[old])
        slot[renamed] = C.ATOM37_INDEX[new]
    allowed = slot >= 0
    allowed[allowed] = _RESIDUE_ATOM37_MASK[residue_type[row[allowed]], slot[allowed]]
    take, row, slot = take[allowed], row[allowed], slot[allowed]
    if renames:  # two records renamed into one slot (MSE with both SE and SD): the atom name listed last wins
        last = np.lexsort((best_listed[take], slot, row))
        keep = last[_first_of_run(row[last][::-1], slot[last][::-1])[::-1]]
        take, row, slot = take[keep], row[keep], slot[keep]
    records = kept[best[take]]

    keys = residue_keys[residues]
    protein = _assemble(
        columns, records, row, slot, residue_type, residue_number=((keys >> 8) & 0xFFFFFFFF) - 2**31,
        insertion_code=_ICODES[keys & 0xFF], chain_id=np.asarray(names_by_rank, dtype=str)[residue_rank[residues]],
        protein_id=protein_id,
    )  # fmt: skip
    protein.missing_ca = {names_by_rank[i]: int(n) for i, n in enumerate(missing) if n}
    return protein


def _simple_layout_protein(
    columns: AtomRecords,
    kept,
    code,
    chain,
    resnum,
    icode,
    residue_type,
    renamed: bool,
    run_start,
    run_of,
    protein_id: str,
) -> Protein | None:
    """Return what the rules give for the common layout, in a third of the operations; None for other layouts.

    The layout (every AlphaFold DB model, most single-chain PDB files): chains in contiguous blocks in increasing
    id order, residue ids strictly increasing within a chain (so each residue is one run of records and one
    variant), standard or UNK residue names only (no modified residue, water or ligand), one record per atom name
    (no altlocs, no duplicates) and a CA in every residue. Then the rules keep every residue, in file order, with
    every record that has an atom37 slot of its type; `test_simple_layout_equals_the_general_rules` holds the two
    paths equal.
    """
    run_chain = chain[run_start]
    if (run_chain[1:] < run_chain[:-1]).any():
        return None
    residue_key = ((resnum[run_start].astype(np.int64) + 2**31) << 8) | icode[run_start]
    if ((run_chain[1:] == run_chain[:-1]) & (residue_key[1:] <= residue_key[:-1])).any():
        return None
    if renamed or residue_type.min() < 0 or np.count_nonzero(code == _CA_CODE) != len(run_start):
        return None
    if np.bincount(run_of * len(_NAME_TABLE) + code).max() > 1:  # an atom name listed twice in a residue
        return None
    slot = _NAME_SLOT[code]  # -1: a name only renamed into a slot (SE): column 37 of the table, never allowed
    take = np.flatnonzero(_SLOT_ALLOWED[residue_type[run_of] * (C.NUM_ATOM37 + 1) + slot % (C.NUM_ATOM37 + 1)])
    new_chain = _first_of_run(run_chain)
    chain_names = np.asarray([_decode(v) for v in run_chain[new_chain]], dtype=str)
    protein = _assemble(
        columns, kept[take], run_of[take], slot[take], residue_type,
        residue_number=resnum[run_start].astype(np.int64), insertion_code=_ICODES[icode[run_start]],
        chain_id=chain_names[np.cumsum(new_chain) - 1], protein_id=protein_id,
    )  # fmt: skip
    protein.missing_ca = {}
    return protein


def _assemble(
    columns: AtomRecords, records, row, slot, residue_type, *, residue_number, insertion_code, chain_id, protein_id
) -> Protein:
    """Return the `Protein` whose atom37 slot ``(row, slot)`` holds record ``records`` (one record per slot)."""
    length = len(residue_type)
    flat_slot = row * C.NUM_ATOM37 + slot
    positions = np.zeros((length * C.NUM_ATOM37, 3), dtype=np.float32)
    # each (x, y, z) moved as one 12-byte item: a third of the cost of a row-wise (N, 3) scatter
    xyz = np.ascontiguousarray(columns.pos, dtype=np.float32).view("V12").reshape(-1)
    positions.view("V12").reshape(-1)[flat_slot] = xyz[records]
    mask = np.zeros(length * C.NUM_ATOM37, dtype=bool)
    mask[flat_slot] = True
    b_factor = np.zeros(length, dtype=np.float32)
    ca = slot == C.CA_INDEX
    b_factor[row[ca]] = columns.b[records[ca]]
    return Protein(
        residue_type=residue_type,
        atom_positions=positions.reshape(length, C.NUM_ATOM37, 3),
        atom_mask=mask.reshape(length, C.NUM_ATOM37),
        residue_number=residue_number,
        insertion_code=insertion_code,
        chain_id=chain_id,
        b_factor=b_factor,
        id=protein_id,
    )


def _decode(value: np.uint64) -> str:
    """Return the text of an 8-byte name stored as an integer."""
    return value.tobytes().rstrip(b"\0").decode("latin-1").strip()


def _unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``np.unique(values, return_index=True, return_inverse=True)``, without a sort when ``values`` are
    already non-decreasing (the usual case: chains, residues and variants listed in order)."""
    if (values[1:] >= values[:-1]).all():
        first = _first_of_run(values)
        index = np.flatnonzero(first)
        return values[index], index, np.cumsum(first) - 1
    return np.unique(values, return_index=True, return_inverse=True)


def _first_of_run(*keys: np.ndarray) -> np.ndarray:
    """Return a bool mask marking the first element of each run of equal consecutive ``keys`` tuples."""
    first = np.zeros(len(keys[0]), dtype=bool)
    first[:1] = True
    for key in keys:
        first[1:] |= key[1:] != key[:-1]
    return first


class _ResidueNameTable:
    """Every residue name seen in this process, sorted as 8-byte integers, with its class and atom renames.

    `lookup` finds a file's residue names with one binary search (no per-file sort or set of names); names not
    yet seen (a few per corpus: ligands, modified residues) are classified once and the table rebuilt.
    """

    def __init__(self) -> None:
        self._renames: dict[int, tuple[tuple[str, str], ...]] = {}  # residue name -> atom renames (MSE: SE -> SD)
        self._table = self._build(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64))

    def lookup(self, resnames: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[tuple[int, str, str], ...]]:
        """Return (class per table entry, each name's table index, the renames of the names present).

        Classes: a residue type id, `_NOT_AMINO` or `_IF_BACKBONE`; renames: (table index, old atom, new atom).
        """
        names, classes, renames = self._table
        index = np.searchsorted(names, resnames)
        found = index < len(names)
        found[found] = names[index[found]] == resnames[found]
        if not found.all():
            names, classes, renames = self._add(np.unique(resnames[~found]))
            index = np.searchsorted(names, resnames)
        if renames:  # keep those of this file's residue names
            in_file = np.zeros(len(names), dtype=bool)
            in_file[index] = True
            renames = tuple(entry for entry in renames if in_file[entry[0]])
        return classes, index, renames

    def _add(self, new: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[tuple[int, str, str], ...]]:
        """Classify new residue names (a loop over distinct new names, not over residues) and rebuild the table."""
        names, classes, _ = self._table
        added = []
        for value in new.tolist():
            residue_class, renames = _classify_name(_decode(np.uint64(value)))
            added.append(residue_class)
            if renames:
                self._renames[value] = renames
        self._table = self._build(np.concatenate([names, new]), np.concatenate([classes, added]).astype(np.int64))
        return self._table  # one assignment: a concurrent reader sees the old or the new table

    def _build(self, names: np.ndarray, classes: np.ndarray) -> tuple:
        """Return the (sorted names, their classes, (index, old, new) renames) table of these names."""
        order = np.argsort(names)
        names, classes = names[order], classes[order]
        names.flags.writeable = classes.flags.writeable = False  # shared by every call: read only
        where = {value: i for i, value in enumerate(names.tolist())}
        renames = tuple((where[v], old, new) for v, pairs in self._renames.items() for old, new in pairs)
        return names, classes, renames


_RESIDUE_NAMES = _ResidueNameTable()


def _classify_name(resname: str) -> tuple[int, tuple[tuple[str, str], ...]]:
    """Return (class, atom renames) of one residue name."""
    if resname in C.RESIDUE_ID:
        return C.RESIDUE_ID[resname], ()
    if resname in C.MODIFIED_RESIDUES:
        return C.RESIDUE_ID[C.MODIFIED_RESIDUES[resname]], tuple(C.MODIFIED_ATOM_RENAMES.get(resname, {}).items())
    if resname in _UNKNOWN_NAMES:
        return C.UNKNOWN_RESIDUE, ()
    return (_NOT_AMINO if resname in _WATERS else _IF_BACKBONE), ()


_PDB_COORDINATE_COLUMNS = (slice(30, 38), slice(38, 46), slice(46, 54))
_NUMBER_CHARS = np.zeros(256, dtype=bool)
_NUMBER_CHARS[list(b" +-.0123456789eE")] = True
_DIGITS = np.zeros(256, dtype=bool)
_DIGITS[list(b"0123456789")] = True


_MAX_TARGETED = 64  # zero-coordinate records looked up one by one; more, and every record is screened


def _check_zero_records(data: bytes, source: str, columns: AtomRecords) -> None:
    """Raise InvalidStructureError if a record gemmi read with a 0.0 coordinate holds a non-number there.

    AlphaFold DB files hold an exact 0.000 in about one file in four, so the records are looked up by serial
    number (``bytes.find``, no pass over every line) and their coordinate fields read with ``float``. Where a
    serial does not identify its record (none, hybrid-36, duplicates, a record that reads differently), every
    record is screened instead (`_check_pdb_coordinates`).
    """
    zero = np.unique(np.flatnonzero(columns.pos.reshape(-1) == 0) // 3)  # records with a 0.0 coordinate
    if columns.serial is None or len(zero) > _MAX_TARGETED:
        return _check_pdb_coordinates(data, source)
    for index in zero.tolist():
        serial = int(columns.serial[index])
        line = _record_line(data, serial) if 0 < serial <= 99999 else None
        if line is None:
            return _check_pdb_coordinates(data, source)
        try:
            xyz = [float(line[field]) for field in _PDB_COORDINATE_COLUMNS]
        except ValueError:
            text = line.decode("latin-1").rstrip()
            raise InvalidStructureError(source, f"invalid coordinate in record {text!r}") from None
        if xyz != columns.pos[index].tolist():  # another record with this serial: screen them all
            return _check_pdb_coordinates(data, source)
    return None


def _record_line(data: bytes, serial: int) -> bytes | None:
    """Return the first ATOM/HETATM line with this serial number (columns 7-11), or None if there is none."""
    for record in (b"ATOM  ", b"HETATM"):
        key = record + b"%5d" % serial
        start = data.find(key)
        while start > 0 and data[start - 1] != 10:  # not at a line start: look further
            start = data.find(key, start + 1)
        if start >= 0:
            end = data.find(b"\n", start)
            return data[start : end if end >= 0 else len(data)]
    return None


def _check_pdb_coordinates(data: bytes, source: str) -> None:
    """Raise InvalidStructureError if an ATOM/HETATM coordinate field is not a number (gemmi reads those as 0).

    Runs only when a parsed coordinate is exactly 0.0 and `_check_zero_records` cannot look the records up by
    serial. The coordinate columns of every record are screened with
    numpy (a field of digits, signs, points and exponents, holding a digit, is a number); only the records that
    fail the screen are checked with ``float``, which names the first bad record.
    """
    text = np.frombuffer(data + b"\n" + bytes(60), dtype=np.uint8)
    ends = np.flatnonzero(text[: len(data) + 1] == 10)
    starts = np.r_[0, ends[:-1] + 1]
    head = text[starts[:, None] + np.arange(6)]
    atom, hetatm = np.frombuffer(b"ATOM", np.uint8), np.frombuffer(b"HETATM", np.uint8)
    record = (head[:, :4] == atom).all(1) | (head == hetatm).all(1)
    starts, ends = starts[record], ends[record]
    fields = text[starts[:, None] + np.arange(30, 54)].reshape(-1, 3, 8)
    number = _NUMBER_CHARS[fields].all(2) & _DIGITS[fields].any(2)
    suspect = ~number.all(1) | (ends - starts < 54)
    for start, end in zip(starts[suspect].tolist(), ends[suspect].tolist()):  # rarely any
        line = data[start:end]
        for columns in _PDB_COORDINATE_COLUMNS:
            try:
                float(line[columns])
            except ValueError:
                text = line.decode("latin-1").rstrip()
                raise InvalidStructureError(source, f"invalid coordinate in record {text!r}") from None


# --- biopython backend: the reference table -----------------------------------------------------------------------


class _ResidueTable:
    """Collects atom records chain -> (resnum, icode) -> residue name -> atom name -> best record."""

    def __init__(self) -> None:
        self.chains: dict[str, dict[tuple[int, str], dict[str, dict[str, tuple]]]] = {}
        self.num_atoms = 0  # every record seen, hydrogens and waters included

    def add(self, chain: str, resnum: int, icode: str, resname: str, name: str, occupancy: float, xyz, b: float):
        residues = self.chains.get(chain)
        if residues is None:
            residues = self.chains[chain] = {}
        variants = residues.get((resnum, icode))
        if variants is None:
            variants = residues[(resnum, icode)] = {}
        atoms = variants.get(resname)
        if atoms is None:
            atoms = variants[resname] = {}
        old = atoms.get(name)
        if old is None or occupancy > old[0]:  # strict: ties and duplicates keep the first record
            atoms[name] = (occupancy, xyz, b)

    def to_protein(self, source: str, protein_id: str) -> Protein:
        """Return the `Protein` of the collected records (rules in the module docstring), not yet validated."""
        if self.num_atoms == 0:
            raise InvalidStructureError(source, "no atom records (empty file or not PDB/mmCIF)")
        types, atom_lists, numbers, icodes, chain_ids = [], [], [], [], []
        missing_ca: dict[str, int] = {}
        for chain_id, residues in self.chains.items():
            missing_ca[chain_id] = 0
            for (resnum, icode), variants in residues.items():
                best = None
                for resname, atoms in variants.items():
                    residue_type, renames = _classify(resname, atoms)
                    if residue_type is None:
                        continue
                    score = atoms["CA"][0] if "CA" in atoms else -np.inf
                    if best is None or score > best[0]:
                        best = (score, residue_type, renames, atoms)
                if best is None:  # water or ligand
                    continue
                _, residue_type, renames, atoms = best
                if "CA" not in atoms:
                    missing_ca[chain_id] += 1
                    continue
                types.append(residue_type)
                atom_lists.append([(renames.get(n, n), rec) for n, rec in atoms.items()] if renames else atoms.items())
                numbers.append(resnum)
                icodes.append(icode)
                chain_ids.append(chain_id)
        if not types:
            if sum(missing_ca.values()):
                raise InvalidStructureError(source, "no amino-acid residue has a CA atom")
            raise InvalidStructureError(source, "no protein residues (only waters, ligands or other molecules)")
        protein = _fill(types, atom_lists, numbers, icodes, chain_ids, protein_id)
        protein.missing_ca = {c: n for c, n in missing_ca.items() if n}
        return protein


def _classify(resname: str, atoms: dict[str, tuple]) -> tuple[int | None, dict[str, str]]:
    """Return (residue type id or None for non-amino acids, atom renames) of a residue name."""
    residue_type = C.RESIDUE_ID.get(resname)
    if residue_type is not None:
        return residue_type, {}
    parent = C.MODIFIED_RESIDUES.get(resname)
    if parent is not None:
        return C.RESIDUE_ID[parent], C.MODIFIED_ATOM_RENAMES.get(resname, {})
    if resname in _WATERS:
        return None, {}
    if resname in _UNKNOWN_NAMES or all(n in atoms for n in _BACKBONE):
        return C.UNKNOWN_RESIDUE, {}
    return None, {}


def _fill(types, atom_lists, numbers, icodes, chain_ids, protein_id: str) -> Protein:
    """Return a `Protein` with the atom37 arrays filled from per-residue (name, record) lists."""
    length = len(types)
    positions = np.zeros((length, C.NUM_ATOM37, 3), dtype=np.float32)
    mask = np.zeros((length, C.NUM_ATOM37), dtype=bool)
    b_factor = np.zeros(length, dtype=np.float32)
    index = C.ATOM37_INDEX
    for i, (residue_type, atoms) in enumerate(zip(types, atom_lists)):
        allowed = _RESIDUE_ATOM37_MASK[residue_type]
        for name, (_, xyz, b) in atoms:
            j = index.get(name)
            if j is not None and allowed[j]:
                positions[i, j] = xyz
                mask[i, j] = True
                if j == C.CA_INDEX:
                    b_factor[i] = b
    return Protein(
        residue_type=np.asarray(types, dtype=np.int64),
        atom_positions=positions,
        atom_mask=mask,
        residue_number=np.asarray(numbers, dtype=np.int64),
        insertion_code=np.asarray(icodes, dtype=str),
        chain_id=np.asarray(chain_ids, dtype=str),
        b_factor=b_factor,
        id=protein_id,
    )


def _table_from_biopython(model) -> _ResidueTable:
    """Return the residue table of a Bio.PDB Model (disordered residues and atoms expanded)."""
    table = _ResidueTable()
    kept = _KEPT_NAMES
    for chain in model:
        chain_id = str(chain.id).strip()
        for residue in chain:
            variants = residue.disordered_get_list() if residue.is_disordered() == 2 else [residue]
            for variant in variants:
                resname = variant.resname.strip()
                _, resnum, icode = variant.id
                icode = str(icode).strip()
                for atom in variant:
                    records = _altloc_records(atom) if atom.is_disordered() else (atom,)
                    table.num_atoms += len(records)
                    for record in records:
                        name = record.get_name().strip()
                        if name in kept:
                            occupancy = record.get_occupancy()
                            b = record.get_bfactor()
                            table.add(
                                chain_id, int(resnum), icode, resname, name,
                                0.0 if occupancy is None else occupancy, tuple(record.coord.tolist()),
                                0.0 if b is None else b,
                            )  # fmt: skip
    return table


def _altloc_records(atom) -> list:
    """Return the alternate locations of a Bio.PDB DisorderedAtom in file order (serial number order)."""
    records = atom.disordered_get_list()
    return sorted(records, key=lambda a: a.serial_number if isinstance(a.serial_number, int) else 0)


def _biopython_structure(data: bytes, fmt: str, structure_id: str):
    """Return the Bio.PDB Structure parsed from raw text."""
    from Bio.PDB import MMCIFParser, PDBParser

    parser = MMCIFParser(QUIET=True) if fmt == "cif" else PDBParser(QUIET=True, PERMISSIVE=True)
    return parser.get_structure(structure_id, io.StringIO(data.decode("latin-1")))


def _first_model(structure):
    """Return the first model of a Bio.PDB Structure, a Model unchanged, or None when there is none."""
    if structure.level == "M":
        return structure
    if structure.level != "S":
        raise TypeError(f"expected a Bio.PDB Structure or Model, got level {structure.level!r}")
    models = structure.get_list()
    return models[0] if models else None
