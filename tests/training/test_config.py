"""Run configs: every shipped config validates, overrides apply, and each kind of mistake fails fast naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from transformers import CONFIG_MAPPING

from siamdiff_hf.cli import main
from siamdiff_hf.training import ConfigError, bundled_structures, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
QUICKSTART = CONFIGS / "quickstart.yaml"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_validate(path: Path):
    raw = yaml.safe_load(path.read_text())
    model_type = raw["model"]["encoder"]["model_type"]
    if model_type not in CONFIG_MAPPING:
        pytest.skip(f"encoder {model_type!r} is not part of this build yet")
    config = load_config(path)
    assert config.stages and all(stage.max_steps > 0 for stage in config.stages)
    assert config.optimizer.learning_rate == 1e-4  # the paper's Adam
    assert config.crop_length == {"residue": 150, "atom": 100}[config.level]


def test_paper_stage_schedules():
    from siamdiff_hf import STAGES

    for name in ("siamdiff_gearnet_edge_residue", "siamdiff_gearnet_edge_atom", "diffpret_gearnet_edge_residue"):
        config = load_config(CONFIGS / f"{name}.yaml")
        for i, stage in enumerate(config.stages):
            schedule = {k: getattr(stage, k) for k in STAGES[i + 1]}
            assert schedule == STAGES[i + 1], name
    assert load_config(CONFIGS / "diffpret_gearnet_edge_residue.yaml").model.siamdiff["use_mutual_information"] is False


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {}
    for path in sorted((CONFIGS / "accelerate").glob("*.yaml")):
        config = load_config_from_file(str(path))
        kinds[path.stem] = (config.distributed_type.value, config.num_processes, config.mixed_precision)
    assert kinds == {
        "single_gpu": ("NO", 1, "bf16"), "multi_gpu_8": ("MULTI_GPU", 8, "bf16"),
        "multi_node": ("MULTI_GPU", 16, "bf16"), "fsdp": ("FSDP", 8, "bf16"),
    }  # fmt: skip


def test_overrides_and_bundled_source():
    config = load_config(QUICKSTART, ["output_dir=/tmp/x", "stages.0.max_steps=5", "data.batch_size=3",
                                      "model.encoder.hidden_dims=[16,16]", "optimizer.learning_rate=2e-4"])  # fmt: skip
    assert config.output_dir == "/tmp/x" and config.stages[0].max_steps == 5 and config.data.batch_size == 3
    assert config.model.encoder["hidden_dims"] == [16, 16]
    assert config.optimizer.learning_rate == 2e-4  # `2e-4` is a string to PyYAML; accepted for float keys
    assert config.data.sources == ["bundled"]
    assert load_config(QUICKSTART, ["training.mixed_precision=no"]).training.mixed_precision == "no"  # YAML: false
    assert sorted(p.name for p in bundled_structures().glob("*.pdb.gz")) == sorted(
        p.name for p in (ROOT / "tests" / "data").glob("*.pdb.gz")
    )


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        (["data.batch_sise=4"], "data.batch_sise", "unknown key"),
        (["trainig.cpu=true"], "trainig", "unknown key"),
        (["data.batch_size=four"], "data.batch_size", "expected an integer"),
        (["training.cpu=yes please"], "training.cpu", "expected true or false"),
        (["training.reuse_freed_memory=maybe"], "training.reuse_freed_memory", "expected true or false"),
        (["optimizer.learning_rate=fast"], "optimizer.learning_rate", "expected a number"),
        (["stages.0.max_steps=0"], "stages.0.max_steps", "positive"),
        (["stages.5.max_steps=3"], "stages.5", "no list item"),
        (["data.sources=[]"], "data.sources", "missing"),
        (["data.sources=[/no/such/folder]"], "data.sources.0", "no such file"),
        (["output_dir="], "output_dir", "missing"),
        (["model.encoder.hidden_dim=[8]"], "model.encoder.hidden_dim", "unknown key"),
        (["model.encoder.model_type=gearnett"], "model.encoder.model_type", "unknown encoder"),
        (["model.siamdiff.gama=0.3"], "model.siamdiff.gama", "unknown key"),
        (["data.processor.crop=3"], "data.processor.crop", "unknown key"),
        (["training.mixed_precision=fp8"], "training.mixed_precision", "must be"),
        (["optimizer.lr_scheduler=cosinus"], "optimizer.lr_scheduler", "must be"),
        (["data.prefer=mmcif"], "data.prefer", "must be"),
        (["stages.1.gamma=1.5"], "stages.1.gamma", "[0, 1]"),
        (["data"], "data", "key=value"),
        (["model.sequence_model_from=esm2"], "model.sequence_model_from", "esm_gearnet"),
        (["data.prefetch_factor=4"], "data.prefetch_factor", "num_workers > 0"),
        (["data.num_workers=2", "data.prefetch_factor=0"], "data.prefetch_factor", "positive"),
    ],
)
def test_bad_config_names_the_key(overrides, key, words):
    with pytest.raises(ConfigError) as info:
        load_config(QUICKSTART, overrides)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ") and words in str(info.value)


def test_missing_sources_and_stages_in_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("output_dir: out\nstages: [{max_steps: 1}]\n")
    with pytest.raises(ConfigError, match=r"^data\.sources: missing"):
        load_config(path)
    path.write_text("output_dir: out\ndata: {sources: bundled}\n")
    with pytest.raises(ConfigError, match=r"^stages: missing"):
        load_config(path)
    path.write_text("output_dir: out\ndata: {sources: bundled}\nstages: [{max_steps: 2, beta_end: hot}]\n")
    with pytest.raises(ConfigError, match=r"^stages\.0\.beta_end: expected a number"):
        load_config(path)


def test_cli_fails_fast_on_bad_config(tmp_path, capsys):
    code = main(["pretrain", str(QUICKSTART), f"output_dir={tmp_path / 'run'}", "data.batch_size=-1"])
    assert code == 2
    assert "data.batch_size" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing started


def test_cli_dry_run_prints_the_resolved_config(tmp_path, capsys):
    assert main(["pretrain", str(QUICKSTART), f"output_dir={tmp_path}", "seed=7", "--dry-run"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 7 and printed["output_dir"] == str(tmp_path)


def test_objective_is_generic():
    config = load_config(QUICKSTART, ["model.objective=residue_type_prediction", "model.siamdiff={}",
                                      "stages=[{max_steps: 2}]", "model.objective_settings.mask_rate=0.2"])  # fmt: skip
    assert config.model.objective == "residue_type_prediction" and config.objective_settings == {"mask_rate": 0.2}
    # the SiamDiff alias and the generic key are one setting
    siamdiff = load_config(QUICKSTART, ["model.objective_settings.gamma=0.3"])
    assert siamdiff.objective_settings == {"use_mutual_information": True, "gamma": 0.3}


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        (["model.objective=bert"], "model.objective", "unknown pre-training objective"),
        (["model.objective=distance_prediction", "model.siamdiff={}"], "stages.0.beta_start", "no beta_start"),
        (["model.objective=distance_prediction"], "model.siamdiff", "objective_settings"),
        (
            [
                "model.objective=distance_prediction",
                "model.siamdiff={}",
                "stages=[{max_steps: 1}]",
                "model.objective_settings.gama=1",
            ],
            "model.objective_settings.gama",
            "unknown key",
        ),
        (
            ["model.objective_settings.use_mutual_information=false"],
            "model.siamdiff.use_mutual_information",
            "disagrees",
        ),
    ],
)
def test_bad_objective_names_the_key(overrides, key, words):
    with pytest.raises(ConfigError) as info:
        load_config(QUICKSTART, overrides)
    assert info.value.key == key and words in str(info.value)
