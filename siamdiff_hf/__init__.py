"""siamdiff-hf: protein structure encoders and SiamDiff pre-training for the Hugging Face ecosystem.

Importing the package registers its configurations and models with transformers' `AutoConfig`/`AutoModel`.
"""

from transformers import AutoConfig, AutoModel

from .data import load_afdb
from .models import (
    STAGES,
    EsmGearNetConfig,
    EsmGearNetModel,
    GearNetConfig,
    GearNetModel,
    GVPConfig,
    GVPModel,
    ProteinEncoderOutput,
    SiamDiffConfig,
    SiamDiffForPreTraining,
    SiamDiffPreTrainingOutput,
)
from .protein import InvalidStructureError, Protein, ProteinStructureProcessor, parse_structure

__version__ = "0.1.0"

__all__ = [
    "STAGES",
    "AutoConfig",
    "AutoModel",
    "EsmGearNetConfig",
    "EsmGearNetModel",
    "GVPConfig",
    "GVPModel",
    "GearNetConfig",
    "GearNetModel",
    "InvalidStructureError",
    "Protein",
    "ProteinEncoderOutput",
    "ProteinStructureProcessor",
    "SiamDiffConfig",
    "SiamDiffForPreTraining",
    "SiamDiffPreTrainingOutput",
    "load_afdb",
    "parse_structure",
]
