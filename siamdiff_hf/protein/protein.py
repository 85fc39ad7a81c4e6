"""`Protein`: one protein structure as numpy arrays (atom37 layout), validated, cropped, written back as PDB.

Parsing files into a `Protein` lives in `siamdiff_hf.protein.parsing` (`parse_structure`); the constructors
``Protein.from_file`` / ``from_bytes`` / ``from_biopython`` are thin aliases of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from siamdiff_hf.protein import constants as C

MAX_ABS_COORDINATE: float = 1.0e4  # Angstrom; anything larger is a corrupt file, not a protein


class InvalidStructureError(ValueError):
    """A structure that cannot give a valid `Protein`; ``source`` names the file or item, ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):  # keep it picklable across worker processes
        return type(self), (self.source, self.reason)


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
        """Alias of `parse_structure` for a path (``.gz`` transparently)."""
        from siamdiff_hf.protein.parsing import parse_structure

        return parse_structure(path, chain=chain, backend=backend, id=id)

    @classmethod
    def from_bytes(
        cls, data: bytes, *, format: str | None, name: str = "<bytes>", chain: str | list[str] | None = None,
        backend: str = "gemmi", id: str | None = None,
    ) -> Protein:  # fmt: skip
        """Alias of `parse_structure` for file content; ``name`` appears in errors and gives the default id."""
        from siamdiff_hf.protein.parsing import parse_structure

        return parse_structure(bytes(data), format=format, name=name, chain=chain, backend=backend, id=id)

    @classmethod
    def from_biopython(cls, structure: Any, *, chain: str | list[str] | None = None, id: str | None = None) -> Protein:
        """Alias of `parse_structure` for the first model of a Bio.PDB Structure (or a Model)."""
        from siamdiff_hf.protein.parsing import parse_structure

        return parse_structure(structure, chain=chain, id=id)

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
        # Fast path: every coordinate, present or not, finite and in range (NaN fails both comparisons). Only
        # when that fails are the present atoms gathered to tell NaN/inf from far away (absent ones may be junk).
        if self.atom_positions.min() >= -MAX_ABS_COORDINATE and self.atom_positions.max() <= MAX_ABS_COORDINATE:
            return self
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
