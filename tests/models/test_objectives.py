"""Every pre-training objective on real chains: a step, learning, rotation invariance, reproducible draws, save/load.

The objective-specific facts (what is masked, removed, cropped, noised, and the targets) are in
test_objective_views.py; SiamDiff itself in test_modeling_siamdiff.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from testing_utils import random_rotation, to64
from transformers import AutoConfig, AutoModelForPreTraining

import siamdiff_hf  # noqa: F401  (registers the objectives)
from siamdiff_hf import ProteinStructureProcessor
from siamdiff_hf.models.pretraining_utils import ObjectiveForPreTraining

DATA = Path(__file__).parents[1] / "data"
OBJECTIVES = [
    "residue_type_prediction",
    "distance_prediction",
    "angle_prediction",
    "dihedral_prediction",
    "multiview_contrast",
    "denoising_score_matching",
    "torsional_diffusion",
    "combined_objectives",
]
CASES = [(name, "atom" if name == "torsional_diffusion" else "residue") for name in OBJECTIVES] + [
    ("residue_type_prediction", "atom"),
    ("dihedral_prediction", "atom"),
    ("multiview_contrast", "atom"),
]


def build(name: str, level: str, hidden: list[int] | None = None, **settings) -> ObjectiveForPreTraining:
    encoder = {"model_type": "gearnet", "level": level, "hidden_dims": hidden or [16, 16]}
    config = AutoConfig.for_model(name, encoder_config=encoder, **settings)
    return AutoModelForPreTraining.from_config(config)


@pytest.fixture(scope="module")
def inputs():
    processor = ProteinStructureProcessor(crop_length=40)
    return processor([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz", DATA / "3e8mA.pdb.gz"], return_tensors="pt")


@pytest.mark.parametrize(("name", "level"), CASES, ids=[f"{n}-{lv}" for n, lv in CASES])
def test_a_step_gives_a_finite_loss_and_its_metrics(inputs, name, level):
    model = build(name, level)
    assert type(model).__name__.endswith("ForPreTraining") and model.config.level == level
    out = model(**inputs, generator=torch.Generator().manual_seed(0))
    keys = list(out.keys())
    assert keys[0] == "loss" and len(keys) >= 2, keys
    for key, value in out.items():
        assert value.ndim == 0 and torch.isfinite(value), (key, value)
    out.loss.backward()
    grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)  # the loss reaches the encoder
    assert isinstance(model(**inputs, generator=torch.Generator().manual_seed(0), return_dict=False), tuple)


LEARNING = {  # settings that keep the test short and the loss away from its floor
    "multiview_contrast": dict(tau=1.0),  # at 0.07 random embeddings of 2 proteins already score ~0 loss
    "angle_prediction": dict(num_sample=128),
    "dihedral_prediction": dict(num_sample=128),
}


@pytest.mark.parametrize("name", OBJECTIVES)
def test_a_hundred_steps_on_two_chains_lower_the_loss(name):
    processor = ProteinStructureProcessor(crop_length=20 if name == "torsional_diffusion" else 30)
    inputs = processor([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz"], return_tensors="pt")
    torch.manual_seed(0)
    level = "atom" if name == "torsional_diffusion" else "residue"
    model = build(name, level, hidden=[16], **LEARNING.get(name, {}))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    history = []
    for _ in range(100):
        if name == "torsional_diffusion":  # the same draws each step: a random torsion score is not learnt in 100
            generator = torch.Generator().manual_seed(0)
        out = model(**inputs, generator=generator)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        history.append(out.loss.item())
    first, last = sum(history[:15]) / 15, sum(history[-15:]) / 15
    assert last < 0.9 * first, (first, last)


INVARIANCE = [
    ("residue_type_prediction", "residue"),
    ("residue_type_prediction", "atom"),
    ("distance_prediction", "residue"),
    ("distance_prediction", "atom"),
    ("angle_prediction", "residue"),
    ("angle_prediction", "atom"),
    ("dihedral_prediction", "residue"),
    ("dihedral_prediction", "atom"),
    ("multiview_contrast", "residue"),
    ("multiview_contrast", "atom"),
    ("denoising_score_matching", "residue"),
    ("denoising_score_matching", "atom"),
    ("torsional_diffusion", "atom"),
    ("combined_objectives", "residue"),
]


@pytest.mark.parametrize(("name", "level"), INVARIANCE, ids=[f"{n}-{lv}" for n, lv in INVARIANCE])
def test_the_loss_is_invariant_to_rotating_and_translating_the_input(inputs, name, level):
    model = build(name, level).double().eval()
    batch = to64(inputs)
    rotation = random_rotation(torch.Generator().manual_seed(3))
    shift = torch.tensor([4.0, -7.0, 2.5], dtype=torch.float64)
    mask = batch["atom_mask"][..., None]
    moved = dict(batch, atom_positions=(batch["atom_positions"] @ rotation.T + shift) * mask)
    extra, moved_extra = {}, {}
    if name == "denoising_score_matching":  # its only vector draws: rotate them with the input
        n = batch["residue_type"].shape[0] if level == "residue" else int(batch["atom_mask"].sum())
        noise = torch.randn(n, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        extra = {"structure_noise": noise, "noise_levels": torch.tensor([3, 20, 49])}
        moved_extra = {"structure_noise": noise @ rotation.T, "noise_levels": extra["noise_levels"]}
    with torch.no_grad():
        a = model(**batch, **extra, generator=torch.Generator().manual_seed(9))
        b = model(**moved, **moved_extra, generator=torch.Generator().manual_seed(9))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-7, atol=1e-9, msg=key)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_the_draws_are_reproducible_with_a_generator(inputs, name):
    model = build(name, "atom" if name == "torsional_diffusion" else "residue").eval()
    with torch.no_grad():
        a = model(**inputs, generator=torch.Generator().manual_seed(1))
        b = model(**inputs, generator=torch.Generator().manual_seed(1))
        c = model(**inputs, generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a.loss, c.loss)


def settings(config) -> dict:
    """Return a config's dict without what transformers records on loading (the path, the dtype)."""
    recorded = ("_name_or_path", "dtype")
    values = {k: v for k, v in config.to_dict().items() if k not in recorded}
    values["encoder_config"] = {k: v for k, v in values["encoder_config"].items() if k not in recorded}
    return values


@pytest.mark.parametrize("name", OBJECTIVES)
def test_save_and_load_reproduce_the_model(tmp_path, inputs, name):
    model = build(name, "atom" if name == "torsional_diffusion" else "residue").eval()
    model.save_pretrained(tmp_path / "run")
    loaded = AutoModelForPreTraining.from_pretrained(tmp_path / "run").eval()
    assert type(loaded) is type(model) and settings(loaded.config) == settings(model.config)
    with torch.no_grad():
        a = model(**inputs, generator=torch.Generator().manual_seed(7))
        b = loaded(**inputs, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(a[k], b[k]) for k in a)
    model.encoder.save_pretrained(tmp_path / "encoder")  # the export the fine-tuning heads load
    encoder = type(model.encoder).from_pretrained(tmp_path / "encoder")
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, encoder.state_dict()[key]), key


def test_level_has_one_source_of_truth():
    config = AutoConfig.for_model("distance_prediction", encoder_config={"model_type": "gearnet", "level": "atom"})
    assert config.level == "atom"
    with pytest.raises(ValueError, match="disagrees with the encoder"):
        AutoConfig.for_model("distance_prediction", encoder_config={"model_type": "gearnet"}, level="atom")
    with pytest.raises(ValueError, match="atom-level encoder"):
        AutoConfig.for_model("torsional_diffusion", encoder_config={"model_type": "gearnet", "level": "residue"})
    with pytest.raises(ValueError, match="objective"):
        AutoConfig.for_model("combined_objectives", objectives=[{"weight": 1.0}])


@pytest.mark.parametrize("name", [n for n in OBJECTIVES if n != "combined_objectives"])
def test_objectives_are_encoder_agnostic(inputs, name):
    config = AutoConfig.for_model(name, encoder_config={"model_type": "gvp"})  # atom level, no edge features
    model = AutoModelForPreTraining.from_config(config)
    out = model(**inputs, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
