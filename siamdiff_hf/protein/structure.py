"""Former home of `Protein` and `parse_structure`, kept so that old imports work.

`Protein` now lives in `siamdiff_hf.protein.protein`, parsing in `siamdiff_hf.protein.parsing`; import both from
`siamdiff_hf.protein`.
"""

from siamdiff_hf.protein.parsing import BACKENDS, parse_structure
from siamdiff_hf.protein.protein import MAX_ABS_COORDINATE, InvalidStructureError, Protein

__all__ = ["BACKENDS", "MAX_ABS_COORDINATE", "InvalidStructureError", "Protein", "parse_structure"]
