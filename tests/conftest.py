"""Shared pytest fixtures: the test structures in tests/data (PDB entries, CC0)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests never reach the Hub; without this every look-up retries for ~30 s before failing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The test graphs are small: one thread per process is faster than two on a 2-core machine, and it keeps
# subprocess tests (two accelerate ranks, CLI runs) from oversubscribing the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

DATA_DIR = Path(__file__).resolve().parent / "data"
STRUCTURE_PATHS = sorted(DATA_DIR.glob("*.pdb.gz"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Return the directory of the test structures (tests/data)."""
    return DATA_DIR


@pytest.fixture(scope="session")
def structure_paths() -> list[Path]:
    """Return the paths of every test structure (``tests/data/*.pdb.gz``), sorted."""
    return list(STRUCTURE_PATHS)


@pytest.fixture(params=STRUCTURE_PATHS, ids=[p.name.split(".")[0] for p in STRUCTURE_PATHS])
def structure_path(request) -> Path:
    """Each test structure in turn (a parametrised fixture)."""
    return request.param
