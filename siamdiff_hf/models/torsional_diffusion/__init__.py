from .configuration_torsional_diffusion import TorsionalDiffusionConfig
from .modeling_torsional_diffusion import TorsionalDiffusionForPreTraining, TorsionalDiffusionOutput

__all__ = ["TorsionalDiffusionConfig", "TorsionalDiffusionForPreTraining", "TorsionalDiffusionOutput"]
