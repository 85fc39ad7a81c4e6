"""Pre-training run configuration: YAML in, validated dataclasses out, with errors that name the offending key.

A run config has these sections (every key is optional except ``output_dir``, ``data.sources`` and
``stages[*].max_steps``; see the dataclasses below for defaults)::

    output_dir: outputs/quickstart      # receives everything: checkpoints, logs, stage exports, OUTPUT_DIR/encoder
    seed: 0
    model:       {encoder: {model_type: gearnet, level: residue, ...}, objective: siamdiff, objective_settings: {...},
                  init_from, encoder_from}      # `siamdiff: {...}` = objective_settings of the SiamDiff objective
    data:        {sources: [...], batch_size, crop_length, random_crop, min_length, max_length, min_plddt, ...}
    stages:      [{name, max_steps, beta_start, beta_end, num_timesteps, gamma, learning_rate, warmup_steps}, ...]
    optimizer:   {name: adam, learning_rate: 1.0e-4, weight_decay, betas, eps, lr_scheduler, warmup_steps}
    training:    {mixed_precision: auto, deterministic, gradient_accumulation_steps, max_grad_norm, ...}
    checkpointing: {every_n_steps, keep}
    logging:     {log_every, report_to, project_name, record_ids, progress_bar}
    export:      {push_to_hub, private, title, description}

``key=value`` overrides use dotted paths and YAML values: ``output_dir=/tmp/run``, ``stages.0.max_steps=5``,
``data.batch_size=4``, ``model.encoder.hidden_dims=[16,16]``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .config_io import (
    ConfigError,
    apply_override,  # noqa: F401  (re-exported: `from siamdiff_hf.training.config import apply_override`)
    build_dataclass,
    check_encoder,
    check_keys,
    check_processor,
    init_parameters,
    positive,
    read_config_mapping,
)

BUNDLED_SOURCE = "bundled"  # data source name of the structures shipped with the package (quickstart)
MIXED_PRECISION = (None, "auto", "no", "fp16", "bf16")
SCHEDULE_KEYS = ("beta_start", "beta_end", "num_timesteps", "gamma")  # per-stage objective settings
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
OPTIMIZERS = ("adam", "adamw")
LEVEL_CROP = {"residue": 150, "atom": 100}  # the paper's random crop lengths


@dataclass
class ModelConfig:
    """The pre-training model.

    encoder: keyword arguments of the encoder's config class plus its ``model_type`` (``gearnet``, ``gvp``,
        ``esm_gearnet``); e.g. ``{model_type: gearnet, level: residue}`` is the paper's residue GearNet-Edge.
    objective: the pre-training objective: any ``model_type`` registered with ``AutoModelForPreTraining`` whose
        config nests an ``encoder_config`` (``siamdiff``, the default; the baselines of `siamdiff_hf.models`).
    objective_settings: arguments of the objective's config class shared by all stages.
    siamdiff: the same as ``objective_settings`` for the SiamDiff objective (``use_mutual_information: false`` =
        DiffPreT); kept so that existing configs run unchanged.
    init_from: folder or Hub id of a pre-training model of the objective to start from instead of random weights.
    encoder_from: folder or Hub id of an encoder whose weights and config initialise the encoder, e.g. an
        ESM-GearNet export holding ESM-2 weights; keys of ``encoder`` then override its config.
    sequence_model_from: ESM-GearNet only: the ESM-2 weights (Hub id such as ``facebook/esm2_t33_650M_UR50D`` or
        a folder from ``siamdiff-hf convert-fair-esm``) under a new GearNet (`EsmGearNetModel.from_esm_pretrained`).
    """

    encoder: dict = field(default_factory=lambda: {"model_type": "gearnet", "level": "residue"})
    objective: str = "siamdiff"
    objective_settings: dict = field(default_factory=dict)
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
    prefer: ``pdb`` or ``cif``, the file read where an entry has both (AlphaFold DB tars); AFDB models give the
        same arrays from either, and the PDB file is the faster to read.
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
    prefer: str = "pdb"
    files_per_shard: int = 1000
    shuffle: bool = True
    shuffle_buffer_size: int = 1
    num_workers: int = 0
    prefetch_factor: int | None = None  # batches each worker parses ahead of the step (torch's default: 2)
    drop_last: bool = False
    processor: dict = field(default_factory=dict)


@dataclass
class StageConfig:
    """One pre-training stage; unset schedule values fall back to the objective settings (then its config's).
    The schedule keys (``beta_start``, ``beta_end``, ``num_timesteps``, ``gamma``) exist only for objectives whose
    config has them (SiamDiff); ``learning_rate`` and ``warmup_steps`` for every objective.

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

    mixed_precision: ``auto`` (default: bf16 on CUDA and on CPUs with native BF16 (AVX512-BF16 or AMX), else
        fp32; bf16 autocast on other CPUs runs many times slower), ``no``, ``fp16``, ``bf16``, or None to take the
        launcher's (``accelerate launch``/config).
    deterministic: make runs bit-reproducible: one CPU thread (multi-threaded CPU reductions are not), and on
        CUDA torch's deterministic algorithms, deterministic cuDNN and a fixed cuBLAS workspace. With it (or
        simply one thread on the CPU) a resumed run equals an uninterrupted one exactly.
    gradient_accumulation_steps: batches per optimizer step (``max_steps`` counts optimizer steps).
    max_grad_norm: clip the gradient norm to this (None: no clipping, as the paper).
    find_unused_parameters: DDP option; needed when some parameters get no gradient in a step.
    sync_batchnorm: convert BatchNorm to SyncBatchNorm when several GPUs train (ignored on CPU, see pretrain).
    cpu: force the CPU even when a GPU is present.
    reuse_freed_memory: on CPU runs, make malloc keep freed blocks for the next step instead of returning them to
        the kernel (`training/memory.py`: the step's large tensors are otherwise page-faulted and zeroed again
        every step). Same numerics; less system time, more peak memory (measured there). No effect on GPU runs.
    """

    mixed_precision: str | None = "auto"
    deterministic: bool = False
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = None
    find_unused_parameters: bool = True
    sync_batchnorm: bool = True
    cpu: bool = False
    reuse_freed_memory: bool = False


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

    def global_step(self, index: int, step: int) -> int:
        """Return the optimizer step counted over all stages of step ``step`` of stage ``index``."""
        return sum(s.max_steps for s in self.stages[:index]) + step

    @property
    def objective_settings(self) -> dict[str, Any]:
        """Return the objective's settings: ``model.objective_settings`` with the ``model.siamdiff`` alias."""
        return {**self.model.siamdiff, **self.model.objective_settings}

    @property
    def level(self) -> str:
        """Return ``residue`` or ``atom``: the level of the configured encoder."""
        return str(self.objective_settings.get("level") or self.model.encoder.get("level") or _default_level(self))

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
# Loading and validation
# --------------------------------------------------------------------------------------------------------------
def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                check_sources: bool = True) -> PretrainConfig:  # fmt: skip
    """Return the validated config of a YAML file (or of overrides alone) after ``key=value`` overrides.

    Raises:
        ConfigError: unknown key, wrong type, bad value or missing data source; the message names the key.
    """
    config = build_dataclass(PretrainConfig, read_config_mapping(path, overrides))
    validate(config, check_sources=check_sources)
    return config


def validate(config: PretrainConfig, *, check_sources: bool = True) -> None:
    """Check values and cross-field rules; raise `ConfigError` naming the first bad key."""
    if not config.output_dir:
        raise ConfigError("output_dir", "missing: set the folder that receives the run (output_dir=PATH)")
    check_encoder(config.model.encoder)
    _check_objective(config)
    if config.model.sequence_model_from and config.model.encoder.get("model_type") != "esm_gearnet":
        raise ConfigError("model.sequence_model_from", "only for model.encoder.model_type esm_gearnet")
    if config.model.sequence_model_from and config.model.encoder_from:
        raise ConfigError("model.sequence_model_from", "give either encoder_from or sequence_model_from")

    data = config.data
    if not data.sources:
        raise ConfigError("data.sources", "missing: give at least one structure source (path, glob, URL, or "
                          f"'{BUNDLED_SOURCE}' for the structures shipped with the package)")  # fmt: skip
    positive(data.batch_size, "data.batch_size")
    positive(data.files_per_shard, "data.files_per_shard")
    positive(data.shuffle_buffer_size, "data.shuffle_buffer_size")
    if data.crop_length is not None:
        positive(data.crop_length, "data.crop_length")
    if data.num_workers < 0:
        raise ConfigError("data.num_workers", f"must be >= 0, got {data.num_workers}")
    if data.prefetch_factor is not None:
        positive(data.prefetch_factor, "data.prefetch_factor")
        if data.num_workers == 0:
            raise ConfigError("data.prefetch_factor", "needs data.num_workers > 0 (the main process parses in step)")
    if data.backend not in ("gemmi", "biopython"):
        raise ConfigError("data.backend", f"must be 'gemmi' or 'biopython', got {data.backend!r}")
    if data.prefer not in ("pdb", "cif"):
        raise ConfigError("data.prefer", f"must be 'pdb' or 'cif', got {data.prefer!r}")
    check_processor(data.processor)
    if check_sources:
        for i, source in enumerate(data.sources):
            _check_source(source, f"data.sources.{i}", data.files_per_shard)

    if not config.stages:
        raise ConfigError("stages", "missing: give at least one stage with its max_steps")
    for i, stage in enumerate(config.stages):
        positive(stage.max_steps, f"stages.{i}.max_steps")
        if stage.gamma is not None and not 0 <= stage.gamma <= 1:
            raise ConfigError(f"stages.{i}.gamma", f"must lie in [0, 1], got {stage.gamma}")
        if stage.num_timesteps is not None:
            positive(stage.num_timesteps, f"stages.{i}.num_timesteps")
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
        raise ConfigError("training.mixed_precision",
                          f"must be auto, no, fp16, bf16 or null, got {train.mixed_precision!r}")  # fmt: skip
    positive(train.gradient_accumulation_steps, "training.gradient_accumulation_steps")
    if train.max_grad_norm is not None and train.max_grad_norm <= 0:
        raise ConfigError("training.max_grad_norm", f"must be positive or null, got {train.max_grad_norm}")
    if config.checkpointing.every_n_steps is not None:
        positive(config.checkpointing.every_n_steps, "checkpointing.every_n_steps")
    positive(config.checkpointing.keep, "checkpointing.keep")
    positive(config.logging.log_every, "logging.log_every")
    if config.level not in LEVEL_CROP:
        raise ConfigError("model.encoder.level", f"must be 'residue' or 'atom', got {config.level!r}")


def _check_objective(config: PretrainConfig) -> None:
    """Check ``model.objective`` is a registered pre-training model type, its settings are arguments of its
    config class, and stage schedule keys exist for it."""
    from transformers import CONFIG_MAPPING

    import siamdiff_hf  # noqa: F401  (registers the objectives)

    model = config.model
    known = registered_objectives()
    if model.objective not in CONFIG_MAPPING or model.objective not in known:
        raise ConfigError("model.objective", f"unknown pre-training objective {model.objective!r} (registered with "
                          f"AutoModelForPreTraining: {known})")  # fmt: skip
    if model.siamdiff and model.objective != "siamdiff":
        raise ConfigError("model.siamdiff", f"SiamDiff settings with model.objective {model.objective}: put the "
                          "objective's settings under model.objective_settings")  # fmt: skip
    for key, value in model.siamdiff.items():  # the alias and the generic key may both be given, if they agree
        if key in model.objective_settings and model.objective_settings[key] != value:
            raise ConfigError(f"model.siamdiff.{key}", f"{value!r} disagrees with model.objective_settings.{key}")
    prefix = "model.siamdiff" if model.siamdiff and not model.objective_settings else "model.objective_settings"
    settings = config.objective_settings
    if "encoder_config" in settings:
        raise ConfigError(f"{prefix}.encoder_config", "set the encoder under model.encoder")
    parameters = init_parameters(CONFIG_MAPPING[model.objective])
    check_keys(settings, prefix, parameters)
    for i, stage in enumerate(config.stages):
        for key in SCHEDULE_KEYS:
            if getattr(stage, key) is not None and parameters is not None and key not in parameters:
                raise ConfigError(f"stages.{i}.{key}", f"the {model.objective} objective has no {key} setting "
                                  "(stage schedule keys apply to objectives that have them: siamdiff)")  # fmt: skip


def registered_objectives() -> list[str]:
    """Return the model types registered with `AutoModelForPreTraining` whose config nests an encoder config."""
    from transformers import MODEL_FOR_PRETRAINING_MAPPING

    return sorted(c.model_type for c in MODEL_FOR_PRETRAINING_MAPPING._extra_content
                  if "encoder_config" in (getattr(c, "sub_configs", None) or {}))  # fmt: skip


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
