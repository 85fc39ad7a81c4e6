"""Fine-tuning run configuration: YAML in, validated dataclasses out, errors naming the offending key.

A fine-tuning config has these sections (see the dataclasses for defaults)::

    output_dir: outputs/finetune/ec      # seed{s}/ (checkpoints, log), model/ (best model + card), metrics.json
    seeds: [0, 1, 2]                     # one run per seed; metrics.json holds each and their mean and std
    mixed_precision: auto                # auto (bf16 on CUDA / CPUs with native BF16), no, fp16, bf16
    deterministic: false                 # bit-reproducible runs (one CPU thread, deterministic CUDA kernels)
    reuse_freed_memory: false            # CPU runs: malloc keeps freed blocks for the next step (training/memory.py)
    compare_random_init: false           # also run every seed from a randomly initialised encoder
    model: {encoder: FOLDER_OR_HUB_ID, freeze_encoder, cache_embeddings, head: {num_mlp_layer, ...}}
    data:  {task: ec, root: PATH, train_split, valid_split, test_split, options: {...}, processor: {...},
            global_batch_size: 8}
    training: {...}                      # transformers.TrainingArguments fields (the protocol's defaults below)
    export: {push_to_hub, private, title, description}

``training`` defaults follow the official protocol (SiamDiff `script/run_4gpu.py`, `config/*/*.yaml`): Adam at
1e-4 (AdamW with weight decay 0 is Adam), ReduceLROnPlateau (factor 0.6, patience 5) stepped on the validation
metric, evaluation of valid and test every epoch, the best validation epoch kept and reported.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .config import ExportConfig
from .config_io import ConfigError, build_dataclass, check_keys, check_processor, positive, read_config_mapping

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
LOCAL_TASKS = ("residue-identity",)  # built from structure files by the package (the quickstart's task)
# TrainingArguments the run sets itself (per seed, per task): giving them under `training:` is a mistake.
MANAGED_ARGUMENTS = {
    "output_dir": "set output_dir at the top level",
    "seed": "set seeds at the top level",
    "metric_for_best_model": "the task's official metric selects the best epoch (data.task)",
    "greater_is_better": "follows the task's official metric",
    "load_best_model_at_end": "the best validation epoch is always kept",
    "bf16": "set mixed_precision at the top level",
    "fp16": "set mixed_precision at the top level",
    "full_determinism": "set deterministic at the top level",
    "remove_unused_columns": "the collator picks the columns it needs",
}


@dataclass
class FinetuneModelConfig:
    """The model: a head (chosen by the task's level) on a pre-trained encoder.

    encoder: folder or Hub id of an encoder (`siamdiff-hf pretrain`'s ``OUTPUT_DIR/encoder``, a converted one).
    random_init: same architecture with random weights (the "no pre-training" baseline).
    freeze_encoder: train only the head; the encoder stays in eval mode.
    cache_embeddings: with freeze_encoder, compute the encoder's outputs once per example and train the head on
        them (a linear/MLP probe in minutes); the saved model is the same head model.
    head: further head config arguments: ``num_mlp_layer`` (3, official), ``classifier_dropout``,
        ``residue_pooling``, ``pair_pooling``, ESM-GearNet's ``esm_learning_rate_ratio`` (0.1, official).
    """

    encoder: str = ""
    random_init: bool = False
    freeze_encoder: bool = False
    cache_embeddings: bool = False
    head: dict = field(default_factory=dict)


@dataclass
class FinetuneDataConfig:
    """The task's rows and how they are batched.

    task: ``ec``, ``go-bp``, ``go-mf``, ``go-cc``, ``psr``, ``msp``, ``pip``, ``res`` (`load_downstream`), or
        ``residue-identity`` (the quickstart's task, built from ``structures``).
    root: the task's files (see `load_downstream`).
    options: `load_downstream` options (e.g. ``test_cutoff: 0.95``, ``max_length: 400``) or, for
        residue-identity, `build_residue_identity` options.
    structures: residue-identity only: structure files, folders or ``bundled``.
    processor: `ProteinStructureProcessor` arguments (e.g. ESM-GearNet: ``crop_length: 550``,
        ``random_crop: false``, ``include_esm_tokens: true``).
    global_batch_size: proteins per optimizer step over all processes (the paper's: per-device batch x 4 GPUs);
        gradient accumulation is computed from it, the per-device batch and the number of processes, so that
        other device counts train with the same batch. None: TrainingArguments' own.
    """

    task: str = ""
    root: str | None = None
    train_split: str = "train"
    valid_split: str = "valid"
    test_split: str = "test"
    options: dict = field(default_factory=dict)
    structures: list[str] = field(default_factory=lambda: ["bundled"])
    processor: dict = field(default_factory=dict)
    global_batch_size: int | None = None


@dataclass
class FinetuneExportConfig(ExportConfig):
    """Model card text and the optional Hub upload of ``OUTPUT_DIR/model``: the fields of `ExportConfig`."""


@dataclass
class FinetuneConfig:
    """A whole fine-tuning run (see the module docstring for the YAML layout)."""

    output_dir: str = ""
    seeds: list[int] = field(default_factory=lambda: [0])
    mixed_precision: str = "auto"
    deterministic: bool = False
    reuse_freed_memory: bool = False
    compare_random_init: bool = False
    overwrite_output_dir: bool = False
    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig)
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    training: dict = field(default_factory=dict)
    export: FinetuneExportConfig = field(default_factory=FinetuneExportConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain YAML-able data."""
        return dataclasses.asdict(self)


def load_finetune_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                         check_paths: bool = True) -> FinetuneConfig:  # fmt: skip
    """Return the validated fine-tuning config of a YAML file after ``key=value`` overrides.

    Args:
        check_paths: also check that the encoder folder and the task's files exist (off for ``--dry-run`` of a
            paper config on a machine without its data).

    Raises:
        ConfigError: unknown key (``training`` keys must be TrainingArguments fields), wrong type, bad value.
    """
    config = build_dataclass(FinetuneConfig, read_config_mapping(path, overrides))
    validate_finetune(config, check_paths=check_paths)
    return config


def task_info(task: str) -> Any:
    """Return the task's table entry (`siamdiff_hf.data.downstream.TASKS`, or the quickstart's task)."""
    from ..data.downstream import TASKS

    if task in LOCAL_TASKS:
        from .residue_identity import TASK_INFO

        return TASK_INFO
    if task not in TASKS:
        raise ConfigError("data.task", f"unknown task {task!r} (choose from {sorted([*TASKS, *LOCAL_TASKS])})")
    return TASKS[task]


def validate_finetune(config: FinetuneConfig, *, check_paths: bool = True) -> None:
    """Check values and cross-field rules; raise `ConfigError` naming the first bad key."""
    if not config.output_dir:
        raise ConfigError("output_dir", "missing: set the folder that receives the run (output_dir=PATH)")
    if not config.seeds:
        raise ConfigError("seeds", "missing: give at least one seed (e.g. [0, 1, 2])")
    if len(set(config.seeds)) != len(config.seeds):
        raise ConfigError("seeds", f"seeds must be distinct, got {config.seeds}")
    if config.mixed_precision not in MIXED_PRECISION:
        raise ConfigError("mixed_precision", f"must be one of {MIXED_PRECISION}, got {config.mixed_precision!r}")
    model, data = config.model, config.data
    if not model.encoder:
        raise ConfigError("model.encoder", "missing: the encoder folder or Hub id to fine-tune")
    if model.cache_embeddings and not model.freeze_encoder:
        raise ConfigError("model.cache_embeddings", "needs model.freeze_encoder: true (a trained encoder changes)")
    if not data.task:
        raise ConfigError("data.task", "missing (ec, go-bp, go-mf, go-cc, psr, msp, pip, res, residue-identity)")
    task_info(data.task)
    if data.task not in LOCAL_TASKS and not data.root:
        raise ConfigError("data.root", f"missing: the folder of the {data.task} files (see load_downstream)")
    if data.global_batch_size is not None:
        positive(data.global_batch_size, "data.global_batch_size")
    _check_options(data.task, data.options)
    check_processor(data.processor)
    _check_head(model.head)
    check_training_arguments(config)
    if check_paths:
        _check_paths(config)


def _check_options(task: str, options: dict) -> None:
    """Check ``data.options`` are options of the task's loader (`load_downstream`, or `build_residue_identity`)."""
    if task in LOCAL_TASKS:
        import inspect

        from .residue_identity import build_residue_identity

        known = set(inspect.signature(build_residue_identity).parameters) - {"structures"}
    else:
        from ..data.downstream import _COMMON_OPTIONS, TASK_OPTIONS

        known = {*_COMMON_OPTIONS, *TASK_OPTIONS[task]}
    check_keys(options, "data.options", known)


def _check_head(head: dict) -> None:
    from ..models.configuration_heads import HEAD_DEFAULTS

    for key in ("num_labels", "problem_type", "freeze_encoder"):
        if key in head:
            where = "model.freeze_encoder" if key == "freeze_encoder" else "the task table (data.task)"
            raise ConfigError(f"model.head.{key}", f"set by {where}")
    check_keys(head, "model.head", {*HEAD_DEFAULTS, "esm_learning_rate_ratio"} - {"freeze_encoder"})
    if "num_mlp_layer" in head and (isinstance(head["num_mlp_layer"], bool) or not isinstance(head["num_mlp_layer"],
                                                                                              int)):  # fmt: skip
        raise ConfigError("model.head.num_mlp_layer", f"expected an integer, got {head['num_mlp_layer']!r}")


def check_training_arguments(config: FinetuneConfig) -> None:
    """Check every ``training`` key is a `TrainingArguments` field the run does not set itself, and that the
    arguments construct (their own checks, e.g. strategies and values)."""
    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    for key in config.training:
        if key in MANAGED_ARGUMENTS:
            raise ConfigError(f"training.{key}", MANAGED_ARGUMENTS[key])
        if key not in known:
            raise ConfigError(f"training.{key}", "unknown key: not a transformers.TrainingArguments field")
    if config.data.global_batch_size is not None and "gradient_accumulation_steps" in config.training:
        raise ConfigError("training.gradient_accumulation_steps", "computed from data.global_batch_size: set one")
    from .finetuning import training_arguments

    try:
        training_arguments(config, config.seeds[0], os.path.join(config.output_dir, "dry-run"), num_processes=1)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError("training", f"invalid TrainingArguments: {error}") from error


def _check_paths(config: FinetuneConfig) -> None:
    """Fail fast on a local encoder folder or data root that does not exist (Hub ids are checked on use)."""
    from pathlib import Path

    encoder = Path(config.model.encoder).expanduser()
    if encoder.exists():
        if not (encoder / "config.json").exists():
            raise ConfigError("model.encoder", f"{encoder} holds no config.json: not a saved encoder")
    elif not re.fullmatch(r"[\w-]+/[\w.-]+", config.model.encoder):  # not a Hub id either
        raise ConfigError("model.encoder", f"no such encoder folder: {encoder} (the fine-tuning quickstart uses the "
                          "pre-training quickstart's: siamdiff-hf pretrain configs/quickstart.yaml)")  # fmt: skip
    if config.data.root and not Path(config.data.root).expanduser().exists():
        raise ConfigError("data.root", f"no such file or folder: {config.data.root}")
