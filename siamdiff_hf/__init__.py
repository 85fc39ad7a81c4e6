"""siamdiff-hf: protein structure encoders and SiamDiff pre-training for the Hugging Face ecosystem.

Importing the package registers its configurations and models with transformers' `AutoConfig`/`AutoModel`.
"""

from transformers import AutoConfig, AutoModel

from . import models
from .data import load_afdb
from .models import *  # noqa: F403 (every name in models.__all__)
from .protein import InvalidStructureError, Protein, ProteinStructureProcessor, parse_structure
from .protein.collator import ProteinDataCollator

__version__ = "0.1.0"

__all__ = [
    "AutoConfig",
    "AutoModel",
    "InvalidStructureError",
    "Protein",
    "ProteinDataCollator",
    "ProteinStructureProcessor",
    "load_afdb",
    "parse_structure",
]
__all__ += models.__all__
