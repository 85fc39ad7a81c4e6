"""Mixed precision ``auto`` picks bf16 only where it pays, forced bf16 on a slow CPU warns once, and
``deterministic`` sets what torch needs for bit-reproducible runs."""

from __future__ import annotations

import warnings

import pytest
import torch

from siamdiff_hf.training import load_config, precision
from siamdiff_hf.training.precision import make_deterministic, resolve_mixed_precision

QUICKSTART = "configs/quickstart.yaml"


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"), [(False, False, "no"), (True, False, "bf16"),
                                                              (False, True, "bf16")])  # fmt: skip
def test_auto_is_bf16_only_on_cpus_with_native_bf16(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert resolve_mixed_precision("auto", cpu=True) == expected
    assert resolve_mixed_precision("no", cpu=True) == "no"


def test_auto_on_cuda_follows_the_card(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_mixed_precision("auto", cpu=False) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_mixed_precision("auto", cpu=False) == "no"


def test_forced_bf16_on_a_slow_cpu_warns_once(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(precision, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert resolve_mixed_precision("bf16", cpu=True) == "bf16"  # forced: kept, but said
        assert resolve_mixed_precision("bf16", cpu=True) == "bf16"
    assert len([w for w in caught if "slower than fp32" in str(w.message)]) == 1
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    monkeypatch.setattr(precision, "_warned", set())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_mixed_precision("bf16", cpu=True)  # native BF16: no warning


def test_auto_is_the_default_and_deterministic_is_a_key():
    config = load_config(QUICKSTART, ["training.mixed_precision=auto", "training.deterministic=true"])
    assert config.training.mixed_precision == "auto" and config.training.deterministic is True
    default = load_config(None, ["output_dir=x", "data.sources=bundled", "stages=[{max_steps: 1}]"])
    assert default.training.mixed_precision == "auto"


def test_make_deterministic_sets_torch(monkeypatch):
    threads, algorithms = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        make_deterministic()
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(algorithms)
