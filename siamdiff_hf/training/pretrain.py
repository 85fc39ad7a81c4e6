"""SiamDiff pre-training with Accelerate: stages, checkpoints, exact resume and export, as one readable loop.

`pretrain(config)` runs every stage of a `PretrainConfig` in turn; `train_stage` is the training loop itself.
Everything lands in ``config.output_dir``::

    config.yaml                       the resolved run config
    logs/train_log.jsonl              one JSON line per log step (always), plus tensorboard/wandb when installed
    logs/ids_rank{r}.jsonl            protein ids of every batch (``logging.record_ids``)
    checkpoints/stage{s}-step{n}/     accelerate `save_state` + data_state_rank{r}.json + trainer_state.json
    {stage name}/model/               the whole `SiamDiffForPreTraining` at the end of the stage
    {stage name}/encoder/             the encoder alone, preprocessor_config.json and a model card (README.md)
    encoder/                          the last stage's encoder: `AutoModel.from_pretrained(OUTPUT_DIR/encoder)`

Data: each process reads its own part of the `load_afdb` stream (`split_dataset_by_node`), so ranks see disjoint
structures; the DataLoader is *not* passed to `accelerator.prepare` (that would shard the stream a second time)
and batches are moved to the device by hand. Every rank runs the same number of steps, starting a new epoch of
its part (``set_epoch``) whenever it runs out, so no rank waits for another.

Randomness: model noise comes from a generator seeded by (seed, rank, stage, step) and crops from one seeded by
(seed, epoch, protein ids); neither needs saving, which is what makes a resumed run repeat an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import shutil
import signal
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.tracking import GeneralTracker
from accelerate.utils import is_tensorboard_available, is_wandb_available, set_seed
from torch import nn
from tqdm.auto import tqdm

from ..data.afdb import load_afdb, skip_counts
from ..hub import build_model_card, push_folder
from ..models.siamdiff import SiamDiffConfig, SiamDiffForPreTraining
from ..protein.processor import ProteinStructureProcessor
from .config import PretrainConfig, resolve_source

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"stage(\d+)-step(\d+)$")
TRAINER_STATE = "trainer_state.json"  # written last: a checkpoint without it is incomplete
METRIC_NAMES = ("loss", "structure_loss", "sequence_loss", "sequence_accuracy")


class TrainingInterrupted(Exception):
    """Raised after SIGTERM/SIGINT once a checkpoint has been saved; ``checkpoint`` is its folder."""

    def __init__(self, signum: int, checkpoint: Path):
        self.signum, self.checkpoint = signum, checkpoint
        super().__init__(f"interrupted by {signal.Signals(signum).name}; checkpoint saved in {checkpoint}")


# --------------------------------------------------------------------------------------------------------------
# The run: stages in sequence
# --------------------------------------------------------------------------------------------------------------
def pretrain(config: PretrainConfig, *, resume: str | None = None, push_to_hub: str | None = None,
             hub_api: Any = None) -> Path:  # fmt: skip
    """Run every stage of ``config`` and return the folder of the final encoder (``OUTPUT_DIR/encoder``).

    Args:
        config: a validated run config (`load_config`).
        resume: ``"latest"`` (the newest checkpoint in ``OUTPUT_DIR/checkpoints``; a fresh start if there is
            none) or the path of a checkpoint folder.
        push_to_hub: a Hub repo id: upload the final encoder folder (with our model card) at the end.
        hub_api: a `huggingface_hub.HfApi`-like object for the upload (tests pass a local stand-in).

    Raises:
        TrainingInterrupted: SIGTERM/SIGINT arrived; a checkpoint was saved first.
    """
    output_dir = Path(config.output_dir)
    accelerator = make_accelerator(config)
    checkpoint = find_checkpoint(output_dir, resume) if resume else None
    if checkpoint is None:
        prepare_fresh_output_dir(config, accelerator)
    start_stage = read_trainer_state(checkpoint)["stage"] if checkpoint else 0
    if accelerator.is_main_process:
        (output_dir / "logs").mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    accelerator.wait_for_everyone()
    accelerator.init_trackers(config.logging.project_name, config=_flat_config(config))

    try:
        with stop_on_signals() as stop:
            for index in range(start_stage, len(config.stages)):
                model = build_stage_model(config, index)
                metrics = train_stage(accelerator, config, index, model, stop,
                                      resume_from=checkpoint if index == start_stage else None)  # fmt: skip
                export_stage(accelerator, config, index, model, metrics, repo_id=push_to_hub)
                accelerator.clear()  # forget this stage's model/optimizer/scheduler before the next stage
        final = output_dir / "encoder"
        if accelerator.is_main_process:
            shutil.copytree(output_dir / config.stage_name(len(config.stages) - 1) / "encoder", final,
                            dirs_exist_ok=True)  # fmt: skip
            repo_id = push_to_hub or config.export.push_to_hub
            if repo_id:
                url = push_folder(final, repo_id, private=config.export.private, api=hub_api)
                accelerator.print(f"pushed {final} to {repo_id}: {url}")
        accelerator.wait_for_everyone()
        accelerator.print(f"encoder ready: AutoModel.from_pretrained({str(final)!r})")
        return final
    finally:
        accelerator.end_training()


def train_stage(accelerator: Accelerator, config: PretrainConfig, index: int, model: SiamDiffForPreTraining,
                stop: StopRequest, resume_from: Path | None = None) -> dict[str, float]:  # fmt: skip
    """Train one stage for ``max_steps`` optimizer steps and return its final metrics (saving a last checkpoint)."""
    stage, train = config.stages[index], config.training
    name = config.stage_name(index)

    # Model: SyncBatchNorm across GPUs, since GearNet's BatchNorm statistics matter. torch has no SyncBatchNorm
    # for CPU tensors (gloo): there each process normalises with its own batch; DDP copies rank 0's running
    # statistics to the other ranks at every forward, and the export is rank 0's model.
    if train.sync_batchnorm and accelerator.num_processes > 1 and accelerator.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer, scheduler = make_optimizer(config, index, model)  # a new optimizer per stage, as the official code
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    set_seed(config.seed + index, device_specific=True)  # seed + rank: per-rank global RNG
    stream = make_stream(config, accelerator)

    step, metrics = 0, {}
    if resume_from is not None:  # weights, optimizer, scheduler, RNG states, then this rank's data position
        state = read_trainer_state(resume_from)
        if state["num_processes"] != accelerator.num_processes:
            raise ValueError(
                f"{resume_from} was saved by {state['num_processes']} processes, not "
                f"{accelerator.num_processes}: resume with the same number (data positions are per rank)"
            )
        accelerator.load_state(str(resume_from))
        step, metrics = state["step"], state.get("metrics", {})
        data_state = resume_from / f"data_state_rank{accelerator.process_index}.json"
        stream.load_state_dict(json.loads(data_state.read_text()))
        accelerator.print(f"resumed {name} at step {step} from {resume_from}")

    model.train()
    window = MetricWindow()
    ids_log = _ids_log(config, accelerator)
    progress = tqdm(total=stage.max_steps, initial=step, desc=name, dynamic_ncols=True,
                    disable=not (accelerator.is_main_process and config.logging.progress_bar))  # fmt: skip
    while step < stage.max_steps:
        for micro in range(train.gradient_accumulation_steps):
            inputs, ids = next(stream)
            generator = step_generator(config.seed, accelerator.process_index, index, step, micro, accelerator.device)
            with accelerator.accumulate(model):
                output = model(**inputs.to(accelerator.device), generator=generator)
                accelerator.backward(output.loss)
                if accelerator.sync_gradients and train.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), train.max_grad_norm)
                optimizer.step()  # a no-op until the last micro-batch of an accumulation
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            window.add(output, num_proteins=len(ids))
            if ids_log is not None:
                record = {"stage": index, "step": step + 1, "micro": micro, "epoch": stream.epoch, "ids": ids}
                ids_log.write(json.dumps(record) + "\n")
        step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{window.last_loss:.3f}", proteins_per_s=f"{window.local_rate(accelerator):.1f}")

        if step % config.logging.log_every == 0 or step == stage.max_steps:
            metrics = window.reduce(accelerator)  # collective: every rank logs at the same steps
            totals = accelerator.reduce(torch.tensor(stream.totals(), device=accelerator.device), "sum").tolist()
            metrics.update(proteins=int(totals[0]), skipped_files=int(totals[1]), epoch=stream.epoch,
                           learning_rate=scheduler.get_last_lr()[0])  # fmt: skip
            accelerator.log({"stage": index + 1, **metrics}, step=_global_step(config, index, step))

        interrupted = stop.requested(accelerator)  # agreed by all ranks, so they save at the same step
        every = config.checkpointing.every_n_steps
        if interrupted or step == stage.max_steps or (every and step % every == 0):
            checkpoint = save_checkpoint(accelerator, config, index, step, stream, metrics)
            if interrupted:
                progress.close()
                _close(ids_log)
                raise TrainingInterrupted(stop.signum or signal.SIGTERM, checkpoint)
    progress.close()
    _close(ids_log)
    if accelerator.is_main_process:
        counts = {k: v for k, v in skip_counts().items() if v}
        logger.info("%s finished; data stream counts on rank 0: %s", name, counts)
    return metrics


# --------------------------------------------------------------------------------------------------------------
# Building blocks: accelerator, model, optimizer, data
# --------------------------------------------------------------------------------------------------------------
def make_accelerator(config: PretrainConfig) -> Accelerator:
    """Return the `Accelerator` of a run (mixed precision from the config, else from ``accelerate launch``)."""
    train = config.training
    return Accelerator(
        cpu=train.cpu,
        mixed_precision=train.mixed_precision,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        # The loop steps the scheduler once per optimizer step itself; accelerate would otherwise step it
        # num_processes times per step (it assumes epochs shrink with more processes; our runs count steps).
        step_scheduler_with_optimizer=False,
        # Graph batches vary in size and cannot be concatenated: never dispatch batches from rank 0.
        dataloader_config=DataLoaderConfiguration(dispatch_batches=False),
        # SiamDiff heads (gamma 0 or 1) or frozen branches may get no gradient in a step.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=train.find_unused_parameters)],
        log_with=_trackers(config),
        project_dir=str(Path(config.output_dir) / "logs"),
    )


def build_stage_model(config: PretrainConfig, index: int) -> SiamDiffForPreTraining:
    """Return the model stage ``index`` starts from: the previous stage's model (encoder and heads) with this
    stage's schedule, or for the first stage a new model (optionally initialised from ``init_from``/``encoder_from``).
    """
    from transformers import AutoModel

    set_seed(config.seed + index)  # identical initial weights on every rank
    stage = config.stages[index]
    schedule = {k: getattr(stage, k) for k in ("beta_start", "beta_end", "num_timesteps", "gamma")}
    schedule = {k: v for k, v in schedule.items() if v is not None}
    if index > 0:
        previous = Path(config.output_dir) / config.stage_name(index - 1) / "model"
        return SiamDiffForPreTraining.from_pretrained(previous, **schedule).train()
    settings = {**config.model.siamdiff, **schedule}
    if config.model.init_from:
        return SiamDiffForPreTraining.from_pretrained(config.model.init_from, **settings).train()
    encoder_settings = dict(config.model.encoder)
    encoder = None
    if config.model.encoder_from:  # pretrained encoder weights; `model.encoder` keys override its config
        encoder_settings.pop("model_type", None)
        encoder = AutoModel.from_pretrained(config.model.encoder_from, **encoder_settings)
    elif config.model.sequence_model_from:  # ESM-GearNet: pre-trained ESM-2, new GearNet
        from ..models.esm_gearnet import EsmGearNetModel

        kwargs = {k: v for k, v in encoder_settings.items() if k not in ("model_type", "esm_config")}
        encoder = EsmGearNetModel.from_esm_pretrained(config.model.sequence_model_from, **kwargs)
    encoder_config = encoder.config if encoder is not None else encoder_settings
    model = SiamDiffForPreTraining(SiamDiffConfig(encoder_config=encoder_config, **settings))
    if encoder is not None:
        model.encoder.load_state_dict(encoder.state_dict())
    return model.train()


def make_optimizer(config: PretrainConfig, index: int, model: nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    """Return (optimizer, LR scheduler) of a stage: Adam(W) over the trainable parameters (frozen ESM excluded)."""
    from transformers import get_scheduler

    opt, stage = config.optimizer, config.stages[index]
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer_class = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
    lr = stage.learning_rate if stage.learning_rate is not None else opt.learning_rate
    optimizer = optimizer_class(parameters, lr=lr, betas=tuple(opt.betas), eps=opt.eps, weight_decay=opt.weight_decay)
    warmup = stage.warmup_steps if stage.warmup_steps is not None else opt.warmup_steps
    name = "constant_with_warmup" if opt.lr_scheduler == "constant" and warmup else opt.lr_scheduler
    return optimizer, get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=stage.max_steps)


def make_processor(config: PretrainConfig, training: bool = True) -> ProteinStructureProcessor:
    """Return the processor: random crops for training; no crop in the exported one (it is for inference)."""
    data = config.data
    if training:
        return ProteinStructureProcessor(crop_length=config.crop_length, random_crop=data.random_crop,
                                         backend=data.backend, **data.processor)  # fmt: skip
    return ProteinStructureProcessor(crop_length=None, random_crop=False, backend=data.backend, **data.processor)


def make_stream(config: PretrainConfig, accelerator: Accelerator) -> StructureStream:
    """Return this rank's endless batch stream: `load_afdb`, shard-order shuffle, this rank's part, batches."""
    from datasets.distributed import split_dataset_by_node

    data = config.data
    dataset = load_afdb([resolve_source(s) for s in data.sources], min_length=data.min_length,
                        max_length=data.max_length, min_plddt=data.min_plddt, backend=data.backend,
                        files_per_shard=data.files_per_shard, report_skips=True)  # fmt: skip
    if data.shuffle:  # the same seed on every rank, so that the ranks split one order
        dataset = dataset.shuffle(seed=config.seed, buffer_size=data.shuffle_buffer_size)
    if accelerator.num_processes > 1:
        if dataset.num_shards % accelerator.num_processes:
            logger.warning("%d shards cannot be split evenly over %d processes: every process reads every shard and "
                           "keeps 1 example in %d (more shards: lower data.files_per_shard)", dataset.num_shards,
                           accelerator.num_processes, accelerator.num_processes)  # fmt: skip
        dataset = split_dataset_by_node(dataset, rank=accelerator.process_index, world_size=accelerator.num_processes)
    collator = Collator(make_processor(config), seed=config.seed)
    return StructureStream(dataset, collator, data.batch_size, data.num_workers, data.drop_last)


class Collator:
    """DataLoader ``collate_fn``: packs examples with the processor; returns (inputs, ids) and counts skips.

    The crop generator is seeded by (seed, epoch, the batch's protein ids): the same batch always gets the same
    crops, in any worker and after any resume, and crops change from epoch to epoch.
    """

    def __init__(self, processor: ProteinStructureProcessor, seed: int):
        self.processor, self.seed, self.epoch = processor, seed, 0

    def __call__(self, examples: list[dict[str, Any]]) -> tuple[Any, list[str], int]:
        ids = [str(example["id"]) for example in examples]
        rng = np.random.default_rng([self.seed, self.epoch, *(zlib.crc32(i.encode()) for i in ids)])
        skipped = sum(int(example.get("num_skipped") or 0) for example in examples)
        return self.processor(examples, return_tensors="pt", generator=rng), ids, skipped


class StructureStream:
    """Endless batches of one rank's part of the stream; epochs repeat with ``set_epoch``; position resumable.

    ``state_dict`` holds the epoch, the datasets position (exact without DataLoader workers; with workers it is
    exact only through torchdata's ``StatefulDataLoader``, used when installed) and the running totals.
    """

    def __init__(self, dataset: Any, collator: Collator, batch_size: int, num_workers: int, drop_last: bool):
        self.dataset, self.collator = dataset, collator
        self.loader_kwargs = dict(batch_size=batch_size, num_workers=num_workers, drop_last=drop_last,
                                  collate_fn=collator)  # fmt: skip
        self.epoch, self.proteins, self.skipped = 0, 0, 0
        self._iterator: Iterator | None = None
        self._loader: Any = None
        self._loader_state: dict | None = None
        self._stateful = False
        if num_workers > 0:
            try:
                from torchdata.stateful_dataloader import StatefulDataLoader  # noqa: F401

                self._stateful = True
            except ImportError:
                logger.warning("data.num_workers > 0 without torchdata: a resumed run restarts its current epoch "
                               "(pip install torchdata for exact resume, or use num_workers: 0)")  # fmt: skip

    def _new_loader(self) -> Any:
        self.dataset.set_epoch(self.epoch)
        self.collator.epoch = self.epoch
        if self._stateful:
            from torchdata.stateful_dataloader import StatefulDataLoader

            loader = StatefulDataLoader(self.dataset, **self.loader_kwargs)
            if self._loader_state is not None:
                loader.load_state_dict(self._loader_state)
                self._loader_state = None
            return loader
        return torch.utils.data.DataLoader(self.dataset, **self.loader_kwargs)

    def __iter__(self) -> StructureStream:
        return self

    def __next__(self) -> tuple[Any, list[str]]:
        for _ in range(2):  # the current epoch, else one fresh epoch
            if self._iterator is None:
                self._loader = self._new_loader()
                self._iterator = iter(self._loader)
            try:
                inputs, ids, skipped = next(self._iterator)
            except StopIteration:
                self.epoch += 1
                self._iterator = None
                continue
            self.proteins += len(ids)
            self.skipped += skipped
            return inputs, ids
        raise RuntimeError(
            "the data stream produced no batch in a whole epoch: every structure was filtered "
            "out or skipped (see the warnings), or fewer than batch_size remain with drop_last"
        )

    def totals(self) -> list[float]:
        """Return [proteins delivered, structures skipped as unreadable] on this rank since the stage began."""
        return [float(self.proteins), float(self.skipped)]

    def state_dict(self) -> dict[str, Any]:
        if self._stateful and self._loader is not None:
            position = self._loader.state_dict()
        else:
            position = self.dataset.state_dict()
        return {"epoch": self.epoch, "position": position, "proteins": self.proteins, "skipped": self.skipped,
                "stateful_loader": self._stateful}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.proteins, self.skipped = state["epoch"], state["proteins"], state["skipped"]
        self._iterator = None
        if state.get("stateful_loader") and self._stateful:
            self._loader_state = state["position"]
        elif not state.get("stateful_loader"):
            self.dataset.set_epoch(self.epoch)
            self.dataset.load_state_dict(state["position"])


def step_generator(seed: int, rank: int, stage: int, step: int, micro: int, device: torch.device) -> torch.Generator:
    """Return the generator of one forward: a function of (seed, rank, stage, step, micro-batch) only, so a
    resumed run draws exactly the noise an uninterrupted one would."""
    value = int(np.random.SeedSequence([seed, rank, stage, step, micro]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(value)


class MetricWindow:
    """Running sums of the step metrics between two log steps."""

    def __init__(self):
        self.sums = torch.zeros(len(METRIC_NAMES) + 2, dtype=torch.float64)  # metrics, batches, proteins
        self.started = time.perf_counter()
        self.last_loss = math.nan
        self._local_proteins, self._local_started = 0, time.perf_counter()

    def add(self, output: Any, num_proteins: int) -> None:
        values = [float(getattr(output, name).detach()) for name in METRIC_NAMES]
        self.sums += torch.tensor([*values, 1.0, float(num_proteins)], dtype=torch.float64)
        self.last_loss = values[0]
        self._local_proteins += num_proteins

    def local_rate(self, accelerator: Accelerator) -> float:
        """Return an estimate of the global proteins/s from this rank's count (no communication)."""
        return self._local_proteins * accelerator.num_processes / max(time.perf_counter() - self._local_started, 1e-9)

    def reduce(self, accelerator: Accelerator) -> dict[str, float]:
        """Return the window's metrics averaged over batches and ranks, with global proteins/s; then reset."""
        sums = accelerator.reduce(self.sums.to(accelerator.device, torch.float32), "sum").double().cpu()
        batches = max(float(sums[len(METRIC_NAMES)]), 1.0)
        metrics = {name: float(sums[i]) / batches for i, name in enumerate(METRIC_NAMES)}
        metrics["proteins_per_second"] = float(sums[-1]) / max(time.perf_counter() - self.started, 1e-9)
        self.sums.zero_()
        self.started = time.perf_counter()
        return metrics


# --------------------------------------------------------------------------------------------------------------
# Checkpoints, resume, signals
# --------------------------------------------------------------------------------------------------------------
def save_checkpoint(accelerator: Accelerator, config: PretrainConfig, index: int, step: int, stream: StructureStream,
                    metrics: dict[str, float]) -> Path:  # fmt: skip
    """Save ``checkpoints/stage{s}-step{n}`` (accelerate state + each rank's data position), then keep the newest
    ``checkpointing.keep``. Rotation reads the folder names, so it is the same after a resume."""
    root = Path(config.output_dir) / "checkpoints"
    path = root / f"stage{index + 1}-step{step:08d}"
    accelerator.save_state(str(path))  # model, optimizer, scheduler, RNG states of every rank
    (path / f"data_state_rank{accelerator.process_index}.json").write_text(json.dumps(stream.state_dict()))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {"stage": index, "stage_name": config.stage_name(index), "step": step,
                 "max_steps": config.stages[index].max_steps, "global_step": _global_step(config, index, step),
                 "num_processes": accelerator.num_processes, "metrics": metrics}  # fmt: skip
        (path / TRAINER_STATE).write_text(json.dumps(state, indent=2))
        for old in list_checkpoints(root, complete_only=False)[: -config.checkpointing.keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return path


def list_checkpoints(root: Path, complete_only: bool = True) -> list[Path]:
    """Return the checkpoint folders under ``root``, oldest first (by stage, then step)."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = CHECKPOINT_PATTERN.fullmatch(path.name)
        if match and path.is_dir() and (not complete_only or (path / TRAINER_STATE).exists()):
            found.append(((int(match[1]), int(match[2])), path))
    return [path for _, path in sorted(found)]


def find_checkpoint(output_dir: Path, resume: str) -> Path | None:
    """Return the checkpoint to resume from: the newest complete one for ``"latest"`` (None if there is none)."""
    if resume == "latest":
        checkpoints = list_checkpoints(output_dir / "checkpoints")
        if not checkpoints:
            logger.warning("--resume latest: no checkpoint in %s, starting from scratch", output_dir / "checkpoints")
            return None
        return checkpoints[-1]
    path = Path(resume)
    if not (path / TRAINER_STATE).exists():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {TRAINER_STATE})")
    return path


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """Return the trainer state (stage, step, metrics...) saved with a checkpoint."""
    return json.loads((Path(checkpoint) / TRAINER_STATE).read_text())


def prepare_fresh_output_dir(config: PretrainConfig, accelerator: Accelerator) -> None:
    """Refuse to start over a previous run's checkpoints unless ``overwrite_output_dir`` (then remove them)."""
    output_dir = Path(config.output_dir)
    if not list_checkpoints(output_dir / "checkpoints", complete_only=False):
        return
    if not config.overwrite_output_dir:
        raise FileExistsError(f"{output_dir} holds checkpoints of an earlier run: pass --resume to continue it, "
                              "or overwrite_output_dir=true to start again")  # fmt: skip
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        names = ["checkpoints", "logs", "encoder"] + [config.stage_name(i) for i in range(len(config.stages))]
        for name in names:
            shutil.rmtree(output_dir / name, ignore_errors=True)
    accelerator.wait_for_everyone()


class StopRequest:
    """Set by SIGTERM/SIGINT; the loop checks it after every step, saves a checkpoint and stops."""

    def __init__(self):
        self.signum: int | None = None

    def handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signum = signum
        logger.warning("%s received: saving a checkpoint after this step", signal.Signals(signum).name)

    def requested(self, accelerator: Accelerator) -> bool:
        """Return whether any rank received a signal (a collective under several processes)."""
        if accelerator.num_processes == 1:
            return self.signum is not None
        flag = torch.tensor([0.0 if self.signum is None else 1.0], device=accelerator.device)
        return bool(accelerator.reduce(flag, "sum").item() > 0)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Install SIGTERM/SIGINT handlers that request a checkpoint-and-stop (main thread only)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop.handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# --------------------------------------------------------------------------------------------------------------
# Export, logging
# --------------------------------------------------------------------------------------------------------------
def export_stage(accelerator: Accelerator, config: PretrainConfig, index: int, model: nn.Module,
                 metrics: dict[str, float], repo_id: str | None = None) -> Path:  # fmt: skip
    """Save ``{stage}/model`` (whole pre-training model) and ``{stage}/encoder`` (encoder, processor config and
    model card); return the stage folder."""
    stage_dir = Path(config.output_dir) / config.stage_name(index)
    state = accelerator.get_state_dict(model)  # collective: gathers the full weights under FSDP/DeepSpeed
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        processor = make_processor(config, training=False)
        encoder_state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        unwrapped.save_pretrained(stage_dir / "model", state_dict=dict(state))  # it empties the dict it gets
        unwrapped.encoder.save_pretrained(stage_dir / "encoder", state_dict=encoder_state)
        for folder in ("model", "encoder"):
            processor.save_pretrained(stage_dir / folder)
        settings = run_settings(config, index, accelerator)
        steps = config.stages[index].max_steps
        # metrics of the last log window of this stage; proteins and epoch count from the stage start
        card_metrics = {"total_steps": _global_step(config, index, steps), "stage_steps": steps, **metrics}
        summary = {"settings": settings, "metrics": card_metrics}
        (stage_dir / "model" / "training_summary.json").write_text(json.dumps(summary, indent=2, default=str))
        card = build_model_card(
            unwrapped.encoder.config,
            title=config.export.title or f"{_objective(config)} {unwrapped.encoder.config.model_type} encoder",
            description=config.export.description or _card_description(config, index),
            repo_id=repo_id or config.export.push_to_hub or "path/to/this/folder",
            settings=settings, metrics=card_metrics, datasets=_hub_datasets(config),
            base_model=config.model.encoder_from or config.model.init_from,
            tags=[_objective(config).lower(), f"{config.level}-level"],
        )  # fmt: skip
        card.save(stage_dir / "encoder" / "README.md")
    accelerator.wait_for_everyone()
    return stage_dir


def run_settings(config: PretrainConfig, last_stage: int, accelerator: Accelerator) -> dict[str, Any]:
    """Return the run's settings as shown in the model card (stages up to ``last_stage``)."""
    data, opt, train = config.data, config.optimizer, config.training
    stages = []
    for i in range(last_stage + 1):
        s = config.stages[i]
        schedule = ", ".join(f"{k}={getattr(s, k)}" for k in ("beta_start", "beta_end", "num_timesteps", "gamma")
                             if getattr(s, k) is not None)  # fmt: skip
        stages.append(f"{config.stage_name(i)}: {s.max_steps} steps" + (f" ({schedule})" if schedule else ""))
    per_step = data.batch_size * accelerator.num_processes * train.gradient_accumulation_steps
    encoder = {k: v for k, v in config.model.encoder.items()}
    return {
        "objective": _objective(config),
        "encoder": json.dumps(encoder, default=str),
        "stages": "; ".join(stages),
        "data sources": ", ".join(data.sources),
        "crop": f"{config.crop_length} residues, {'random' if data.random_crop else 'first'} window",
        "batch": f"{data.batch_size} per process x {accelerator.num_processes} processes x "
                 f"{train.gradient_accumulation_steps} accumulation = {per_step} proteins per step",
        "optimizer": f"{opt.name} lr {opt.learning_rate:g}, weight decay {opt.weight_decay:g}, {opt.lr_scheduler} "
                     f"schedule, warmup {opt.warmup_steps}",
        "gradient clipping": train.max_grad_norm or "none",
        "mixed precision": accelerator.mixed_precision,
        "hardware": f"{accelerator.num_processes} x {accelerator.device.type}",
        "seed": config.seed,
    }  # fmt: skip


def _objective(config: PretrainConfig) -> str:
    return "SiamDiff" if config.model.siamdiff.get("use_mutual_information", True) else "DiffPreT"


def _card_description(config: PretrainConfig, index: int) -> str:
    return (f"A {config.level}-level protein structure encoder pre-trained with {_objective(config)} (Zhang et al., "
            f"NeurIPS 2023) using siamdiff-hf; this export ends stage {index + 1} of {len(config.stages)} "
            f"({config.stage_name(index)}).")  # fmt: skip


def _hub_datasets(config: PretrainConfig) -> list[str] | None:
    found = [s[len("hf://datasets/"):].split("@")[0].split("/", 2)[:2] for s in config.data.sources
             if s.startswith("hf://datasets/")]  # fmt: skip
    return ["/".join(parts) for parts in found] or None


def _global_step(config: PretrainConfig, index: int, step: int) -> int:
    return sum(s.max_steps for s in config.stages[:index]) + step


class JSONLTracker(GeneralTracker):
    """accelerate tracker appending one JSON line per `accelerator.log` call (always on, no dependency)."""

    name = "jsonl"
    requires_logging_directory = False

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)

    @property
    def tracker(self) -> Path:
        return self.path

    def store_init_configuration(self, values: dict) -> None:
        self._write({"event": "start", "time": time.time(), "config": values})

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        self._write({"step": step, "time": round(time.time(), 3), **values})

    def _write(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")


def _trackers(config: PretrainConfig) -> list[Any]:
    import os

    trackers: list[Any] = [JSONLTracker(Path(config.output_dir) / "logs" / "train_log.jsonl")]
    for name in config.logging.report_to:
        if name == "auto":
            if is_tensorboard_available():
                trackers.append("tensorboard")
            if is_wandb_available() and (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")):
                trackers.append("wandb")
        elif name not in ("none", "jsonl"):
            trackers.append(name)
    return trackers


def _flat_config(config: PretrainConfig) -> dict[str, Any]:
    """Return the config flattened to dotted keys with scalar values (what trackers accept as hyperparameters)."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list):
            flat[prefix] = json.dumps(value, default=str)
        else:
            flat[prefix] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)

    visit("", config.to_dict())
    return flat


def _ids_log(config: PretrainConfig, accelerator: Accelerator) -> Any:
    if not config.logging.record_ids:
        return None
    path = Path(config.output_dir) / "logs" / f"ids_rank{accelerator.process_index}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", buffering=1)


def _close(handle: Any) -> None:
    if handle is not None:
        handle.close()
