from .configuration_distance_prediction import DistancePredictionConfig
from .modeling_distance_prediction import DistancePredictionForPreTraining, DistancePredictionOutput

__all__ = ["DistancePredictionConfig", "DistancePredictionForPreTraining", "DistancePredictionOutput"]
