from .configuration_angle_prediction import AnglePredictionConfig
from .modeling_angle_prediction import AnglePredictionForPreTraining, BinnedGeometryOutput

__all__ = ["AnglePredictionConfig", "AnglePredictionForPreTraining", "BinnedGeometryOutput"]
