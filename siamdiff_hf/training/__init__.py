"""Pre-training runs: YAML configs (`load_config`) and the Accelerate loop (`pretrain`)."""

from .config import BUNDLED_SOURCE, ConfigError, PretrainConfig, bundled_structures, load_config
from .pretrain import TrainingInterrupted, list_checkpoints, pretrain

__all__ = [
    "BUNDLED_SOURCE",
    "ConfigError",
    "PretrainConfig",
    "TrainingInterrupted",
    "bundled_structures",
    "list_checkpoints",
    "load_config",
    "pretrain",
]
