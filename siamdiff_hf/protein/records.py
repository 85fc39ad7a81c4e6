"""`AtomRecords`: a structure's atom records as parallel arrays, the input of the parsing rules.

Every reader that builds a `Protein` from atom records fills one: gemmi's ``FlatStructure`` export (PDB files, and
mmCIF files the fast path defers), the numpy mmCIF reader (`cif_records`) and the ATOM3D atom-frame reader. The
rules that turn records into residues (`parsing._protein_from_columns`) depend only on these arrays and on the
records' order.
"""

from __future__ import annotations

import numpy as np


class AtomRecords:
    """The first model's atom records as parallel arrays, in file order (or gemmi's hierarchy order).

    Names (chain, residue, atom) are 8-byte integers: the name's bytes, zero-padded to 8 and viewed as uint64
    (gemmi's ``FlatStructure`` char arrays viewed the same way). Arrays: ``chain``, ``resname``, ``name`` uint64
    (N,); ``resnum`` int (N,); ``icode`` uint8 (N,) (0 or 32 for none); ``occ`` and ``b`` float32 (N,); ``pos``
    float64 (N, 3); ``serial`` int (N,) or None (used only to look up records that read as 0.0).
    """

    def __init__(self, chain, resnum, icode, resname, name, occ, pos, b, serial=None):
        self.chain, self.resnum, self.icode, self.resname = chain, resnum, icode, resname
        self.name, self.occ, self.pos, self.b, self.serial = name, occ, pos, b, serial
        self.num_records = len(name)  # every record, hydrogens and waters included


def names_as_int(chars: np.ndarray) -> np.ndarray:
    """Return (N, 8) name bytes (uint8 / int8 / S1, zero-padded) as (N,) uint64 integers."""
    return np.ascontiguousarray(chars).view(np.uint64).reshape(-1)
