"""The minimal pre-training example runs as a user would run it and exports an encoder that embeds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModel

from siamdiff_hf import ProteinStructureProcessor

ROOT = Path(__file__).resolve().parents[2]


def test_pretrain_minimal_example(tmp_path):
    output = tmp_path / "encoder"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "pretrain_minimal.py"), "--steps", "3",
                             "--batch-size", "2", "--output", str(output)], env=env, capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "step 1: loss" in result.stdout and "encoder saved" in result.stdout
    model = AutoModel.from_pretrained(output)
    processor = ProteinStructureProcessor.from_pretrained(output)
    with torch.no_grad():
        out = model(**processor([ROOT / "tests" / "data" / "2xcjA.pdb.gz"], return_tensors="pt"))
    assert out.residue_embeddings.shape[0] == 84 and torch.isfinite(out.protein_embeddings).all()
