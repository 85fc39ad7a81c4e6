"""What a pre-training run records: the step metrics window (any scalar field of the objective's output), the
always-on JSONL log and optional tensorboard/wandb trackers, the config as hyperparameters, the ids log."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from accelerate.utils import is_tensorboard_available, is_wandb_available

from .config import PretrainConfig
from .objective import scalar_metrics


class MetricWindow:
    """Running sums of the step metrics between two log steps.

    The metric names are the scalar fields of the objective's first output (sorted, ``loss`` first), the same on
    every rank since every rank runs the same objective, so the sums can be reduced as one tensor.
    """

    def __init__(self):
        self.names: list[str] | None = None
        self.sums = torch.zeros(0, dtype=torch.float64)  # metrics, batches, proteins
        self.started = time.perf_counter()
        self.last_loss = math.nan
        self._local_proteins, self._local_started = 0, time.perf_counter()

    def add(self, output: Any, num_proteins: int) -> None:
        """Add one forward's metrics (every scalar tensor field of ``output``)."""
        metrics = scalar_metrics(output)
        if self.names is None:
            self.names = ["loss", *sorted(k for k in metrics if k != "loss")]
            self.sums = torch.zeros(len(self.names) + 2, dtype=torch.float64)
        values = [metrics.get(name, math.nan) for name in self.names]
        self.sums += torch.tensor([*values, 1.0, float(num_proteins)], dtype=torch.float64)
        self.last_loss = values[0]
        self._local_proteins += num_proteins

    def local_rate(self, accelerator: Accelerator) -> float:
        """Return an estimate of the global proteins/s from this rank's count (no communication)."""
        return self._local_proteins * accelerator.num_processes / max(time.perf_counter() - self._local_started, 1e-9)

    def reduce(self, accelerator: Accelerator) -> dict[str, float]:
        """Return the window's metrics averaged over batches and ranks, with global proteins/s; then reset."""
        names = self.names or []
        sums = accelerator.reduce(self.sums.to(accelerator.device, torch.float32), "sum").double().cpu()
        batches = max(float(sums[len(names)]), 1.0) if names else 1.0
        metrics = {name: float(sums[i]) / batches for i, name in enumerate(names)}
        metrics["proteins_per_second"] = (float(sums[-1]) if names else 0.0) / max(time.perf_counter() - self.started,
                                                                                  1e-9)  # fmt: skip
        self.sums.zero_()
        self.started = time.perf_counter()
        return metrics


class JSONLTracker(GeneralTracker):
    """accelerate tracker appending one JSON line per `accelerator.log` call (always on, no dependency).

    Its first line holds ``config``, the run config as nested YAML data (lists stay lists): trackers such as
    tensorboard only take flat scalars (`flat_config`), which is what accelerate hands every tracker.
    """

    name = "jsonl"
    requires_logging_directory = False

    def __init__(self, path: str | Path, config: dict[str, Any] | None = None):
        super().__init__()
        self.path = Path(path)
        self.config = config

    @property
    def tracker(self) -> Path:
        return self.path

    def store_init_configuration(self, values: dict) -> None:
        nested = self.config if self.config is not None else values
        extra = {k: v for k, v in values.items() if k not in flat_config_keys(nested)}
        self._write({"event": "start", "time": time.time(), "config": nested, **extra})

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        self._write({"step": step, "time": round(time.time(), 3), **values})

    def _write(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")


def make_trackers(config: PretrainConfig) -> list[Any]:
    """Return the trackers of a run: the JSONL log, plus ``logging.report_to`` (``auto``: those installed)."""
    trackers: list[Any] = [JSONLTracker(Path(config.output_dir) / "logs" / "train_log.jsonl", config.to_dict())]
    for name in config.logging.report_to:
        if name == "auto":
            if is_tensorboard_available():
                trackers.append("tensorboard")
            if is_wandb_available() and (os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE")):
                trackers.append("wandb")
        elif name not in ("none", "jsonl"):
            trackers.append(name)
    return trackers


def flat_config(config: PretrainConfig) -> dict[str, Any]:
    """Return the config flattened to dotted keys with scalar values (what trackers accept as hyperparameters)."""
    return _flatten(config.to_dict())


def flat_config_keys(nested: dict[str, Any]) -> set[str]:
    """Return the dotted keys `flat_config` makes of nested config data."""
    return set(_flatten(nested))


def _flatten(nested: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, list):
            flat[prefix] = json.dumps(value, default=str)
        else:
            flat[prefix] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)

    visit("", nested)
    return flat


def open_ids_log(config: PretrainConfig, accelerator: Accelerator) -> Any:
    """Return this rank's ``logs/ids_rank{r}.jsonl`` opened for appending (``logging.record_ids``), else None."""
    if not config.logging.record_ids:
        return None
    path = Path(config.output_dir) / "logs" / f"ids_rank{accelerator.process_index}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a", buffering=1)


def close(handle: Any) -> None:
    """Close an ids log (None: nothing to close)."""
    if handle is not None:
        handle.close()
