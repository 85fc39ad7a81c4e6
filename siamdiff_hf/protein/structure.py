"""`Protein`: one protein structure as numpy arrays (atom37 layout), parsed from PDB / mmCIF, validated, cropped.

Parsing runs in two steps so that both backends give identical arrays: a backend (gemmi, the fast default, or
Biopython) only walks the first model and feeds every atom record to a `_ResidueTable`; the table applies all the
rules (DESIGN §3) in one place:

- residue identity is ``(chain, author residue number, insertion code)``; residues keep their order of first
  appearance, grouped by chain (chains in order of first appearance);
- per atom name the record with the highest occupancy wins (ties and duplicate records: the first listed);
  where one residue id carries several residue names (micro-heterogeneity) the name whose CA has the highest
  occupancy wins;
- standard amino acids keep their atom37 heavy atoms; common modified residues map to their parent
  (`constants.MODIFIED_RESIDUES`, atoms renamed by `constants.MODIFIED_ATOM_RENAMES`: MSE's SE becomes SD);
  ``UNK`` and other residues with an N/CA/C backbone become the unknown type (id 20) with the atoms of
  `constants.UNKNOWN_RESIDUE_ATOMS`; waters and ligands are dropped; hydrogens never match an atom37 slot;
- amino-acid residues without a CA are dropped and counted in `Protein.num_missing_ca`.
"""

from __future__ import annotations

import gzip
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siamdiff_hf.protein import constants as C

MAX_ABS_COORDINATE: float = 1.0e4  # Angstrom; anything larger is a corrupt file, not a protein
BACKENDS: tuple[str, ...] = ("gemmi", "biopython")

_WATERS = frozenset({"HOH", "WAT", "DOD", "H2O", "D2O", "TIP", "TIP3", "SOL"})
_UNKNOWN_NAMES = frozenset({"UNK"})
_BACKBONE = ("N", "CA", "C")
# Atom names worth looking at: atom37 slots plus the names that modified residues rename into them.
_KEPT_NAMES = frozenset(C.ATOM37_NAMES) | frozenset(n for r in C.MODIFIED_ATOM_RENAMES.values() for n in r)
_RESIDUE_ATOM37_MASK = C.residue_atom37_mask()
_STRUCTURE_SUFFIXES = {".pdb": "pdb", ".ent": "pdb", ".cif": "cif", ".mmcif": "cif"}
_CIF_START = re.compile(rb"\A\s*(?:#[^\n]*\n\s*)*data_")
_GZIP_MAGIC = b"\x1f\x8b"


class InvalidStructureError(ValueError):
    """A structure that cannot give a valid `Protein`; ``source`` names the file or item, ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):  # keep it picklable across worker processes
        return type(self), (self.source, self.reason)


# --- the residue table: the parsing rules, shared by both backends ------------------------------------------


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

    def to_protein(self, source: str, protein_id: str, chain: str | list[str] | None) -> Protein:
        """Return the `Protein` of the collected records (rules in the module docstring), validated."""
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
        if chain is not None:
            protein = protein.select_chains(chain, source=source)
        protein.validate(source)
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


# --- backends ---------------------------------------------------------------------------------------------------


def _table_from_gemmi(data: bytes, fmt: str) -> _ResidueTable:
    """Return the residue table of the first model, read by gemmi."""
    import gemmi

    if fmt == "cif":
        document = gemmi.cif.read_string(data.decode("latin-1"))
        structure = gemmi.make_structure_from_block(document[0]) if len(document) else None
    else:
        structure = gemmi.read_pdb_string(data)
    table = _ResidueTable()
    if structure is None or len(structure) == 0:
        return table
    kept = _KEPT_NAMES
    add = table.add
    for chain in structure[0]:
        chain_id = chain.name.strip()
        for residue in chain:
            resname = residue.name.strip()
            resnum = residue.seqid.num
            icode = residue.seqid.icode.strip()
            table.num_atoms += len(residue)
            for atom in residue:
                name = atom.name
                if name in kept:
                    p = atom.pos
                    add(chain_id, resnum, icode, resname, name, atom.occ, (p.x, p.y, p.z), atom.b_iso)
    return table


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


_PDB_COORDINATE_COLUMNS = (slice(30, 38), slice(38, 46), slice(46, 54))


def _check_pdb_coordinates(data: bytes, source: str) -> None:
    """Raise InvalidStructureError if an ATOM/HETATM coordinate field is not a number (gemmi reads those as 0)."""
    for line in data.splitlines():
        if line.startswith((b"ATOM", b"HETATM")):
            for columns in _PDB_COORDINATE_COLUMNS:
                try:
                    float(line[columns])
                except ValueError:
                    text = line.decode("latin-1").rstrip()
                    raise InvalidStructureError(source, f"invalid coordinate in record {text!r}") from None


# --- entry points ---------------------------------------------------------------------------------------------


def parse_structure(
    source: str | os.PathLike | bytes | Any,
    *,
    format: str | None = None,
    chain: str | list[str] | None = None,
    backend: str = "gemmi",
    id: str | None = None,
) -> Protein:
    """Return the `Protein` of a PDB / mmCIF file (optionally gzipped), raw bytes, or a Bio.PDB Structure/Model.

    Args:
        source: a path (``.pdb``, ``.ent``, ``.cif``, ``.mmcif``, each optionally ``.gz``), file content as bytes
            (gzip detected by its magic number), or a Bio.PDB ``Structure``/``Model`` (then ``backend`` is unused).
        format: ``"pdb"`` or ``"cif"``/``"mmcif"``; default: from the file name, else sniffed from the content.
        chain: keep only this chain (or these chains), by author chain id.
        backend: ``"gemmi"`` (default, fast) or ``"biopython"``; both give identical arrays.
        id: the protein id; default: the file name without its extensions, or the Structure's id.

    Raises:
        InvalidStructureError: unreadable, empty or invalid structure, unknown chain; names the source.
    """
    if hasattr(source, "level") and hasattr(source, "get_list"):
        return Protein.from_biopython(source, chain=chain, id=id)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _parse_bytes(bytes(source), fmt=format, name="<bytes>", chain=chain, backend=backend, id=id)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise InvalidStructureError(str(source), f"cannot read file ({err.strerror or err})") from err
        if format is None:
            format = _format_from_name(path.name)
        return _parse_bytes(data, fmt=format, name=str(source), chain=chain, backend=backend, id=id)
    raise TypeError(f"cannot parse a structure from {type(source).__name__}")


def _parse_bytes(data: bytes, *, fmt, name: str, chain, backend: str, id: str | None) -> Protein:
    """Return the `Protein` of raw (possibly gzipped) PDB/mmCIF bytes; ``name`` is used in errors."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, ValueError) as err:
            raise InvalidStructureError(name, f"corrupt gzip data ({err})") from err
    if not data.strip():
        raise InvalidStructureError(name, "empty file")
    fmt = _normalise_format(fmt, name) if fmt is not None else ("cif" if _CIF_START.match(data[:4096]) else "pdb")
    protein_id = id if id is not None else _stem(name)
    try:
        if backend == "gemmi":
            table = _table_from_gemmi(data, fmt)
        else:
            model = _first_model(_biopython_structure(data, fmt, protein_id))
            table = _table_from_biopython(model) if model is not None else _ResidueTable()
    except InvalidStructureError:
        raise
    except Exception as err:  # parser errors come in many types (ValueError, RuntimeError, KeyError, ...)
        raise InvalidStructureError(name, f"cannot parse as {fmt} ({type(err).__name__}: {err})") from err
    protein = table.to_protein(name, protein_id, chain)
    if backend == "gemmi" and fmt == "pdb" and not protein.atom_positions[protein.atom_mask].all():
        _check_pdb_coordinates(data, name)  # an exact 0.0 is rare; gemmi also writes it for unparsable numbers
    return protein


def _format_from_name(name: str) -> str | None:
    """Return ``"pdb"``/``"cif"`` from a file name's extension (``.gz`` ignored), or None when unknown."""
    lowered = name.lower()
    if lowered.endswith(".gz"):
        lowered = lowered[:-3]
    return _STRUCTURE_SUFFIXES.get(os.path.splitext(lowered)[1])


def _normalise_format(fmt: str, source: str) -> str:
    """Return ``"pdb"`` or ``"cif"`` for a user-given format name."""
    key = fmt.lower().removeprefix(".").removesuffix(".gz")
    if key in ("pdb", "ent"):
        return "pdb"
    if key in ("cif", "mmcif"):
        return "cif"
    raise ValueError(f"{source}: unknown structure format {fmt!r}; use 'pdb' or 'cif'")


def _stem(name: str) -> str:
    """Return a file name without directories and without structure/gzip extensions (``""`` for ``<bytes>``)."""
    if name.startswith("<") and name.endswith(">"):
        return ""
    base = os.path.basename(name)
    if base.lower().endswith(".gz"):
        base = base[:-3]
    root, ext = os.path.splitext(base)
    return root if ext.lower() in _STRUCTURE_SUFFIXES else base


def _as_chain_list(chains: str | list[str] | tuple[str, ...]) -> list[str]:
    return [chains] if isinstance(chains, str) else list(chains)


def _draw_start(num_starts: int, generator) -> int:
    """Return a uniform start index in ``[0, num_starts)`` from a numpy/torch generator, an int seed, or torch's RNG."""
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        generator = np.random.default_rng(int(generator))
    if isinstance(generator, np.random.Generator):
        return int(generator.integers(num_starts))
    import torch

    if generator is None or isinstance(generator, torch.Generator):
        return int(torch.randint(num_starts, (1,), generator=generator).item())
    raise TypeError(f"generator must be a numpy or torch Generator, an int seed or None, not {type(generator)}")


# --- the data model -------------------------------------------------------------------------------------------


@dataclass(eq=False, repr=False)
class Protein:
    """One protein structure as numpy arrays over its L residues (atom37 layout, TorchDrug residue ids).

    Attributes:
        residue_type: (L,) int64 ids in `constants.RESIDUE_NAMES` order, 20 = unknown.
        atom_positions: (L, 37, 3) float32 coordinates in Angstrom, atom37 order; 0 where absent.
        atom_mask: (L, 37) bool, True where the atom is present.
        residue_number: (L,) int64 author residue numbers.
        insertion_code: (L,) str insertion codes ('' when none).
        chain_id: (L,) str author chain ids.
        b_factor: (L,) float32 B-factor of each CA (pLDDT for AlphaFold DB models).
        id: identifier, by default the file name without extensions.
        missing_ca: chain id -> number of amino-acid residues the parser dropped because they had no CA atom
            (chains with none are left out); `num_missing_ca` is the total. `select_chains` keeps the selected
            chains' counts, `crop` keeps them all (they describe the parsed file, not the window).
    """

    residue_type: np.ndarray
    atom_positions: np.ndarray
    atom_mask: np.ndarray
    residue_number: np.ndarray
    insertion_code: np.ndarray
    chain_id: np.ndarray
    b_factor: np.ndarray
    id: str = ""
    missing_ca: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.residue_type = np.asarray(self.residue_type, dtype=np.int64)
        self.atom_positions = np.asarray(self.atom_positions, dtype=np.float32)
        self.atom_mask = np.asarray(self.atom_mask, dtype=bool)
        self.residue_number = np.asarray(self.residue_number, dtype=np.int64)
        self.insertion_code = np.asarray(self.insertion_code, dtype=str)
        self.chain_id = np.asarray(self.chain_id, dtype=str)
        self.b_factor = np.asarray(self.b_factor, dtype=np.float32)
        self.id = str(self.id)

    def __repr__(self) -> str:
        return f"Protein(id={self.id!r}, length={self.length}, chains={self.chains})"

    def __len__(self) -> int:
        return self.length

    # --- properties ---
    @property
    def length(self) -> int:
        """Number of residues L."""
        return int(self.residue_type.shape[0])

    @property
    def sequence(self) -> str:
        """One-letter sequence ('X' for unknown residues)."""
        return C.ids_to_sequence(self.residue_type)

    @property
    def num_missing_ca(self) -> int:
        """Number of amino-acid residues dropped by the parser for lacking a CA atom (see `missing_ca`)."""
        return sum(self.missing_ca.values())

    @property
    def plddt(self) -> np.ndarray:
        """(L,) pLDDT of AlphaFold DB models: an alias of `b_factor`."""
        return self.b_factor

    @property
    def chains(self) -> list[str]:
        """Chain ids in order of first appearance."""
        _, first = np.unique(self.chain_id, return_index=True)
        return [str(self.chain_id[i]) for i in np.sort(first)]

    # --- constructors ---
    @classmethod
    def from_file(
        cls, path: str | os.PathLike, *, chain: str | list[str] | None = None, backend: str = "gemmi",
        id: str | None = None,
    ) -> Protein:  # fmt: skip
        """Return the `Protein` of a PDB/mmCIF file (``.gz`` transparently); see `parse_structure`."""
        return parse_structure(path, chain=chain, backend=backend, id=id)

    @classmethod
    def from_bytes(
        cls, data: bytes, *, format: str | None, name: str = "<bytes>", chain: str | list[str] | None = None,
        backend: str = "gemmi", id: str | None = None,
    ) -> Protein:  # fmt: skip
        """Return the `Protein` of PDB/mmCIF file content (gzip detected); ``name`` appears in errors and the id."""
        if format is None:
            format = _format_from_name(name)
        return _parse_bytes(bytes(data), fmt=format, name=name, chain=chain, backend=backend, id=id)

    @classmethod
    def from_biopython(cls, structure, *, chain: str | list[str] | None = None, id: str | None = None) -> Protein:
        """Return the `Protein` of the first model of a Bio.PDB Structure (or of a Model)."""
        model = _first_model(structure)
        parent = structure if structure.level == "S" else structure.get_parent()
        structure_id = id if id is not None else str(getattr(parent, "id", "") or "")
        source = structure_id or "<biopython structure>"
        table = _table_from_biopython(model) if model is not None else _ResidueTable()
        return table.to_protein(source, structure_id, chain)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protein:
        """Return a `Protein` from `to_dict` output or a dataset example (missing optional keys get defaults).

        Needs ``atom_positions`` and ``atom_mask`` plus ``residue_type`` (or a one-letter ``sequence``). Defaults:
        residue numbers 1..L, no insertion codes, chain "A" (AlphaFold DB's), B-factors from ``plddt`` or 0.
        Nested lists (Arrow rows) and flat arrays are reshaped to the atom37 layout.
        """
        if "residue_type" in data and data["residue_type"] is not None:
            residue_type = np.asarray(data["residue_type"], dtype=np.int64).reshape(-1)
        else:
            residue_type = C.sequence_to_ids(data["sequence"])
        length = residue_type.shape[0]
        positions = np.asarray(data["atom_positions"], dtype=np.float32).reshape(-1, C.NUM_ATOM37, 3)
        mask = np.asarray(data["atom_mask"], dtype=bool).reshape(-1, C.NUM_ATOM37)
        b_factor = data.get("b_factor")
        if b_factor is None:
            b_factor = data.get("plddt")

        def get(key, default):
            value = data.get(key)
            return default if value is None else value

        return cls(
            residue_type=residue_type,
            atom_positions=positions,
            atom_mask=mask,
            residue_number=get("residue_number", np.arange(1, length + 1)),
            insertion_code=get("insertion_code", np.full(length, "", dtype=str)),
            chain_id=get("chain_id", np.full(length, "A", dtype=str)),
            b_factor=np.zeros(length, dtype=np.float32) if b_factor is None else b_factor,
            id=get("id", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a dict of numpy arrays (and ``id``), the form streamed datasets pass around."""
        return {
            "id": self.id,
            "residue_type": self.residue_type,
            "atom_positions": self.atom_positions,
            "atom_mask": self.atom_mask,
            "residue_number": self.residue_number,
            "insertion_code": self.insertion_code,
            "chain_id": self.chain_id,
            "b_factor": self.b_factor,
        }

    # --- transforms ---
    def take(self, index: np.ndarray | slice) -> Protein:
        """Return a new `Protein` with the residues at ``index`` (arrays copied)."""
        return Protein(
            residue_type=self.residue_type[index].copy(),
            atom_positions=self.atom_positions[index].copy(),
            atom_mask=self.atom_mask[index].copy(),
            residue_number=self.residue_number[index].copy(),
            insertion_code=self.insertion_code[index].copy(),
            chain_id=self.chain_id[index].copy(),
            b_factor=self.b_factor[index].copy(),
            id=self.id,
            missing_ca=dict(self.missing_ca),
        )

    def crop(self, max_length: int, *, random: bool = True, generator=None) -> Protein:
        """Return a contiguous window of at most ``max_length`` residues (a copy).

        With ``random=True`` the start is uniform over every position ``0..L - max_length`` (the official code
        could not reach the last one); ``random=False`` takes the first ``max_length`` residues, which is
        deterministic and matches TorchDrug's non-random truncation. ``generator``: a ``numpy.random.Generator``,
        a ``torch.Generator``, an int seed, or None for torch's global RNG (seeded by ``torch.manual_seed`` and
        distinct in each DataLoader worker). Windows are over the residue order and may span chains.
        """
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        if self.length <= max_length:
            return self.take(slice(None))
        start = _draw_start(self.length - max_length + 1, generator) if random else 0
        return self.take(slice(start, start + max_length))

    def select_chains(self, chains: str | list[str], *, source: str | None = None) -> Protein:
        """Return the residues of the given chain id(s), in their original order.

        Raises:
            InvalidStructureError: a chain is not present; the message lists the available chains.
        """
        wanted = _as_chain_list(chains)
        available = self.chains
        unknown = [c for c in wanted if c not in available]
        if unknown:
            raise InvalidStructureError(
                source or self.id or "<protein>",
                f"chain(s) {', '.join(map(repr, unknown))} not found; available chains: "
                f"{', '.join(map(repr, available))}",
            )
        selected = self.take(np.isin(self.chain_id, wanted))
        selected.missing_ca = {c: n for c, n in self.missing_ca.items() if c in wanted}
        return selected

    # --- checks and output ---
    def validate(self, source: str | None = None) -> Protein:
        """Return self after checking shapes, residue ids, CA presence and coordinates.

        Raises:
            InvalidStructureError: naming ``source`` (default: the id) and the first problem found.
        """
        source = source or self.id or "<protein>"
        length = self.length
        if length == 0:
            raise InvalidStructureError(source, "no residues")
        shapes = {
            "residue_type": (self.residue_type.shape, (length,)),
            "atom_positions": (self.atom_positions.shape, (length, C.NUM_ATOM37, 3)),
            "atom_mask": (self.atom_mask.shape, (length, C.NUM_ATOM37)),
            "residue_number": (self.residue_number.shape, (length,)),
            "insertion_code": (self.insertion_code.shape, (length,)),
            "chain_id": (self.chain_id.shape, (length,)),
            "b_factor": (self.b_factor.shape, (length,)),
        }
        for key, (shape, expected) in shapes.items():
            if shape != expected:
                raise InvalidStructureError(source, f"{key} has shape {shape}, expected {expected}")
        if self.residue_type.min() < 0 or self.residue_type.max() > C.UNKNOWN_RESIDUE:
            raise InvalidStructureError(source, f"residue_type outside 0..{C.UNKNOWN_RESIDUE}")
        if not self.atom_mask[:, C.CA_INDEX].all():
            raise InvalidStructureError(source, f"{self._describe(~self.atom_mask[:, C.CA_INDEX])} without CA atom")
        present = self.atom_positions[self.atom_mask]  # (n_atoms, 3)
        finite = np.isfinite(present).all(axis=-1)
        if not finite.all():
            bad = np.zeros_like(self.atom_mask)
            bad[self.atom_mask] = ~finite
            raise InvalidStructureError(source, f"NaN/inf coordinates in {self._describe(bad.any(axis=1))}")
        too_far = (np.abs(present) > MAX_ABS_COORDINATE).any(axis=-1)
        if too_far.any():
            bad = np.zeros_like(self.atom_mask)
            bad[self.atom_mask] = too_far
            raise InvalidStructureError(
                source, f"absurd coordinates (|x| > {MAX_ABS_COORDINATE:g} A) in {self._describe(bad.any(axis=1))}"
            )
        return self

    def _describe(self, residues: np.ndarray) -> str:
        """Return 'N residue(s), first: chain A 12B' for a boolean residue selection."""
        index = np.flatnonzero(residues)
        i = index[0]
        return (
            f"{len(index)} residue(s) (first: chain {str(self.chain_id[i])!r} residue "
            f"{self.residue_number[i]}{self.insertion_code[i]})"
        )

    def to_pdb_string(self) -> str:
        """Return the structure as PDB text: ATOM records (with element column and B-factors), TER per chain, END."""
        lines = []
        serial = 1
        for i in range(self.length):
            chain = str(self.chain_id[i])
            if len(chain) > 1:
                raise ValueError(f"chain id {chain!r} does not fit the PDB format (one character)")
            resname = C.RESIDUE_NAMES[self.residue_type[i]] if self.residue_type[i] < C.NUM_RESIDUE_TYPES else "UNK"
            resnum, icode, b = int(self.residue_number[i]), str(self.insertion_code[i]), float(self.b_factor[i])
            for j in np.flatnonzero(self.atom_mask[i]):
                name = C.ATOM37_NAMES[j]
                x, y, z = (float(v) for v in self.atom_positions[i, j])
                lines.append(
                    f"ATOM  {serial:>5} {name if len(name) == 4 else ' ' + name:<4} {resname:>3} {chain:1}"
                    f"{resnum:>4}{icode:1}   {x:8.3f}{y:8.3f}{z:8.3f}{1.0:6.2f}{b:6.2f}          {name[0]:>2}  "
                )
                serial += 1
            if i + 1 == self.length or self.chain_id[i + 1] != self.chain_id[i]:
                lines.append(f"TER   {serial:>5}      {resname:>3} {chain:1}{resnum:>4}{icode:1}")
                serial += 1
        lines.append("END")
        return "\n".join(lines) + "\n"
