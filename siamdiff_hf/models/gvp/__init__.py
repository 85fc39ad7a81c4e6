from transformers import AutoConfig, AutoModel

from .configuration_gvp import GVPConfig
from .modeling_gvp import GVPEncoderOutput, GVPModel, GVPPreTrainedModel

__all__ = ["GVPConfig", "GVPEncoderOutput", "GVPModel", "GVPPreTrainedModel"]

AutoConfig.register(GVPConfig.model_type, GVPConfig, exist_ok=True)
AutoModel.register(GVPConfig, GVPModel, exist_ok=True)
