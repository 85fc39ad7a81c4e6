from .configuration_multiview_contrast import MultiviewContrastConfig
from .modeling_multiview_contrast import MultiviewContrastForPreTraining, MultiviewContrastOutput

__all__ = ["MultiviewContrastConfig", "MultiviewContrastForPreTraining", "MultiviewContrastOutput"]
