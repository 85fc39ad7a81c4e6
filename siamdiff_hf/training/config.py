"""Pre-training run configuration: YAML in, validated dataclasses out, with errors that name the offending key.

A run config has these sections (every key is optional except ``output_dir``, ``data.sources`` and
``stages[*].max_steps``; see the dataclasses below for defaults)::

    output_dir: outputs/quickstart      # receives everything: checkpoints, logs, stage exports, OUTPUT_DIR/encoder
    seed: 0
    model:       {encoder: {model_type: gearnet, level: residue, ...}, siamdiff: {...}, init_from, encoder_from}
    data:        {sources: [...], batch_size, crop_length, random_crop, min_length, max_length, min_plddt, ...}
    stages:      [{name, max_steps, beta_start, beta_end, num_timesteps, gamma, learning_rate, warmup_steps}, ...]
    optimizer:   {name: adam, learning_rate: 1.0e-4, weight_decay, betas, eps, lr_scheduler, warmup_steps}
    training:    {mixed_precision, gradient_accumulation_steps, max_grad_norm, find_unused_parameters, ...}
    checkpointing: {every_n_steps, keep}
    logging:     {log_every, report_to, project_name, record_ids, progress_bar}
    export:      {push_to_hub, private, title, description}

``key=value`` overrides use dotted paths and YAML values: ``output_dir=/tmp/run``, ``stages.0.max_steps=5``,
``data.batch_size=4``, ``model.encoder.hidden_dims=[16,16]``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

BUNDLED_SOURCE = "bundled"  # data source name of the structures shipped with the package (quickstart)
MIXED_PRECISION = (None, "no", "fp16", "bf16")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
OPTIMIZERS = ("adam", "adamw")
LEVEL_CROP = {"residue": 150, "atom": 100}  # the paper's random crop lengths


class ConfigError(ValueError):
    """A run configuration mistake; the message starts with the dotted key it concerns."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


@dataclass
class ModelConfig:
    """The pre-training model.

    encoder: keyword arguments of the encoder's config class plus its ``model_type`` (``gearnet``, ``gvp``,
        ``esm_gearnet``); e.g. ``{model_type: gearnet, level: residue}`` is the paper's residue GearNet-Edge.
    siamdiff: `SiamDiffConfig` arguments shared by all stages (``use_mutual_information: false`` = DiffPreT).
    init_from: folder or Hub id of a `SiamDiffForPreTraining` to start from instead of random weights.
    encoder_from: folder or Hub id of an encoder whose weights and config initialise the encoder, e.g. an
        ESM-GearNet export holding ESM-2 weights; keys of ``encoder`` then override its config.
    sequence_model_from: ESM-GearNet only: the ESM-2 weights (Hub id such as ``facebook/esm2_t33_650M_UR50D`` or
        a folder from ``siamdiff-hf convert-fair-esm``) under a new GearNet (`EsmGearNetModel.from_esm_pretrained`).
    """

    encoder: dict = field(default_factory=lambda: {"model_type": "gearnet", "level": "residue"})
    siamdiff: dict = field(default_factory=dict)
    init_from: str | None = None
    encoder_from: str | None = None
    sequence_model_from: str | None = None


@dataclass
class DataConfig:
    """The structure stream (`load_afdb`) and the batches made from it.

    sources: paths, globs, directories, URLs, Parquet shards, AFDB tars, Foldcomp databases (see `load_afdb`);
        ``bundled`` is the handful of PDB chains shipped with the package.
    crop_length: random contiguous crop in residues; None takes the paper's (150 residue, 100 atom level).
    shuffle_buffer_size: 1 shuffles shard order only, the one setting datasets resumes exactly; larger buffers
        mix more but lose the buffer content on resume.
    processor: extra `ProteinStructureProcessor` arguments (e.g. ``include_esm_tokens: true`` for ESM-GearNet).
    """

    sources: list[str] = field(default_factory=list)
    batch_size: int = 16
    crop_length: int | None = None
    random_crop: bool = True
    min_length: int | None = None
    max_length: int | None = None
    min_plddt: float | None = None
    backend: str = "gemmi"
    files_per_shard: int = 1000
    shuffle: bool = True
    shuffle_buffer_size: int = 1
    num_workers: int = 0
    drop_last: bool = False
    processor: dict = field(default_factory=dict)


@dataclass
class StageConfig:
    """One pre-training stage; unset schedule values fall back to ``model.siamdiff`` (then SiamDiffConfig's).

    A stage after the first starts from the previous stage's whole model (encoder and heads) with a new
    optimizer and learning-rate schedule, as the official two-stage recipe.
    """

    max_steps: int = 0
    name: str | None = None
    beta_start: float | None = None
    beta_end: float | None = None
    num_timesteps: int | None = None
    gamma: float | None = None
    learning_rate: float | None = None
    warmup_steps: int | None = None


@dataclass
class OptimizerConfig:
    """Adam with the paper's learning rate and no decay by default; optional warmup and cosine/linear decay."""

    name: str = "adam"
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    lr_scheduler: str = "constant"
    warmup_steps: int = 0


@dataclass
class TrainingConfig:
    """Accelerate settings.

    mixed_precision: ``no``, ``fp16``, ``bf16``, or None to take the launcher's (``accelerate launch``/config).
    gradient_accumulation_steps: batches per optimizer step (``max_steps`` counts optimizer steps).
    max_grad_norm: clip the gradient norm to this (None: no clipping, as the paper).
    find_unused_parameters: DDP option; needed when some parameters get no gradient in a step.
    sync_batchnorm: convert BatchNorm to SyncBatchNorm when several GPUs train (ignored on CPU, see pretrain).
    cpu: force the CPU even when a GPU is present.
    """

    mixed_precision: str | None = None
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = None
    find_unused_parameters: bool = True
    sync_batchnorm: bool = True
    cpu: bool = False


@dataclass
class CheckpointConfig:
    """``save_state`` every ``every_n_steps`` optimizer steps (None: only at stage ends and on SIGTERM/SIGINT),
    keeping the newest ``keep`` checkpoints."""

    every_n_steps: int | None = 500
    keep: int = 3


@dataclass
class LoggingConfig:
    """report_to: trackers besides the always-on JSONL log: ``auto`` (tensorboard/wandb when installed and, for
    wandb, configured), ``none``, or accelerate tracker names. record_ids: write the protein ids of every batch
    to ``logs/ids_rank{r}.jsonl`` (for checking data order)."""

    log_every: int = 10
    report_to: list[str] = field(default_factory=lambda: ["auto"])
    project_name: str = "siamdiff-hf"
    record_ids: bool = False
    progress_bar: bool = True


@dataclass
class ExportConfig:
    """Model card text and the optional Hub upload of ``OUTPUT_DIR/encoder`` at the end of the run."""

    push_to_hub: str | None = None
    private: bool = False
    title: str | None = None
    description: str | None = None


@dataclass
class PretrainConfig:
    """A whole pre-training run (see the module docstring for the YAML layout)."""

    output_dir: str = ""
    seed: int = 0
    overwrite_output_dir: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stages: list[StageConfig] = field(default_factory=list)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    checkpointing: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain YAML-able data."""
        return dataclasses.asdict(self)

    def stage_name(self, index: int) -> str:
        """Return the name of stage ``index`` (``stage1``, ``stage2``... unless named)."""
        return self.stages[index].name or f"stage{index + 1}"

    @property
    def level(self) -> str:
        """Return ``residue`` or ``atom``: the level of the configured encoder."""
        return str(self.model.siamdiff.get("level") or self.model.encoder.get("level") or _default_level(self))

    @property
    def crop_length(self) -> int:
        """Return the crop length used for training (the paper's for the level unless set)."""
        return self.data.crop_length or LEVEL_CROP[self.level]


def _default_level(config: PretrainConfig) -> str:
    from transformers import AutoConfig

    try:
        kwargs = {k: v for k, v in config.model.encoder.items() if k != "model_type"}
        return getattr(AutoConfig.for_model(config.model.encoder["model_type"], **kwargs), "level", "residue")
    except Exception:
        return "residue"


# --------------------------------------------------------------------------------------------------------------
# Loading, overrides and validation
# --------------------------------------------------------------------------------------------------------------
def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                check_sources: bool = True) -> PretrainConfig:  # fmt: skip
    """Return the validated config of a YAML file (or of overrides alone) after ``key=value`` overrides.

    Raises:
        ConfigError: unknown key, wrong type, bad value or missing data source; the message names the key.
    """
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as error:
            raise ConfigError("", f"cannot read config file {path}: {error}") from error
        except yaml.YAMLError as error:
            raise ConfigError("", f"{path} is not valid YAML: {error}") from error
        if not isinstance(raw, dict):
            raise ConfigError("", f"{path} must hold a mapping of keys, got {type(raw).__name__}")
    for override in overrides:
        apply_override(raw, override)
    config = _build(PretrainConfig, raw, "")
    validate(config, check_sources=check_sources)
    return config


def apply_override(raw: dict, override: str) -> None:
    """Set ``a.b.0.c=value`` in the raw YAML mapping (value parsed as YAML, e.g. ``[16,16]``, ``1.0e-4``)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(override, "overrides are written key=value (e.g. data.batch_size=4)")
    value = yaml.safe_load(text) if text.strip() else None
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(where, f"no list item {part} (the list has {len(node)} items)")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if not isinstance(node.get(part), (dict, list)):
                    node[part] = {}
                node = node[part]
        else:
            raise ConfigError(where, f"cannot set a key inside a {type(node).__name__}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Return dataclass ``cls`` built from ``raw``, checking keys and types recursively."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(prefix, f"expected a mapping of keys, got {type(raw).__name__} {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(name, f"unknown key (known keys here: {', '.join(fields)})")
        kwargs[key] = _coerce(hints[key], value, name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    """Return ``value`` checked against the type ``hint`` (nested dataclasses, lists, optionals, scalars)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(options[0], value, name) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, name)
    if value is None and hint in (bool, int, float, str):
        raise ConfigError(name, "missing: this key takes a value, not null")
    if origin is list:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and args and args[0] is str:
            value = [value]  # `sources: path` means a one-item list
        if not isinstance(value, list):
            raise ConfigError(name, f"expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(args[0], item, f"{name}.{i}") for i, item in enumerate(value)] if args else value
    if hint is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(name, f"expected a mapping, got {type(value).__name__} {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(name, f"expected true or false, got {type(value).__name__} {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, f"expected an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is float:
        # PyYAML reads `1e-4` (no dot) as a string: accept numbers written that way.
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(name, f"expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is str:
        if value is False and name.endswith("mixed_precision"):
            return "no"  # YAML 1.1 reads an unquoted `no` as false
        if not isinstance(value, str):
            raise ConfigError(name, f"expected a string, got {type(value).__name__} {value!r}")
        return value
    return value


def validate(config: PretrainConfig, *, check_sources: bool = True) -> None:
    """Check values and cross-field rules; raise `ConfigError` naming the first bad key."""
    if not config.output_dir:
        raise ConfigError("output_dir", "missing: set the folder that receives the run (output_dir=PATH)")
    _check_encoder(config.model.encoder)
    _check_signature_keys(config.model.siamdiff, "model.siamdiff", _siamdiff_parameters())
    if config.model.sequence_model_from and config.model.encoder.get("model_type") != "esm_gearnet":
        raise ConfigError("model.sequence_model_from", "only for model.encoder.model_type esm_gearnet")
    if config.model.sequence_model_from and config.model.encoder_from:
        raise ConfigError("model.sequence_model_from", "give either encoder_from or sequence_model_from")
    if "encoder_config" in config.model.siamdiff:
        raise ConfigError("model.siamdiff.encoder_config", "set the encoder under model.encoder")

    data = config.data
    if not data.sources:
        raise ConfigError("data.sources", "missing: give at least one structure source (path, glob, URL, or "
                          f"'{BUNDLED_SOURCE}' for the structures shipped with the package)")  # fmt: skip
    _positive(data.batch_size, "data.batch_size")
    _positive(data.files_per_shard, "data.files_per_shard")
    _positive(data.shuffle_buffer_size, "data.shuffle_buffer_size")
    if data.crop_length is not None:
        _positive(data.crop_length, "data.crop_length")
    if data.num_workers < 0:
        raise ConfigError("data.num_workers", f"must be >= 0, got {data.num_workers}")
    if data.backend not in ("gemmi", "biopython"):
        raise ConfigError("data.backend", f"must be 'gemmi' or 'biopython', got {data.backend!r}")
    _check_signature_keys(data.processor, "data.processor", _processor_parameters())
    if check_sources:
        for i, source in enumerate(data.sources):
            _check_source(source, f"data.sources.{i}", data.files_per_shard)

    if not config.stages:
        raise ConfigError("stages", "missing: give at least one stage with its max_steps")
    for i, stage in enumerate(config.stages):
        _positive(stage.max_steps, f"stages.{i}.max_steps")
        if stage.gamma is not None and not 0 <= stage.gamma <= 1:
            raise ConfigError(f"stages.{i}.gamma", f"must lie in [0, 1], got {stage.gamma}")
        if stage.num_timesteps is not None:
            _positive(stage.num_timesteps, f"stages.{i}.num_timesteps")
    names = [config.stage_name(i) for i in range(len(config.stages))]
    if len(set(names)) != len(names):
        raise ConfigError("stages", f"stage names must be unique, got {names}")

    opt = config.optimizer
    if opt.name not in OPTIMIZERS:
        raise ConfigError("optimizer.name", f"must be one of {OPTIMIZERS}, got {opt.name!r}")
    if opt.lr_scheduler not in LR_SCHEDULERS:
        raise ConfigError("optimizer.lr_scheduler", f"must be one of {LR_SCHEDULERS}, got {opt.lr_scheduler!r}")
    if len(opt.betas) != 2:
        raise ConfigError("optimizer.betas", f"expected two numbers, got {opt.betas}")
    if opt.learning_rate <= 0:
        raise ConfigError("optimizer.learning_rate", f"must be positive, got {opt.learning_rate}")

    train = config.training
    if train.mixed_precision not in MIXED_PRECISION:
        raise ConfigError("training.mixed_precision", f"must be no, fp16, bf16 or null, got {train.mixed_precision!r}")
    _positive(train.gradient_accumulation_steps, "training.gradient_accumulation_steps")
    if train.max_grad_norm is not None and train.max_grad_norm <= 0:
        raise ConfigError("training.max_grad_norm", f"must be positive or null, got {train.max_grad_norm}")
    if config.checkpointing.every_n_steps is not None:
        _positive(config.checkpointing.every_n_steps, "checkpointing.every_n_steps")
    _positive(config.checkpointing.keep, "checkpointing.keep")
    _positive(config.logging.log_every, "logging.log_every")
    if config.level not in LEVEL_CROP:
        raise ConfigError("model.encoder.level", f"must be 'residue' or 'atom', got {config.level!r}")


def _positive(value: int, key: str) -> None:
    if value <= 0:
        raise ConfigError(key, f"must be a positive integer, got {value}")


def _check_encoder(encoder: dict) -> None:
    """Check the encoder's model_type is registered and every key is an argument of its config class."""
    from transformers import CONFIG_MAPPING

    import siamdiff_hf  # noqa: F401  (registers the encoders)

    model_type = encoder.get("model_type")
    if not model_type:
        raise ConfigError("model.encoder.model_type", "missing (e.g. gearnet, gvp, esm_gearnet)")
    if model_type not in CONFIG_MAPPING:
        known = sorted(k for k in ("gearnet", "gvp", "esm_gearnet") if k in CONFIG_MAPPING)
        raise ConfigError("model.encoder.model_type", f"unknown encoder {model_type!r} (installed: {known})")
    config_class = CONFIG_MAPPING[model_type]
    _check_signature_keys({k: v for k, v in encoder.items() if k != "model_type"}, "model.encoder",
                          _init_parameters(config_class))  # fmt: skip
    try:
        config_class(**{k: v for k, v in encoder.items() if k != "model_type"})
    except (TypeError, ValueError) as error:
        raise ConfigError("model.encoder", f"invalid {model_type} settings: {error}") from error


def _init_parameters(cls: type) -> set[str] | None:
    """Return the named keyword arguments of ``cls.__init__`` (None if it takes only ``**kwargs``)."""
    parameters = inspect.signature(cls.__init__).parameters
    named = {n for n, p in parameters.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return named or None


def _siamdiff_parameters() -> set[str] | None:
    from siamdiff_hf.models.siamdiff import SiamDiffConfig

    return _init_parameters(SiamDiffConfig)


def _processor_parameters() -> set[str] | None:
    from siamdiff_hf.protein.processor import ProteinStructureProcessor

    return _init_parameters(ProteinStructureProcessor)


def _check_signature_keys(values: dict, prefix: str, known: set[str] | None) -> None:
    if known is None:
        return
    for key in values:
        if key not in known:
            raise ConfigError(f"{prefix}.{key}", f"unknown key (known keys here: {', '.join(sorted(known))})")


def bundled_structures() -> Path:
    """Return the folder of the PDB chains shipped with the package (the ``bundled`` data source)."""
    return Path(str(resources.files("siamdiff_hf") / "resources" / "structures"))


def resolve_source(source: str) -> str:
    """Return the real location of a data source (``bundled`` -> the package's structure folder)."""
    return str(bundled_structures()) if source in (BUNDLED_SOURCE, "siamdiff_hf:structures") else source


def _check_source(source: str, key: str, files_per_shard: int) -> None:
    """Fail fast on a local source that does not exist or holds no structures (URLs are checked on use)."""
    from siamdiff_hf.data.sources import SourceError, is_url, resolve_sources

    location = resolve_source(source)
    if is_url(location):
        return
    try:
        resolve_sources([location], files_per_shard=files_per_shard, check=True)
    except SourceError as error:
        raise ConfigError(key, str(error)) from error
