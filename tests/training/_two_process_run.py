"""Run under `accelerate launch` by test_pretrain.py: the pretrain CLI, plus each rank's final parameters saved.

Only rank 0 exports the model, so to compare ranks each one dumps its own parameters just before the export.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

import siamdiff_hf.training.loop as loop
from siamdiff_hf.cli import main

_export_stage = loop.export_stage


def export_and_dump(accelerator, config, index, model, metrics, repo_id=None):
    parameters = {k: v.detach().cpu().clone() for k, v in accelerator.unwrap_model(model).named_parameters()}
    path = Path(config.output_dir) / f"parameters_stage{index + 1}_rank{accelerator.process_index}.pt"
    torch.save({"num_processes": accelerator.num_processes, "parameters": parameters}, path)
    return _export_stage(accelerator, config, index, model, metrics, repo_id=repo_id)


loop.export_stage = export_and_dump
sys.exit(main(["pretrain", *sys.argv[1:]]))
