from .configuration_gearnet import GearNetConfig
from .modeling_gearnet import GearNetModel, GearNetPreTrainedModel

__all__ = ["GearNetConfig", "GearNetModel", "GearNetPreTrainedModel"]
