"""Checkpoints of a pre-training run: saving with rotation, finding the one to resume, the fresh-start guard, and
SIGTERM/SIGINT turned into checkpoint-and-stop.

A checkpoint ``OUTPUT_DIR/checkpoints/stage{s}-step{n}/`` holds accelerate's `save_state` (model, optimizer,
scheduler, every rank's RNG states), each rank's data position (``data_state_rank{r}.json``) and, written last so
that its presence marks a complete checkpoint, ``trainer_state.json`` (stage, step, metrics, process count).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from .config import PretrainConfig
from .stream import StructureStream

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"stage(\d+)-step(\d+)$")
TRAINER_STATE = "trainer_state.json"  # written last: a checkpoint without it is incomplete


class TrainingInterrupted(Exception):
    """Raised after SIGTERM/SIGINT once a checkpoint has been saved; ``checkpoint`` is its folder."""

    def __init__(self, signum: int, checkpoint: Path):
        self.signum, self.checkpoint = signum, checkpoint
        super().__init__(f"interrupted by {signal.Signals(signum).name}; checkpoint saved in {checkpoint}")


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
                 "max_steps": config.stages[index].max_steps, "global_step": config.global_step(index, step),
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
