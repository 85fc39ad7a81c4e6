"""TorchDrug GearNet-Edge checkpoints -> GearNetModel, through the API and the CLI."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from torchdrug_reference import reference_shapes
from transformers import AutoModel

from siamdiff_hf import GearNetConfig, GearNetModel, ProteinStructureProcessor
from siamdiff_hf.cli import main
from siamdiff_hf.convert.torchdrug import convert_gearnet_state_dict, load_torch_state_dict
from siamdiff_hf.errors import CheckpointError

DATA = Path(__file__).parents[1] / "data"


def torchdrug_state_dict(level: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A TorchDrug-format GearNet-Edge state dict with random weights and the reference key names."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in reference_shapes(level).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    return state


@pytest.fixture(scope="module")
def inputs():
    return ProteinStructureProcessor()([DATA / "2xcjA.pdb.gz"], return_tensors="pt")


@pytest.mark.parametrize("level", ["residue", "atom"])
def test_published_layout_converts_exactly_and_runs(level, inputs):
    state = torchdrug_state_dict(level)
    model = convert_gearnet_state_dict(state)
    assert model.config.level == level
    assert model.config.readout == ("sum" if level == "residue" else "mean")
    ours = model.state_dict()
    for key, value in state.items():
        assert torch.equal(ours[key], value), key
    with torch.no_grad():
        out = model(**inputs)
    assert out.protein_embeddings.shape == (1, 3072 if level == "residue" else 768)
    assert torch.isfinite(out.residue_embeddings).all()


def test_task_and_engine_checkpoints_are_unwrapped(tmp_path):
    encoder = torchdrug_state_dict("atom")
    task = {"alphas": torch.rand(100), **{f"model.{k}": v for k, v in encoder.items()}}
    task["struct_mlp.layers.0.weight"] = torch.zeros(768, 1536)
    torch.save({"model": task, "optimizer": {"lr": torch.tensor(1e-4)}}, tmp_path / "engine.pth")
    model = convert_gearnet_state_dict(load_torch_state_dict(tmp_path / "engine.pth"))
    assert torch.equal(model.state_dict()["layers.3.linear.weight"], encoder["layers.3.linear.weight"])


def test_custom_sizes_are_inferred_from_shapes():
    small = GearNetModel(GearNetConfig(hidden_dims=[32, 48, 48], num_angle_bin=4))
    model = convert_gearnet_state_dict(small.state_dict())
    assert model.config.hidden_dims == [32, 48, 48] and model.config.num_angle_bin == 4
    assert model.config.edge_input_dim == 59 and model.config.num_relation == 7


def test_bad_checkpoints_are_refused_with_clear_errors(tmp_path):
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pth"):
        load_torch_state_dict(tmp_path / "garbage.pth")

    torch.save({"object": argparse.Namespace(x=1)}, tmp_path / "pickle.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_torch_state_dict(tmp_path / "pickle.pth")
    with pytest.raises(CheckpointError, match="no GearNet encoder"):
        convert_gearnet_state_dict({"encoder.weight": torch.zeros(3)})
    broken = torchdrug_state_dict("residue")
    broken["layers.2.linear.weight"] = torch.zeros(512, 100)
    with pytest.raises(CheckpointError, match="wrong shapes"):
        convert_gearnet_state_dict(broken)


def test_cli_convert_then_embed(tmp_path, capsys):
    torch.save(torchdrug_state_dict("residue"), tmp_path / "siamdiff_gearnet_res.pth")
    assert (
        main(["convert-torchdrug", str(tmp_path / "siamdiff_gearnet_res.pth"), "--output", str(tmp_path / "hf")]) == 0
    )
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
        assert (tmp_path / "hf" / name).exists(), name
    assert "siamdiff-hf" in (tmp_path / "hf" / "README.md").read_text()
    assert isinstance(AutoModel.from_pretrained(tmp_path / "hf"), GearNetModel)
    capsys.readouterr()  # the successful run's output (transformers' progress bars unless disabled) is not the error
    assert main(["convert-torchdrug", str(tmp_path / "missing.pth"), "--output", str(tmp_path / "x")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("siamdiff-hf convert-torchdrug: error:") and "missing.pth" in error and "\n" not in error
