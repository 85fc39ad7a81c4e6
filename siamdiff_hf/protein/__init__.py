"""Protein data model: vocabularies, `Protein` (arrays, validation, cropping), parsing, and the processor."""

from typing import Any

from siamdiff_hf.protein.parsing import BACKENDS, parse_structure
from siamdiff_hf.protein.protein import InvalidStructureError, Protein

__all__ = ["BACKENDS", "InvalidStructureError", "Protein", "ProteinStructureProcessor", "pack", "parse_structure"]


def __getattr__(name: str) -> Any:
    """Import the processor (it needs transformers) when first used, so that parsing alone stays light."""
    if name in ("ProteinStructureProcessor", "pack"):
        from siamdiff_hf.protein import processor

        return getattr(processor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
