"""Training runs. Pre-training: `load_config` reads a YAML run config, `pretrain` runs it with Accelerate.

Modules: `config_io` (YAML, overrides, typed building shared by every run config), `config` (the pre-training
config), `stream` (the structure stream), `objective` (the model of a run), `checkpoints` (save, resume, signals),
`export` (model folders and cards), `tracking` (metrics and logs), `precision` (mixed precision, determinism),
`memory` (opt-in CPU memory reuse between steps), `loop` (the pre-training loop).
"""

from .checkpoints import TrainingInterrupted, list_checkpoints
from .config import BUNDLED_SOURCE, PretrainConfig, bundled_structures, load_config
from .config_io import ConfigError
from .loop import pretrain

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
