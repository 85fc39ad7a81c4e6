from .configuration_dihedral_prediction import DihedralPredictionConfig
from .modeling_dihedral_prediction import DihedralPredictionForPreTraining

__all__ = ["DihedralPredictionConfig", "DihedralPredictionForPreTraining"]
