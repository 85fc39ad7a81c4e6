"""The baseline and ablation configs: every one validates and builds its objective with the paper's settings; one
per objective runs through `siamdiff-hf pretrain` (tiny overrides) and exports an encoder the fine-tuning heads
load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoConfig, AutoModelForSequenceClassification

from siamdiff_hf.cli import main
from siamdiff_hf.training import load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs" / "baselines").glob("*.yaml")) + sorted(
    (ROOT / "configs" / "ablations").glob("*.yaml")
)
TINY = [
    "data.sources=[bundled]", "model.encoder.hidden_dims=[8]", "data.batch_size=2", "data.crop_length=20",
    "logging.log_every=1", "logging.progress_bar=false", "logging.report_to=[none]",
]  # fmt: skip
RUN = [  # one config per objective (and per SiamDiff switch) through the CLI
    "residue_type_prediction_gearnet_edge_atom", "distance_prediction_gearnet_edge_residue",
    "angle_prediction_gearnet_edge_residue", "dihedral_prediction_gearnet_edge_residue",
    "multiview_contrast_gearnet_edge_residue", "denoising_score_matching_gearnet_edge_residue",
    "torsional_diffusion_gearnet_edge_atom", "residue_type_and_angle_prediction_gearnet_edge_atom",
    "siamdiff_no_sequence_diffusion_gearnet_edge_atom",
]  # fmt: skip


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates_with_the_papers_settings(path):
    config = load_config(path, check_sources=False)
    level = config.model.encoder["level"]
    assert path.stem.endswith(level)
    objective = AutoConfig.for_model(
        config.model.objective, encoder_config=config.model.encoder, **config.objective_settings
    )
    assert objective.level == level
    batch = config.data.batch_size
    table5 = {  # paper Table 5: batch per GPU (residue, atom), learning rate, max length (None: no crop)
        "residue_type_prediction": ((96, 64), 1e-3, 100), "distance_prediction": ((128, 64), 1e-3, 100),
        "angle_prediction": ((96, 64), 1e-3, 100), "dihedral_prediction": ((96, 64), 1e-3, 100),
        "multiview_contrast": ((96, 64), 1e-3, None), "denoising_score_matching": ((12, 12), 1e-4, 200),
    }  # fmt: skip
    if config.model.objective in table5:
        batches, lr, max_length = table5[config.model.objective]
        assert batch == batches[level == "atom"] and config.optimizer.learning_rate == lr
        if max_length is None:  # multiview contrast crops its own views; the loader truncates nothing
            assert config.data.crop_length >= 10_000
        else:
            assert config.data.crop_length == max_length and config.data.random_crop
    if config.model.objective == "siamdiff":
        assert batch == (64 if not objective.use_mutual_information else 32)
        assert config.data.crop_length == 100 and config.optimizer.learning_rate == 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", RUN)
def test_config_pretrains_and_exports_an_encoder(tmp_path, name):
    path = next(p for p in CONFIGS if p.stem == name)
    stages = yaml.safe_load(path.read_text())["stages"]
    steps = [f"stages.{i}.max_steps=1" for i in range(len(stages))]
    assert main(["pretrain", str(path), f"output_dir={tmp_path}", *TINY, *steps]) == 0
    encoder_dir = tmp_path / stages[-1]["name"] / "encoder"
    model = AutoModelForSequenceClassification.from_pretrained(encoder_dir, num_labels=3)
    encoder = getattr(model, model.base_model_prefix)
    assert encoder.config.hidden_dims == [8]
    assert all(torch.isfinite(p).all() for p in encoder.parameters())
