"""Noise schedules of SiamDiff: values against the reference table, formulas, sampling."""

from __future__ import annotations

import json

import pytest
import torch

from siamdiff_hf.diffusion import STAGE_PRESETS, MaskRateSchedule, StructureNoiseSchedule

# Reference table (official formulas): t -> (beta_t, abar_t, noise std, mask rate), as printed there.
STAGE1_TABLE = {
    0: ("0.001245", "0.99876", "0.0353", "0.1585"),
    9: ("0.001725", "0.98562", "0.121", "0.235"),
    24: ("0.005305", "0.94017", "0.252", "0.3625"),
    49: ("0.049", "0.5365", "0.929", "0.575"),
    74: ("0.0952", "0.06857", "3.686", "0.7875"),
    99: ("0.09976", "0.005126", "13.93", "1.0"),
}
STAGE2_STD = ("0.0100", "0.0141", "0.0173", "0.0200", "0.0224")
STAGE2_RATE = ("0.32", "0.49", "0.66", "0.83", "1.0")


def assert_printed(value: float, printed: str) -> None:
    """Check that ``value`` rounds to ``printed`` (to the digits shown)."""
    decimals = len(printed.split(".")[1])
    assert abs(value - float(printed)) <= 0.5 * 10**-decimals + 1e-15, (value, printed)


def schedules(stage: int) -> tuple[StructureNoiseSchedule, MaskRateSchedule]:
    preset = STAGE_PRESETS[stage]
    return StructureNoiseSchedule.from_dict(preset), MaskRateSchedule(num_timesteps=preset["num_timesteps"])


def test_stage1_matches_reference_table():
    structure, mask = schedules(1)
    assert structure.betas.dtype == torch.float64 and structure.betas.shape == (100,)
    for t, (beta, abar, std, rate) in STAGE1_TABLE.items():
        assert_printed(structure.betas[t].item(), beta)
        assert_printed(structure.alphas_cumprod[t].item(), abar)
        assert_printed(structure.noise_std(t).item(), std)
        assert_printed(mask.rate(t).item(), rate)


def test_stage2_matches_reference_table():
    structure, mask = schedules(2)
    t = torch.arange(5)
    assert torch.allclose(structure.betas, torch.full((5,), 1e-4, dtype=torch.float64), rtol=0, atol=1e-18)
    assert_printed(structure.alphas_cumprod[0].item(), "0.9999")
    assert_printed(structure.alphas_cumprod[4].item(), "0.9995")
    for value, printed in zip(structure.noise_std(t).tolist(), STAGE2_STD):
        assert_printed(value, printed)
    for value, printed in zip(mask.rate(t).tolist(), STAGE2_RATE):
        assert_printed(value, printed)
    assert STAGE_PRESETS[1]["gamma"] == 0.5 and STAGE_PRESETS[2]["gamma"] == 0.2


def test_schedule_definition():
    s = StructureNoiseSchedule(beta_start=1e-3, beta_end=0.1, num_timesteps=100)
    expected = torch.sigmoid(torch.linspace(-6, 6, 100, dtype=torch.float64)) * (0.1 - 1e-3) + 1e-3
    torch.testing.assert_close(s.betas, expected)
    torch.testing.assert_close(s.alphas_cumprod, torch.cumprod(1 - expected, 0))
    assert torch.all(s.alphas_cumprod[1:] < s.alphas_cumprod[:-1])


def test_add_noise_and_edge_target():
    s = StructureNoiseSchedule()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g)
    eps = torch.randn(6, 3, generator=g)
    t = torch.tensor([0, 0, 50, 50, 99, 99])
    abar = s.alphas_cumprod[t].float()[:, None]
    noisy = s.add_noise(x, eps, t)
    assert noisy.dtype == torch.float32
    torch.testing.assert_close(noisy, x + torch.sqrt((1 - abar) / abar) * eps)
    torch.testing.assert_close(s.add_noise(x, eps, 7), x + s.noise_std(7).float() * eps)
    # (n, 37, 3) positions broadcast the per-row std over the trailing axes.
    x37 = torch.randn(6, 37, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(s.add_noise(x37, x37, t), x37 * (1 + s.noise_std(t))[:, None, None])

    d, d_noisy = torch.rand(6, generator=g) + 3, torch.rand(6, generator=g) + 3
    target = s.edge_target(d, d_noisy, t)
    abar64 = s.alphas_cumprod[t]  # the reference in float64: 1 - abar loses digits in float32 at small t
    assert target.dtype == torch.float32
    torch.testing.assert_close(target, ((d - d_noisy).double() * torch.sqrt(abar64 / (1 - abar64))).float())
    assert torch.all(s.edge_target(d, d, t) == 0)
    with pytest.raises(ValueError):
        s.noise_std(100)


def test_sample_timesteps_and_serialisation():
    s = StructureNoiseSchedule(1e-4, 1e-4, 5)
    t1 = s.sample_timesteps(1000, generator=torch.Generator().manual_seed(3))
    t2 = s.sample_timesteps(1000, generator=torch.Generator().manual_seed(3))
    assert t1.dtype == torch.long and torch.equal(t1, t2)
    assert set(t1.tolist()) == set(range(5))
    config = json.loads(json.dumps(s.to_dict()))
    assert StructureNoiseSchedule.from_dict(config) == s
    m = MaskRateSchedule(5, 0.15, 1.0)
    assert MaskRateSchedule.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_num_masked():
    m = MaskRateSchedule(5)
    n = torch.tensor([100, 100, 3, 1, 0, 7])
    t = torch.tensor([0, 4, 0, 2, 3, 1])
    # 100 * 0.32 is 32 exactly (binary floating point alone would give 31.999...).
    assert m.num_masked(n, t).tolist() == [32, 100, 1, 1, 0, 3]


def test_sample_masked_residues():
    m = MaskRateSchedule(100)
    lengths = torch.tensor([50, 7, 120, 1])
    batch = torch.repeat_interleave(torch.arange(4), lengths)
    offsets = torch.cumsum(lengths, 0) - lengths
    t = torch.tensor([99, 10, 40, 0])
    idx = m.sample_masked_residues(batch, t, generator=torch.Generator().manual_seed(0))
    again = m.sample_masked_residues(batch, t, generator=torch.Generator().manual_seed(0))
    other = m.sample_masked_residues(batch, t, generator=torch.Generator().manual_seed(1))
    assert idx.dtype == torch.long and torch.equal(idx, again) and not torch.equal(idx, other)
    counts = m.num_masked(lengths, t)
    assert torch.equal(torch.bincount(batch[idx], minlength=4), counts)
    owner = torch.repeat_interleave(torch.arange(4), counts)
    assert torch.equal(batch[idx], owner)  # grouped by protein, in order
    assert torch.all(idx >= offsets[owner]) and torch.all(idx < offsets[owner] + lengths[owner])
    # With replacement: at rate 1.0, 50 draws among 50 residues repeat some (as the official code).
    assert idx[:50].unique().numel() < 50


def test_sample_masked_residues_is_uniform():
    m = MaskRateSchedule(1, min_rate=1.0, max_rate=1.0)
    batch = torch.arange(2000).repeat_interleave(10)
    idx = m.sample_masked_residues(
        batch, torch.zeros(2000, dtype=torch.long), generator=torch.Generator().manual_seed(0)
    )
    local = torch.bincount(idx % 10, minlength=10).double()
    assert local.sum() == 20000 and torch.all((local / 2000 - 1).abs() < 0.1)
