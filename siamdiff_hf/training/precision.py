"""Numerics of a run: which mixed precision pays on this hardware (``auto``), and the settings that make a run
bit-reproducible (``deterministic``).

bf16 autocast is fast on CUDA and on CPUs with native BF16 instructions (AVX512-BF16 or AMX), and slow elsewhere:
on an AVX2-only AMD EPYC a GearNet-Edge forward+backward under bf16 autocast ran about 13x slower than fp32 (the
line-graph matmuls 7-70x), as torch emulates bf16 matmuls there.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch

logger = logging.getLogger(__name__)
_warned: set[str] = set()


def cpu_has_native_bf16() -> bool:
    """Return whether this CPU runs bf16 matmuls natively (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def uses_cpu(force_cpu: bool = False) -> bool:
    """Return whether the run will train on the CPU (forced, ``ACCELERATE_USE_CPU``, or no CUDA device)."""
    env = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return force_cpu or env or not torch.cuda.is_available()


def resolve_mixed_precision(setting: str | None, *, cpu: bool) -> str | None:
    """Return the mixed precision to run with: ``auto`` becomes ``bf16`` on CUDA (when the card supports it) and
    on CPUs with native BF16, else ``no``; other settings pass through (None: the launcher's). Warns once when bf16
    is asked for on a CPU without native BF16."""
    if setting == "auto":
        if cpu:
            return "bf16" if cpu_has_native_bf16() else "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION") if setting is None else None
    if cpu and (setting or launcher) == "bf16":
        warn_slow_bf16()
    return setting


def warn_slow_bf16() -> None:
    """Warn (once per process) that bf16 autocast on this CPU is emulated and slow."""
    if cpu_has_native_bf16() or "bf16" in _warned:
        return
    _warned.add("bf16")
    capability = torch.backends.cpu.get_cpu_capability()
    warnings.warn(
        f"bf16 mixed precision on a CPU without native BF16 (capability {capability}, no AVX512-BF16/AMX): it runs "
        "many times slower than fp32 here; mixed_precision: auto picks fp32 on such CPUs",
        stacklevel=2,
    )


def make_deterministic() -> None:
    """Set what torch needs for bit-reproducible runs: one CPU thread (multi-threaded CPU reductions such as
    ``index_add_`` sum in varying order), deterministic algorithms (warn-only where none exists), deterministic
    cuDNN without autotuning, and the fixed cuBLAS workspace CUDA's deterministic matmuls require."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def numerics_record(mixed_precision: str, device: torch.device, deterministic: bool) -> dict[str, str | bool]:
    """Return what a run's log records about its numerics: the precision chosen and the hardware it was for."""
    record: dict[str, str | bool] = {"mixed_precision": str(mixed_precision), "device": device.type,
                                     "deterministic": deterministic}  # fmt: skip
    if device.type == "cpu":
        record.update(cpu_capability=torch.backends.cpu.get_cpu_capability(), cpu_native_bf16=cpu_has_native_bf16())
    elif device.type == "cuda":
        record["gpu"] = torch.cuda.get_device_name(device)
    return record
