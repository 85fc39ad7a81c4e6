from transformers import AutoConfig, AutoModel

from .configuration_esm_gearnet import DEFAULT_ESM_NAME, EsmGearNetConfig, esm2_config
from .modeling_esm_gearnet import EsmGearNetModel, EsmGearNetPreTrainedModel, esm_parameter_groups

__all__ = [
    "DEFAULT_ESM_NAME",
    "EsmGearNetConfig",
    "EsmGearNetModel",
    "EsmGearNetPreTrainedModel",
    "esm2_config",
    "esm_parameter_groups",
]

AutoConfig.register(EsmGearNetConfig.model_type, EsmGearNetConfig, exist_ok=True)
AutoModel.register(EsmGearNetConfig, EsmGearNetModel, exist_ok=True)
