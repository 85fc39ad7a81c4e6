"""Fine-tuning with transformers' Trainer, following the official downstream protocol of SiamDiff.

The protocol (SiamDiff `script/run_4gpu.py::train_and_validate`, `config/res/*.yaml`, `config/atom/*.yaml`): the
whole encoder is fine-tuned with a 3-layer MLP head, Adam at 1e-4, ReduceLROnPlateau (factor 0.6, patience 5)
stepped on the validation metric; valid and test are evaluated every epoch (every ``ceil(epochs / 50)`` epochs,
as the official loop: GO's 200 epochs every 4); the epoch with the best validation metric (the task's official
one) is kept and its test metrics are reported. Several seeds give mean and standard deviation, as the paper
reports. Here Trainer does the loop: `training_arguments` turns the protocol into
`TrainingArguments` (``eval_strategy=epoch``, ``metric_for_best_model=valid_<metric>``,
``load_best_model_at_end``, ``lr_scheduler_type=reduce_lr_on_plateau``), `FinetuneTrainer` adds what a structure
task needs (the head's parameter groups, per-split metrics, per-example residue outputs for exact distributed
evaluation).

Output of ``finetune(config)`` in ``config.output_dir``::

    config.yaml                  the resolved config
    metrics.json                 per seed: best epoch, valid and test metrics; mean and std over seeds
    seed{s}/checkpoints/         Trainer checkpoints (``--resume`` continues from the newest)
    seed{s}/log.jsonl            Trainer's log (train loss, learning rate, valid_*/test_* metrics per evaluation)
    seed{s}/model/               that seed's best model
    model/                       the best model of the seed with the best validation metric, with its model card
    random_init/seed{s}/...      the same runs from a randomly initialised encoder (``compare_random_init``)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from transformers import Trainer, TrainerCallback, TrainingArguments

from ..protein.constants import IGNORE_INDEX
from .config_io import ConfigError
from .finetune_config import FinetuneConfig, task_info
from .memory import reuse_freed_memory
from .precision import make_deterministic, resolve_mixed_precision, uses_cpu

logger = logging.getLogger(__name__)

TIMING = ("_runtime", "_samples_per_second", "_steps_per_second")  # Trainer's timings: not results
PLATEAU = {"factor": 0.6, "patience": 5}  # SiamDiff `util.py` / `config/*/*.yaml` ReduceLROnPlateau
PROTOCOL_DEFAULTS = {
    "learning_rate": 1e-4,  # Adam 1e-4 (SiamDiff configs); AdamW with weight decay 0 is exactly Adam
    "weight_decay": 0.0,
    "optim": "adamw_torch",
    "lr_scheduler_type": "reduce_lr_on_plateau",
    "num_train_epochs": 50,
    "per_device_train_batch_size": 2,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "logging_strategy": "epoch",
    "save_total_limit": 2,  # the best and the newest epoch
    "report_to": "none",
    "dataloader_drop_last": False,  # every evaluation example counts
    "label_names": ["labels"],
}


# --------------------------------------------------------------------------------------------------------------
# The run: seeds (and the random-initialisation baseline), then the summary and the exported model
# --------------------------------------------------------------------------------------------------------------
def finetune(config: FinetuneConfig, *, resume: bool = False, push_to_hub: str | None = None,
             hub_api: Any = None) -> dict[str, Any]:  # fmt: skip
    """Fine-tune every seed of ``config`` and return the summary written to ``OUTPUT_DIR/metrics.json``.

    Args:
        resume: continue each seed from its newest Trainer checkpoint (a seed already finished is not rerun).
        push_to_hub: upload ``OUTPUT_DIR/model`` (with its model card) to this Hub repo at the end.
        hub_api: a `huggingface_hub.HfApi`-like object for the upload (tests pass a local stand-in).
    """
    if config.deterministic:
        make_deterministic()
    if config.reuse_freed_memory and uses_cpu(bool(config.training.get("use_cpu"))):
        reuse_freed_memory()
    output_dir = Path(config.output_dir)
    _prepare_output_dir(config, resume)
    task = task_info(config.data.task)
    splits = load_splits(config)
    if _is_main_process():
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    summary: dict[str, Any] = {"task": task.name, "metric": task.metric, "encoder": config.model.encoder}
    variants = {"finetuned": False, **({"random_init": True} if config.compare_random_init else {})}
    for variant, random_init in variants.items():
        runs = {}
        for seed in config.seeds:
            run_dir = output_dir / ("" if variant == "finetuned" else variant) / f"seed{seed}"
            runs[seed] = run_seed(config, splits, seed, run_dir, random_init=random_init, resume=resume)
        summary[variant] = {"seeds": {str(s): r for s, r in runs.items()}, **aggregate(runs)}

    if _is_main_process():
        best_seed = select_seed(summary["finetuned"]["seeds"], task)
        summary["model"] = {"folder": str(output_dir / "model"), "seed": int(best_seed)}
        (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
        export_model(config, summary, output_dir / f"seed{best_seed}" / "model", output_dir / "model")
        repo_id = push_to_hub or config.export.push_to_hub
        if repo_id:
            from ..hub import push_folder

            url = push_folder(output_dir / "model", repo_id, private=config.export.private, api=hub_api)
            print(f"pushed {output_dir / 'model'} to {repo_id}: {url}")
        print(format_summary(summary))
    return summary


def run_seed(config: FinetuneConfig, splits: dict[str, Any], seed: int, run_dir: Path, *, random_init: bool = False,
             resume: bool = False) -> dict[str, Any]:  # fmt: skip
    """Train one seed; return its best epoch and that epoch's valid and test metrics (saving its best model)."""
    from transformers import set_seed

    task = task_info(config.data.task)
    done = run_dir / "result.json"
    if resume and done.exists():
        return json.loads(done.read_text())
    set_seed(seed)  # the head's (and a random encoder's) initial weights
    model = build_model(config, random_init=random_init)
    args = training_arguments(config, seed, str(run_dir / "checkpoints"))
    processor = make_finetune_processor(config)
    metrics = {f"eval_{name}": compute_metrics_for(task, splits[name]) for name in ("valid", "test")}
    callbacks = [JSONLogCallback(run_dir / "log.jsonl")]
    interval = evaluation_interval(args.num_train_epochs)
    if interval > 1 and args.max_steps <= 0:
        callbacks.append(EvaluateEvery(interval))
    trainer_kwargs = dict(args=args, split_metrics=metrics, callbacks=callbacks)
    if config.model.cache_embeddings:  # frozen encoder: encode once, train the head alone
        probe = HeadProbe(model, task.level)
        cached = {name: cache_head_inputs(model, data, processor, args, task.level) for name, data in splits.items()}
        trainer = FinetuneTrainer(model=probe, train_dataset=cached["train"],
                                  eval_dataset={"valid": cached["valid"], "test": cached["test"]},
                                  level="probe", **trainer_kwargs)  # fmt: skip
    else:
        trainer = FinetuneTrainer(model=model, train_dataset=splits["train"],
                                  eval_dataset={"valid": splits["valid"], "test": splits["test"]},
                                  data_collator=make_collator(processor, task.level), level=task.level,
                                  **trainer_kwargs)  # fmt: skip
    checkpoint = resume and _has_checkpoint(run_dir / "checkpoints")
    trainer.train(resume_from_checkpoint=True if checkpoint else None)
    result = best_epoch_result(trainer.state.log_history, task.metric, task.greater_is_better)
    if trainer.is_world_process_zero():
        model.save_pretrained(run_dir / "model")  # the best epoch's weights (load_best_model_at_end)
        processor.save_pretrained(run_dir / "model")
        done.write_text(json.dumps(result, indent=2))
    trainer.accelerator.wait_for_everyone()
    return result


def _has_checkpoint(folder: Path) -> bool:
    return folder.is_dir() and any(p.name.startswith("checkpoint-") for p in folder.iterdir())


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _prepare_output_dir(config: FinetuneConfig, resume: bool) -> None:
    """Refuse to start over a finished or started run unless resuming or ``overwrite_output_dir`` (then clear it)."""
    output_dir = Path(config.output_dir)
    used = output_dir.is_dir() and any(output_dir.iterdir())
    if not used or resume:
        return
    if not config.overwrite_output_dir:
        raise FileExistsError(f"{output_dir} holds an earlier run: pass --resume to continue it, or "
                              "overwrite_output_dir=true to start again")  # fmt: skip
    from accelerate import PartialState

    state = PartialState()
    state.wait_for_everyone()
    if state.is_main_process:
        shutil.rmtree(output_dir)
    state.wait_for_everyone()


# --------------------------------------------------------------------------------------------------------------
# Building blocks: data, model, arguments, Trainer
# --------------------------------------------------------------------------------------------------------------
def load_splits(config: FinetuneConfig) -> dict[str, Any]:
    """Return {"train", "valid", "test"} datasets of the task (`load_downstream`, or the quickstart's task)."""
    data = config.data
    if data.task == "residue-identity":
        from .config import resolve_source
        from .residue_identity import build_residue_identity

        files: list[Path] = []
        for source in data.structures:
            location = Path(resolve_source(source))
            files += sorted(p for p in location.iterdir() if ".pdb" in p.name or ".cif" in p.name) \
                if location.is_dir() else [location]  # fmt: skip
        built = build_residue_identity(files, **data.options)
        return {"train": built["train"], "valid": built["valid"], "test": built["test"]}
    from ..data.downstream import load_downstream

    names = {"train": data.train_split, "valid": data.valid_split, "test": data.test_split}
    return {name: load_downstream(data.task, data.root, split, **data.options) for name, split in names.items()}


def make_finetune_processor(config: FinetuneConfig) -> Any:
    """Return the processor of the run: the encoder folder's, with ``data.processor`` settings on top."""
    from ..protein import ProteinStructureProcessor

    settings = {"crop_length": None, "random_crop": False, **config.data.processor}
    folder = Path(config.model.encoder)
    if (folder / "preprocessor_config.json").exists():
        return ProteinStructureProcessor.from_pretrained(folder, **settings)
    return ProteinStructureProcessor(**settings)


def make_collator(processor: Any, level: str | None) -> Any:
    """Return the collator of a task level (residue tasks: labels per residue)."""
    from ..protein.collator import ProteinDataCollator

    return ProteinDataCollator(processor=processor, label_level="residue" if level == "residue" else None)


def head_class(encoder_config: Any, level: str) -> type:
    """Return the head class of an encoder for a task level (protein / residue / pair)."""
    from transformers import MODEL_MAPPING, AutoModelForSequenceClassification, AutoModelForTokenClassification

    from .. import models

    if level == "protein":
        return AutoModelForSequenceClassification._model_mapping[type(encoder_config)]
    if level == "residue":
        return AutoModelForTokenClassification._model_mapping[type(encoder_config)]
    encoder_class = MODEL_MAPPING[type(encoder_config)]
    return getattr(models, encoder_class.__name__.removesuffix("Model") + "ForPairClassification")


def build_model(config: FinetuneConfig, *, random_init: bool = False) -> nn.Module:
    """Return the head model of the task on the configured encoder (its weights, or random ones)."""
    from transformers import AutoConfig

    import siamdiff_hf  # noqa: F401  (registers the encoders and heads)

    task = task_info(config.data.task)
    settings = dict(num_labels=task.num_labels, problem_type=task.problem_type,
                    freeze_encoder=config.model.freeze_encoder, **config.model.head)  # fmt: skip
    encoder_config = AutoConfig.from_pretrained(config.model.encoder, **settings)
    cls = head_class(encoder_config, task.level)
    if random_init:
        return cls(encoder_config)
    return cls.from_pretrained(config.model.encoder, config=encoder_config)


def training_arguments(config: FinetuneConfig, seed: int, output_dir: str, num_processes: int | None = None
                       ) -> TrainingArguments:  # fmt: skip
    """Return the `TrainingArguments` of one seed: the protocol's defaults, then ``training:``, then what the run
    sets itself (best-epoch selection on the task's metric, mixed precision, the accumulation that keeps
    ``data.global_batch_size``)."""
    task = task_info(config.data.task)
    args = {**PROTOCOL_DEFAULTS, **config.training}
    mode = "max" if task.greater_is_better else "min"
    if args["lr_scheduler_type"] == "reduce_lr_on_plateau":
        args["lr_scheduler_kwargs"] = {"mode": mode, **PLATEAU, **(config.training.get("lr_scheduler_kwargs") or {})}
    args.setdefault("per_device_eval_batch_size", args["per_device_train_batch_size"])
    if config.data.global_batch_size is not None:
        processes = num_processes or int(os.environ.get("WORLD_SIZE", "1"))
        total, per_step = config.data.global_batch_size, args["per_device_train_batch_size"] * processes
        if total % per_step and total % processes == 0 and total // processes < args["per_device_train_batch_size"]:
            args["per_device_train_batch_size"] = per_step = total // processes  # more devices than the paper's
            per_step *= processes
        if total % per_step:
            raise ConfigError("data.global_batch_size", f"{total} is not a multiple of per_device_train_batch_size "
                              f"x processes = {per_step}")  # fmt: skip
        args["gradient_accumulation_steps"] = total // per_step
    precision = resolve_mixed_precision(config.mixed_precision, cpu=uses_cpu(bool(args.get("use_cpu"))))
    return TrainingArguments(
        output_dir=output_dir, seed=seed, metric_for_best_model=f"valid_{task.metric}",
        greater_is_better=task.greater_is_better, load_best_model_at_end=True, remove_unused_columns=False,
        bf16=precision == "bf16", fp16=precision == "fp16", **args,
    )  # fmt: skip


def compute_metrics_for(task: Any, dataset: Any) -> Any:
    """Return the Trainer ``compute_metrics`` of the task on one split (PSR: with its targets for mean Spearman)."""
    from ..metrics import compute_metrics_for_task

    name = "res" if task.name == "residue-identity" else task.name
    groups = dataset["target"] if name == "psr" and "target" in dataset.column_names else None
    compute = compute_metrics_for_task(name, groups=groups)

    def with_count(prediction: Any) -> dict[str, float]:
        labels = np.asarray(prediction.label_ids)
        scored = int((labels != IGNORE_INDEX).sum()) if task.level == "residue" else int(labels.shape[0])
        return {**compute(prediction), "num_scored": scored}  # examples scored: none dropped or repeated

    return with_count


class FinetuneTrainer(Trainer):
    """Trainer with the head's optimiser groups, each split's own metrics, and residue outputs per example.

    Residue heads return one packed row per residue of a batch; evaluation gathers outputs across processes
    example by example (dropping the examples a distributed sampler repeats), so `prediction_step` returns each
    example's labelled residues as (examples, max labelled, C), padded with -100.
    """

    def __init__(self, *args: Any, split_metrics: dict[str, Any], level: str, **kwargs: Any):
        super().__init__(*args, compute_metrics=split_metrics["eval_valid"], **kwargs)
        self.split_metrics, self.level = split_metrics, level

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """Return the optimizer over the head's parameter groups (ESM-GearNet: ESM at its learning-rate ratio)."""
        if self.optimizer is None:
            model = self.model
            groups = (
                model.parameter_groups(self.args.learning_rate)
                if hasattr(model, "parameter_groups")
                else [{"params": [p for p in model.parameters() if p.requires_grad], "lr": self.args.learning_rate}]
            )
            for group in groups:
                group.setdefault("weight_decay", self.args.weight_decay)
            optimizer_class, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_class(groups, **kwargs)
        return self.optimizer

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:  # fmt: skip
        """Evaluate, with the metrics of the split being evaluated (PSR's per-target groups differ by split)."""
        if metric_key_prefix in self.split_metrics:
            self.compute_metrics = self.split_metrics[metric_key_prefix]
        if self.args.world_size > 1 and torch.distributed.is_initialized():
            # Evaluation runs the unwrapped model on every rank; without SyncBatchNorm (CPU) each rank's running
            # statistics differ, so all ranks evaluate with rank 0's (the model that is saved).
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer.data, src=0)
        return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> tuple:  # fmt: skip
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        if self.level == "residue" and logits is not None and labels is not None:
            logits, labels = labelled_rows_per_example(logits, labels, inputs["batch"])
        return loss, logits, labels


def labelled_rows_per_example(logits: torch.Tensor, labels: torch.Tensor, batch: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Return (B, T, C) logits and (B, T) labels: each example's labelled residues (T = most in one example),
    padded with -100, from packed (L, C) logits, (L,) labels and (L,) example index ``batch``."""
    keep = labels != IGNORE_INDEX
    owner = batch[keep].long()
    num_examples = int(batch.max()) + 1 if batch.numel() else 0
    counts = torch.bincount(owner, minlength=num_examples)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    order = torch.argsort(owner, stable=True)
    owner = owner[order]
    position = torch.arange(owner.numel(), device=owner.device) - (torch.cumsum(counts, 0) - counts)[owner]
    rows = logits[keep][order]
    out_logits = logits.new_full((num_examples, width, logits.shape[-1]), IGNORE_INDEX)
    out_labels = labels.new_full((num_examples, width), IGNORE_INDEX)
    out_logits[owner, position] = rows
    out_labels[owner, position] = labels[keep][order]
    return out_logits, out_labels


def evaluation_interval(num_train_epochs: float) -> int:
    """Return the epochs between evaluations of the official loop (SiamDiff `script/run_4gpu.py`, GearNet
    `script/downstream.py` `train_and_validate`: ``ceil(num_epoch / 50)``): 1 up to 50 epochs, 4 for GO's 200."""
    return max(1, math.ceil(num_train_epochs / 50))


class EvaluateEvery(TrainerCallback):
    """Evaluates (steps ReduceLROnPlateau, may select the epoch) and saves only every ``interval`` epochs and at
    the last, as the official loop does."""

    def __init__(self, interval: int):
        self.interval = interval

    def on_epoch_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> Any:
        epoch = round(state.epoch)
        if epoch % self.interval and epoch < math.ceil(args.num_train_epochs):
            control.should_evaluate = control.should_save = False
        return control


class JSONLogCallback(TrainerCallback):
    """Appends every Trainer log (train loss, learning rate, eval metrics) to a JSON-lines file (main process)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args: TrainingArguments, state: Any, control: Any, logs: dict | None = None, **kwargs: Any):
        if state.is_world_process_zero and logs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")


# --------------------------------------------------------------------------------------------------------------
# Frozen encoder: cached head inputs and a probe that trains the head alone
# --------------------------------------------------------------------------------------------------------------
class HeadProbe(nn.Module):
    """The head's MLP on cached head inputs (``features``); shares the MLP with the full model it came from."""

    def __init__(self, model: nn.Module, level: str):
        super().__init__()
        self.mlp = model.mlp
        # bound methods of the full model (not submodules): its logits (de-standardised for regression heads with
        # `regression_mean`/`_std`) and its loss, so the probe scores exactly as the model does
        self._predict, self._loss = model.predict, model.loss
        self.what = level

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        logits = self._predict(features)
        loss = self._loss(logits, labels, self.what) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class CachedInputs(torch.utils.data.Dataset):
    """Rows of cached head inputs: ``{"features": (F,), "labels": ...}``."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return self.features.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"features": self.features[index], "labels": self.labels[index]}


@torch.no_grad()
def cache_head_inputs(model: nn.Module, dataset: Any, processor: Any, args: TrainingArguments,
                      level: str) -> CachedInputs:  # fmt: skip
    """Run the frozen encoder once over ``dataset`` and return what the head's MLP receives, with the labels.

    The MLP's inputs are read with a forward hook, so every head kind (protein, residue, pair pooling) is cached
    exactly as its forward computes it. Residue tasks keep their labelled residues only, one row each.
    """
    collator = make_collator(processor, level)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.per_device_eval_batch_size, collate_fn=collator)
    captured: list[torch.Tensor] = []
    hook = model.mlp.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].detach()))
    model.eval()
    features, labels = [], []
    try:
        for batch in loader:
            target = batch.pop("labels")
            model(**batch)
            rows = captured.pop()
            if level == "residue":
                keep = target != IGNORE_INDEX  # residue rows: the labelled ones
                rows, target = rows[keep], target[keep]
            features.append(rows.float().cpu())
            labels.append(target.cpu())
    finally:
        hook.remove()
    return CachedInputs(torch.cat(features), torch.cat(labels))


# --------------------------------------------------------------------------------------------------------------
# Results: best epoch, seeds, export
# --------------------------------------------------------------------------------------------------------------
def best_epoch_result(log_history: list[dict[str, Any]], metric: str, greater_is_better: bool = True
                      ) -> dict[str, Any]:  # fmt: skip
    """Return the epoch with the best ``valid_<metric>`` (the first of equals, as the official strict ``>``) and
    that epoch's valid and test metrics, from a Trainer's ``log_history``."""
    key = f"eval_valid_{metric}"
    by_epoch: dict[float, dict[str, Any]] = {}
    for record in log_history:
        if "epoch" in record and any(k.startswith(("eval_valid_", "eval_test_")) for k in record):
            by_epoch.setdefault(record["epoch"], {}).update(record)
    scored = [(epoch, values) for epoch, values in sorted(by_epoch.items()) if key in values]
    if not scored:
        raise ValueError(f"no {key} in the training log: was the validation split evaluated?")
    best_epoch, best = scored[0]
    for epoch, values in scored[1:]:
        if (values[key] > best[key]) if greater_is_better else (values[key] < best[key]):
            best_epoch, best = epoch, values
    splits = {}
    for split in ("valid", "test"):
        prefix = f"eval_{split}_"
        kept = [k for k in best if k.startswith(prefix) and not k.endswith(TIMING)]
        splits[split] = {k[len(prefix) :]: best[k] for k in kept}
    return {"best_epoch": round(float(best_epoch)), "epochs": len(scored), **splits}


def aggregate(runs: dict[int, dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Return the mean and standard deviation (sample, ddof=1; 0 for one seed) of every valid/test metric."""
    out: dict[str, dict[str, dict[str, float]]] = {"mean": {}, "std": {}}
    for split in ("valid", "test"):
        names = sorted(set.intersection(*(set(r[split]) for r in runs.values())))
        values = {n: np.array([float(r[split][n]) for r in runs.values()]) for n in names}
        out["mean"][split] = {n: float(v.mean()) for n, v in values.items()}
        out["std"][split] = {n: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for n, v in values.items()}
    return out


def select_seed(seeds: dict[str, dict[str, Any]], task: Any) -> str:
    """Return the seed whose best validation metric is best (the one exported as ``OUTPUT_DIR/model``)."""
    sign = 1.0 if task.greater_is_better else -1.0
    return max(seeds, key=lambda s: sign * float(seeds[s]["valid"].get(task.metric, -math.inf * sign)))


def format_summary(summary: dict[str, Any]) -> str:
    """Return the test metrics as a small table: mean +- std per variant (fine-tuned, random initialisation)."""
    lines = [f"{summary['task']}: test metrics at the best validation epoch ({summary['metric']}), "
             f"mean +- std over seeds"]  # fmt: skip
    for variant in ("finetuned", "random_init"):
        if variant in summary:
            mean, std = summary[variant]["mean"]["test"], summary[variant]["std"]["test"]
            cells = ", ".join(f"{name} {mean[name]:.4f} +- {std[name]:.4f}" for name in sorted(mean)
                              if name not in ("loss", "num_scored"))  # fmt: skip
            label = "pre-trained encoder" if variant == "finetuned" else "random encoder"
            lines.append(f"  {label:20s} {cells}")
    return "\n".join(lines)


def export_model(config: FinetuneConfig, summary: dict[str, Any], source: Path, target: Path) -> None:
    """Copy the selected seed's best model to ``target`` and write its model card with the results."""
    from .finetune_card import finetune_model_card

    shutil.copytree(source, target, dirs_exist_ok=True)
    finetune_model_card(config, summary, target).save(target / "README.md")
