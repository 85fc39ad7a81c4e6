"""Structure encoders and pre-training models; registered with transformers' Auto classes on import."""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .angle_prediction import AnglePredictionConfig, AnglePredictionForPreTraining
from .combined_objectives import CombinedObjectivesConfig, CombinedObjectivesForPreTraining
from .denoising_score_matching import DenoisingScoreMatchingConfig, DenoisingScoreMatchingForPreTraining
from .dihedral_prediction import DihedralPredictionConfig, DihedralPredictionForPreTraining
from .distance_prediction import DistancePredictionConfig, DistancePredictionForPreTraining
from .esm_gearnet import EsmGearNetConfig, EsmGearNetModel
from .esm_gearnet.modeling_esm_gearnet import (
    EsmGearNetForPairClassification,
    EsmGearNetForProteinClassification,
    EsmGearNetForResidueClassification,
)
from .gearnet import GearNetConfig, GearNetModel
from .gearnet.modeling_gearnet import (
    GearNetForPairClassification,
    GearNetForProteinClassification,
    GearNetForResidueClassification,
)
from .gvp import GVPConfig, GVPModel
from .gvp.modeling_gvp import GVPForPairClassification, GVPForProteinClassification, GVPForResidueClassification
from .multiview_contrast import MultiviewContrastConfig, MultiviewContrastForPreTraining
from .outputs import ProteinEncoderOutput
from .residue_type_prediction import ResidueTypePredictionConfig, ResidueTypePredictionForPreTraining
from .siamdiff import STAGES, SiamDiffConfig, SiamDiffForPreTraining, SiamDiffPreTrainingOutput
from .torsional_diffusion import TorsionalDiffusionConfig, TorsionalDiffusionForPreTraining

AutoConfig.register(GearNetConfig.model_type, GearNetConfig, exist_ok=True)
AutoModel.register(GearNetConfig, GearNetModel, exist_ok=True)
# Pre-training objectives: SiamDiff and the paper's baselines, each a config nesting an encoder config.
for _config, _objective in (
    (SiamDiffConfig, SiamDiffForPreTraining),
    (ResidueTypePredictionConfig, ResidueTypePredictionForPreTraining),
    (DistancePredictionConfig, DistancePredictionForPreTraining),
    (AnglePredictionConfig, AnglePredictionForPreTraining),
    (DihedralPredictionConfig, DihedralPredictionForPreTraining),
    (MultiviewContrastConfig, MultiviewContrastForPreTraining),
    (DenoisingScoreMatchingConfig, DenoisingScoreMatchingForPreTraining),
    (TorsionalDiffusionConfig, TorsionalDiffusionForPreTraining),
    (CombinedObjectivesConfig, CombinedObjectivesForPreTraining),
):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModelForPreTraining.register(_config, _objective, exist_ok=True)
# Fine-tuning heads: protein level as sequence classification, residue level as token classification.
for _config, _protein_head, _residue_head in (
    (GearNetConfig, GearNetForProteinClassification, GearNetForResidueClassification),
    (GVPConfig, GVPForProteinClassification, GVPForResidueClassification),
    (EsmGearNetConfig, EsmGearNetForProteinClassification, EsmGearNetForResidueClassification),
):
    AutoModelForSequenceClassification.register(_config, _protein_head, exist_ok=True)
    AutoModelForTokenClassification.register(_config, _residue_head, exist_ok=True)

__all__ = [
    "STAGES",
    "AnglePredictionConfig",
    "AnglePredictionForPreTraining",
    "CombinedObjectivesConfig",
    "CombinedObjectivesForPreTraining",
    "DenoisingScoreMatchingConfig",
    "DenoisingScoreMatchingForPreTraining",
    "DihedralPredictionConfig",
    "DihedralPredictionForPreTraining",
    "DistancePredictionConfig",
    "DistancePredictionForPreTraining",
    "EsmGearNetConfig",
    "EsmGearNetForPairClassification",
    "EsmGearNetForProteinClassification",
    "EsmGearNetForResidueClassification",
    "EsmGearNetModel",
    "GVPConfig",
    "GVPForPairClassification",
    "GVPForProteinClassification",
    "GVPForResidueClassification",
    "GVPModel",
    "GearNetConfig",
    "GearNetForPairClassification",
    "GearNetForProteinClassification",
    "GearNetForResidueClassification",
    "GearNetModel",
    "MultiviewContrastConfig",
    "MultiviewContrastForPreTraining",
    "ProteinEncoderOutput",
    "ResidueTypePredictionConfig",
    "ResidueTypePredictionForPreTraining",
    "SiamDiffConfig",
    "SiamDiffForPreTraining",
    "SiamDiffPreTrainingOutput",
    "TorsionalDiffusionConfig",
    "TorsionalDiffusionForPreTraining",
]
