"""Structure encoders and pre-training models; registered with transformers' Auto classes on import."""

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining

from .esm_gearnet import EsmGearNetConfig, EsmGearNetModel
from .gearnet import GearNetConfig, GearNetModel
from .gvp import GVPConfig, GVPModel
from .outputs import ProteinEncoderOutput
from .siamdiff import STAGES, SiamDiffConfig, SiamDiffForPreTraining, SiamDiffPreTrainingOutput

AutoConfig.register(GearNetConfig.model_type, GearNetConfig, exist_ok=True)
AutoModel.register(GearNetConfig, GearNetModel, exist_ok=True)
AutoConfig.register(SiamDiffConfig.model_type, SiamDiffConfig, exist_ok=True)
AutoModelForPreTraining.register(SiamDiffConfig, SiamDiffForPreTraining, exist_ok=True)

__all__ = [
    "STAGES",
    "EsmGearNetConfig",
    "EsmGearNetModel",
    "GVPConfig",
    "GVPModel",
    "GearNetConfig",
    "GearNetModel",
    "ProteinEncoderOutput",
    "SiamDiffConfig",
    "SiamDiffForPreTraining",
    "SiamDiffPreTrainingOutput",
]
