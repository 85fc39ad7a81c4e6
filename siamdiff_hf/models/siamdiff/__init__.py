from .configuration_siamdiff import STAGES, SiamDiffConfig
from .modeling_siamdiff import SiamDiffForPreTraining, SiamDiffPreTrainingOutput

__all__ = ["STAGES", "SiamDiffConfig", "SiamDiffForPreTraining", "SiamDiffPreTrainingOutput"]
