"""Protein data model: vocabularies, `Protein` parsing/validation/cropping, and the processor."""

from siamdiff_hf.protein.processor import ProteinStructureProcessor, pack
from siamdiff_hf.protein.structure import InvalidStructureError, Protein, parse_structure

__all__ = ["InvalidStructureError", "Protein", "ProteinStructureProcessor", "pack", "parse_structure"]
