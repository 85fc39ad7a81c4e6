from .configuration_combined_objectives import CombinedObjectivesConfig
from .modeling_combined_objectives import CombinedObjectivesForPreTraining, CombinedObjectivesOutput

__all__ = ["CombinedObjectivesConfig", "CombinedObjectivesForPreTraining", "CombinedObjectivesOutput"]
