"""Residue and atom vocabularies: the one place every code path takes them from.

Residue ids follow TorchDrug's order (``G A S P V T C I L N D Q K E M H F R Y W``, id 20 = unknown), which is
what the published GearNet/SiamDiff checkpoints expect. Atoms use AlphaFold's atom37 layout.
"""

from __future__ import annotations

import numpy as np

# --- residues -------------------------------------------------------------------------------------------------
RESIDUE_NAMES: tuple[str, ...] = (
    "GLY", "ALA", "SER", "PRO", "VAL", "THR", "CYS", "ILE", "LEU", "ASN",
    "ASP", "GLN", "LYS", "GLU", "MET", "HIS", "PHE", "ARG", "TYR", "TRP",
)  # fmt: skip
RESIDUE_LETTERS: str = "GASPVTCILNDQKEMHFRYW"
NUM_RESIDUE_TYPES: int = 20  # standard amino acids; sequence targets have this many classes
UNKNOWN_RESIDUE: int = 20  # id of any non-standard residue kept for its backbone
NUM_RESIDUE_FEATURES: int = 21  # one-hot width including the unknown slot
RESIDUE_ID: dict[str, int] = {name: i for i, name in enumerate(RESIDUE_NAMES)}
LETTER_ID: dict[str, int] = {letter: i for i, letter in enumerate(RESIDUE_LETTERS)}

# Common modified residues and their parent; atoms renamed on the way (MSE's SE becomes MET's SD).
MODIFIED_RESIDUES: dict[str, str] = {
    "MSE": "MET", "SEP": "SER", "TPO": "THR", "PTR": "TYR", "HYP": "PRO", "MLY": "LYS", "M3L": "LYS",
    "MLZ": "LYS", "KCX": "LYS", "LLP": "LYS", "CSO": "CYS", "CSD": "CYS", "CME": "CYS", "CSS": "CYS",
    "OCS": "CYS", "SEC": "CYS", "HIC": "HIS", "NEP": "HIS", "PCA": "GLN", "CGU": "GLU", "ALY": "LYS",
    "AGM": "ARG", "DAL": "ALA", "NLE": "LEU", "FME": "MET", "TYS": "TYR", "SAC": "SER", "MEN": "ASN",
}  # fmt: skip
MODIFIED_ATOM_RENAMES: dict[str, dict[str, str]] = {"MSE": {"SE": "SD"}, "SEC": {"SE": "SG"}}

# --- atoms (AlphaFold atom37) ---------------------------------------------------------------------------------
ATOM37_NAMES: tuple[str, ...] = (
    "N", "CA", "C", "CB", "O", "CG", "CG1", "CG2", "OG", "OG1", "SG", "CD", "CD1", "CD2", "ND1", "ND2", "OD1",
    "OD2", "SD", "CE", "CE1", "CE2", "CE3", "NE", "NE1", "NE2", "OE1", "OE2", "CH2", "NH1", "NH2", "OH", "CZ",
    "CZ2", "CZ3", "NZ", "OXT",
)  # fmt: skip
NUM_ATOM37: int = 37
ATOM37_INDEX: dict[str, int] = {name: i for i, name in enumerate(ATOM37_NAMES)}
BACKBONE_ATOMS: tuple[str, ...] = ("N", "CA", "C")  # kept for masked residues at atom level
CA_INDEX: int = ATOM37_INDEX["CA"]

_ATOMIC_NUMBER = {"C": 6, "N": 7, "O": 8, "S": 16}
# Atomic number of each atom37 slot (heavy atoms only): the element one-hot is indexed by it, as in the published
# atom-level checkpoints (TorchDrug 0.2.1 `data/molecule.py` sets `atom_type` to RDKit's `GetAtomicNum()`, and
# SiamDiff `siamdiff/transform.py` `AtomFeature` one-hots `atom_type.clamp(max=17)` over 18 slots).
ATOM37_ATOMIC_NUMBER: np.ndarray = np.array([_ATOMIC_NUMBER[name[0]] for name in ATOM37_NAMES], dtype=np.int64)
NUM_ELEMENT_FEATURES: int = 18  # one-hot over atomic number clamped to 17

# Heavy atoms of each standard residue, in atom37 names (OXT allowed on any residue, as the C-terminus).
RESIDUE_ATOMS: dict[str, tuple[str, ...]] = {
    "GLY": ("N", "CA", "C", "O"),
    "ALA": ("N", "CA", "C", "O", "CB"),
    "SER": ("N", "CA", "C", "O", "CB", "OG"),
    "PRO": ("N", "CA", "C", "O", "CB", "CG", "CD"),
    "VAL": ("N", "CA", "C", "O", "CB", "CG1", "CG2"),
    "THR": ("N", "CA", "C", "O", "CB", "OG1", "CG2"),
    "CYS": ("N", "CA", "C", "O", "CB", "SG"),
    "ILE": ("N", "CA", "C", "O", "CB", "CG1", "CG2", "CD1"),
    "LEU": ("N", "CA", "C", "O", "CB", "CG", "CD1", "CD2"),
    "ASN": ("N", "CA", "C", "O", "CB", "CG", "OD1", "ND2"),
    "ASP": ("N", "CA", "C", "O", "CB", "CG", "OD1", "OD2"),
    "GLN": ("N", "CA", "C", "O", "CB", "CG", "CD", "OE1", "NE2"),
    "LYS": ("N", "CA", "C", "O", "CB", "CG", "CD", "CE", "NZ"),
    "GLU": ("N", "CA", "C", "O", "CB", "CG", "CD", "OE1", "OE2"),
    "MET": ("N", "CA", "C", "O", "CB", "CG", "SD", "CE"),
    "HIS": ("N", "CA", "C", "O", "CB", "CG", "ND1", "CD2", "CE1", "NE2"),
    "PHE": ("N", "CA", "C", "O", "CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ"),
    "ARG": ("N", "CA", "C", "O", "CB", "CG", "CD", "NE", "CZ", "NH1", "NH2"),
    "TYR": ("N", "CA", "C", "O", "CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ", "OH"),
    "TRP": ("N", "CA", "C", "O", "CB", "CG", "CD1", "CD2", "NE1", "CE2", "CE3", "CZ2", "CZ3", "CH2"),
}
# The tuples above are in AlphaFold's atom14 order: the side-chain rotation moves every atom at or after the
# atom14 slot of a chi's fourth atom (official siamdiff/rotamer.py).
RESIDUE_ATOM14: dict[str, tuple[str, ...]] = RESIDUE_ATOMS
UNKNOWN_RESIDUE_ATOMS: tuple[str, ...] = ("N", "CA", "C", "O", "CB")

# Side-chain torsions chi1..chi4 (AlphaFold's chi_angles_atoms; ARG's chi5 is not used).
CHI_ATOMS: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "GLY": (),
    "ALA": (),
    "SER": (("N", "CA", "CB", "OG"),),
    "PRO": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD")),
    "VAL": (("N", "CA", "CB", "CG1"),),
    "THR": (("N", "CA", "CB", "OG1"),),
    "CYS": (("N", "CA", "CB", "SG"),),
    "ILE": (("N", "CA", "CB", "CG1"), ("CA", "CB", "CG1", "CD1")),
    "LEU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "ASN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
    "ASP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
    "GLN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "LYS": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "CE"), ("CG", "CD", "CE", "NZ")),
    "GLU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
    "MET": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "SD"), ("CB", "CG", "SD", "CE")),
    "HIS": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "ND1")),
    "PHE": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "ARG": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "NE"), ("CG", "CD", "NE", "CZ")),
    "TYR": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
    "TRP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
}
MAX_CHI: int = 4


def residue_atom37_mask() -> np.ndarray:
    """Return a (21, 37) bool table: which atom37 slots each residue type can hold (row 20 = unknown)."""
    table = np.zeros((NUM_RESIDUE_FEATURES, NUM_ATOM37), dtype=bool)
    for i, name in enumerate(RESIDUE_NAMES):
        table[i, [ATOM37_INDEX[a] for a in RESIDUE_ATOMS[name]]] = True
    table[UNKNOWN_RESIDUE, [ATOM37_INDEX[a] for a in UNKNOWN_RESIDUE_ATOMS]] = True
    table[:, ATOM37_INDEX["OXT"]] = True
    return table


def sequence_to_ids(sequence: str) -> np.ndarray:
    """Return residue ids for a one-letter sequence (letters outside the 20 map to unknown)."""
    return np.array([LETTER_ID.get(c, UNKNOWN_RESIDUE) for c in sequence.upper()], dtype=np.int64)


def ids_to_sequence(residue_type: np.ndarray) -> str:
    """Return the one-letter sequence of residue ids ('X' for unknown)."""
    return "".join(RESIDUE_LETTERS[i] if i < NUM_RESIDUE_TYPES else "X" for i in np.asarray(residue_type).tolist())


# Label of residues / examples that no loss or metric counts: transformers' `CrossEntropyLoss(ignore_index=-100)`
# convention, which Trainer also uses to pad per-residue predictions.
IGNORE_INDEX: int = -100
