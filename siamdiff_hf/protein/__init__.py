"""Protein data model: vocabularies, `Protein` (arrays, validation, cropping), parsing, and the processor."""

from siamdiff_hf.protein.parsing import BACKENDS, parse_structure
from siamdiff_hf.protein.processor import ProteinStructureProcessor, pack
from siamdiff_hf.protein.protein import InvalidStructureError, Protein

__all__ = ["BACKENDS", "InvalidStructureError", "Protein", "ProteinStructureProcessor", "pack", "parse_structure"]
