"""Whole official SiamDiff task checkpoints (encoder + struct/dist/seq heads + alphas) -> SiamDiffForPreTraining."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForPreTraining

from siamdiff_hf import GearNetConfig, GearNetModel, ProteinStructureProcessor, SiamDiffConfig, SiamDiffForPreTraining
from siamdiff_hf.cli import main
from siamdiff_hf.convert.siamdiff_task import convert_siamdiff_task_state_dict, schedule_from_alphas
from siamdiff_hf.convert.torchdrug import convert_gearnet_state_dict
from siamdiff_hf.errors import CheckpointError

DATA = Path(__file__).parents[1] / "data"


def official_alphas(beta_start: float, beta_end: float, num_timesteps: int) -> torch.Tensor:
    """The `alphas` buffer as SiamDiff `siamdiff/task.py` computes it (sigmoid betas, cumulative product)."""
    betas = torch.linspace(-6, 6, num_timesteps).sigmoid() * (beta_end - beta_start) + beta_start
    return (1.0 - betas).cumprod(dim=0)


def task_state_dict(model: SiamDiffForPreTraining, alphas: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official task layout: `model.*` encoder keys, the three heads under their own names, `alphas`."""
    state = {}
    for key, value in model.state_dict().items():
        state[f"model.{key[len('encoder.') :]}" if key.startswith("encoder.") else key] = value.clone()
    state["alphas"] = alphas
    return state


@pytest.fixture(scope="module")
def package_model() -> SiamDiffForPreTraining:
    torch.manual_seed(0)
    encoder = GearNetConfig(hidden_dims=[16, 16], num_angle_bin=4)
    model = SiamDiffForPreTraining(SiamDiffConfig(encoder_config=encoder, num_mlp_layer=2))
    with torch.no_grad():  # heads away from their initialisation, so that dropping one would show
        for head in (model.struct_mlp, model.dist_mlp, model.seq_mlp):
            for parameter in head.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def inputs():
    return ProteinStructureProcessor()([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz"], return_tensors="pt")


def loss(model: SiamDiffForPreTraining, inputs, seed: int) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, generator=torch.Generator().manual_seed(seed)).loss


def test_task_converts_to_the_same_model_and_loss(package_model, inputs):
    state = task_state_dict(package_model, official_alphas(1e-3, 0.1, 100))
    converted = convert_siamdiff_task_state_dict(state, convert_gearnet_state_dict(state))
    assert converted.config.num_mlp_layer == 2
    assert (converted.config.beta_start, converted.config.beta_end, converted.config.num_timesteps) == (1e-3, 0.1, 100)
    ours = converted.state_dict()
    for key, value in package_model.state_dict().items():
        assert torch.equal(ours[key], value), key
    for seed in (0, 1):
        torch.testing.assert_close(loss(converted, inputs, seed), loss(package_model, inputs, seed), rtol=1e-6, atol=0)
    assert not torch.equal(loss(converted, inputs, 0), loss(converted, inputs, 1))  # the draws matter


def test_cli_writes_pretraining_and_encoder_folders(package_model, inputs, tmp_path, capsys):
    torch.save(task_state_dict(package_model, official_alphas(1e-4, 1e-4, 5)), tmp_path / "stage2_task.pth")
    assert main(["convert-torchdrug", str(tmp_path / "stage2_task.pth"), "-o", str(tmp_path / "hf")]) == 0
    assert "SiamDiffForPreTraining" in capsys.readouterr().out
    model = AutoModelForPreTraining.from_pretrained(tmp_path / "hf" / "model").eval()
    assert isinstance(model, SiamDiffForPreTraining)
    assert (model.config.num_timesteps, model.config.beta_start, model.config.gamma) == (5, 1e-4, 0.2)  # stage 2
    stage2 = SiamDiffForPreTraining(SiamDiffConfig(encoder_config=package_model.config.encoder_config,
                                                   num_mlp_layer=2, beta_start=1e-4, beta_end=1e-4,
                                                   num_timesteps=5, gamma=0.2))  # fmt: skip
    stage2.load_state_dict(package_model.state_dict())
    torch.testing.assert_close(loss(model, inputs, 3), loss(stage2.eval(), inputs, 3), rtol=1e-6, atol=0)
    encoder = AutoModel.from_pretrained(tmp_path / "hf" / "encoder")
    assert isinstance(encoder, GearNetModel)
    assert "pre-training heads" in (tmp_path / "hf" / "model" / "README.md").read_text()
    # --encoder-only keeps the earlier behaviour: the encoder folder alone
    assert main(["convert-torchdrug", str(tmp_path / "stage2_task.pth"), "-o", str(tmp_path / "enc"),
                 "--encoder-only"]) == 0  # fmt: skip
    assert (tmp_path / "enc" / "config.json").exists() and not (tmp_path / "enc" / "model").exists()


def test_schedule_is_read_back_from_alphas():
    assert schedule_from_alphas(official_alphas(1e-3, 0.1, 100)) == dict(beta_start=1e-3, beta_end=0.1,
                                                                        num_timesteps=100, gamma=0.5)  # fmt: skip
    custom = schedule_from_alphas(official_alphas(2e-3, 0.05, 40))
    assert custom["num_timesteps"] == 40 and "gamma" not in custom
    assert custom["beta_start"] == pytest.approx(2e-3, rel=1e-3) and custom["beta_end"] == pytest.approx(0.05, rel=1e-3)
    with pytest.raises(CheckpointError, match="not a sigmoid beta schedule"):
        schedule_from_alphas(torch.linspace(0.99, 0.5, 10) ** 2)


def test_heads_that_do_not_fit_are_refused(package_model):
    state = task_state_dict(package_model, official_alphas(1e-3, 0.1, 100))
    state["seq_mlp.layers.1.weight"] = torch.zeros(21, 16 * 2)
    with pytest.raises(CheckpointError, match=r"seq_mlp\.layers\.1\.weight"):
        convert_siamdiff_task_state_dict(state, convert_gearnet_state_dict(state))
    del state["dist_mlp.layers.0.weight"], state["dist_mlp.layers.0.bias"]
    del state["dist_mlp.layers.1.weight"], state["dist_mlp.layers.1.bias"]
    with pytest.raises(CheckpointError, match="lacks the heads"):
        convert_siamdiff_task_state_dict(state, convert_gearnet_state_dict(state))


def test_gvp_task_is_recognised_and_keeps_every_weight(tmp_path):
    from siamdiff_hf import GVPConfig

    torch.manual_seed(3)
    encoder = GVPConfig(node_h_dim=(16, 4), edge_h_dim=(8, 1), num_layers=2)
    model = SiamDiffForPreTraining(SiamDiffConfig(encoder_config=encoder, num_mlp_layer=3, beta_start=1e-4,
                                                  beta_end=1e-4, num_timesteps=5, gamma=0.2))  # fmt: skip
    torch.save(task_state_dict(model, official_alphas(1e-4, 1e-4, 5)), tmp_path / "gvp_task.pth")
    assert main(["convert-torchdrug", str(tmp_path / "gvp_task.pth"), "-o", str(tmp_path / "hf")]) == 0
    converted = AutoModelForPreTraining.from_pretrained(tmp_path / "hf" / "model")
    assert converted.config.encoder_config.model_type == "gvp" and converted.config.num_mlp_layer == 3
    ours = converted.state_dict()
    assert set(ours) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(ours[key], value), key
