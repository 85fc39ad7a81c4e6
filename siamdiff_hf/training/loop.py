"""Pre-training with Accelerate, as one readable loop: `pretrain(config)` runs every stage of a `PretrainConfig`
in turn and `train_stage` is the training loop itself. The pieces live beside it: `stream` (the data),
`objective` (the model), `checkpoints` (save, resume, signals), `export` (model folders and cards), `tracking`
(metrics and logs), `precision` (mixed precision and determinism).

Everything lands in ``config.output_dir``::

    config.yaml                       the resolved run config
    logs/train_log.jsonl              one JSON line per log step (always), plus tensorboard/wandb when installed
    logs/ids_rank{r}.jsonl            protein ids of every batch (``logging.record_ids``)
    checkpoints/stage{s}-step{n}/     accelerate `save_state` + data_state_rank{r}.json + trainer_state.json
    {stage name}/model/               the whole pre-training model at the end of the stage
    {stage name}/encoder/             the encoder alone, preprocessor_config.json and a model card (README.md)
    encoder/                          the last stage's encoder: `AutoModel.from_pretrained(OUTPUT_DIR/encoder)`

Every rank runs the same number of steps, starting a new epoch of its part of the stream whenever it runs out, so
no rank waits for another. Model noise comes from a generator seeded by (seed, rank, stage, step) and crops from
one seeded by (seed, epoch, protein ids); neither needs saving, which is what makes a resumed run repeat an
uninterrupted one (bit for bit single-threaded or with ``training.deterministic``).
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from torch import nn
from tqdm.auto import tqdm

from ..hub import push_folder
from .checkpoints import (
    StopRequest,
    TrainingInterrupted,
    find_checkpoint,
    prepare_fresh_output_dir,
    read_trainer_state,
    save_checkpoint,
    stop_on_signals,
)
from .config import PretrainConfig
from .export import export_stage
from .memory import reuse_freed_memory
from .objective import build_stage_model, takes_generator
from .precision import make_deterministic, numerics_record, resolve_mixed_precision, uses_cpu
from .stream import make_stream
from .tracking import MetricWindow, close, flat_config, make_trackers, open_ids_log

logger = logging.getLogger(__name__)


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
    if config.training.deterministic:
        make_deterministic()
    accelerator = make_accelerator(config)
    if config.training.reuse_freed_memory and accelerator.device.type == "cpu":
        reuse_freed_memory()
    checkpoint = find_checkpoint(output_dir, resume) if resume else None
    if checkpoint is None:
        prepare_fresh_output_dir(config, accelerator)
    start_stage = read_trainer_state(checkpoint)["stage"] if checkpoint else 0
    if accelerator.is_main_process:
        (output_dir / "logs").mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    accelerator.wait_for_everyone()
    numerics = numerics_record(accelerator.mixed_precision, accelerator.device, config.training.deterministic)
    accelerator.init_trackers(config.logging.project_name, config={**flat_config(config), **numerics})
    accelerator.print(f"numerics: {numerics} (training.mixed_precision: {config.training.mixed_precision})")

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


def train_stage(accelerator: Accelerator, config: PretrainConfig, index: int, model: nn.Module,
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
    pass_generator = takes_generator(accelerator.unwrap_model(model))

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
    ids_log = open_ids_log(config, accelerator)
    progress = tqdm(total=stage.max_steps, initial=step, desc=name, dynamic_ncols=True,
                    disable=not (accelerator.is_main_process and config.logging.progress_bar))  # fmt: skip
    while step < stage.max_steps:
        for micro in range(train.gradient_accumulation_steps):
            inputs, ids = next(stream)
            # the step's random draws (noise levels, masks, noise) from a generator of (seed, rank, stage, step)
            generator = step_generator(config.seed, accelerator.process_index, index, step, micro, accelerator.device)
            extra = {"generator": generator} if pass_generator else {}
            with accelerator.accumulate(model):
                output = model(**inputs.to(accelerator.device), **extra)
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
            accelerator.log({"stage": index + 1, **metrics}, step=config.global_step(index, step))

        interrupted = stop.requested(accelerator)  # agreed by all ranks, so they save at the same step
        every = config.checkpointing.every_n_steps
        if interrupted or step == stage.max_steps or (every and step % every == 0):
            checkpoint = save_checkpoint(accelerator, config, index, step, stream, metrics)
            if interrupted:
                progress.close()
                close(ids_log)
                raise TrainingInterrupted(stop.signum or signal.SIGTERM, checkpoint)
    progress.close()
    close(ids_log)
    if accelerator.is_main_process:
        counts = {k: v for k, v in stream.counts.as_dict().items() if v} if stream.counts is not None else {}
        logger.info("%s finished; data stream counts on rank 0: %s", name, counts)
    return metrics


# --------------------------------------------------------------------------------------------------------------
# Building blocks: accelerator, optimizer, per-step randomness
# --------------------------------------------------------------------------------------------------------------
def make_accelerator(config: PretrainConfig) -> Accelerator:
    """Return the `Accelerator` of a run (mixed precision from the config, ``auto`` resolved for this hardware,
    or None to take ``accelerate launch``'s)."""
    train = config.training
    return Accelerator(
        cpu=train.cpu,
        mixed_precision=resolve_mixed_precision(train.mixed_precision, cpu=uses_cpu(train.cpu)),
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        # The loop steps the scheduler once per optimizer step itself; accelerate would otherwise step it
        # num_processes times per step (it assumes epochs shrink with more processes; our runs count steps).
        step_scheduler_with_optimizer=False,
        # Graph batches vary in size and cannot be concatenated: never dispatch batches from rank 0.
        dataloader_config=DataLoaderConfiguration(dispatch_batches=False),
        # SiamDiff heads (gamma 0 or 1) or frozen branches may get no gradient in a step.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=train.find_unused_parameters)],
        log_with=make_trackers(config),
        project_dir=str(Path(config.output_dir) / "logs"),
    )


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


def step_generator(seed: int, rank: int, stage: int, step: int, micro: int, device: torch.device) -> torch.Generator:
    """Return the generator of one forward: a function of (seed, rank, stage, step, micro-batch) only, so a
    resumed run draws exactly the noise an uninterrupted one would."""
    value = int(np.random.SeedSequence([seed, rank, stage, step, micro]).generate_state(1)[0])
    return torch.Generator(device=device).manual_seed(value)
