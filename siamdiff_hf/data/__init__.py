"""Structure data through Hugging Face Datasets: AlphaFold DB streams (`load_afdb`) and the paper's downstream
benchmarks (`load_downstream`)."""

from siamdiff_hf.data.afdb import (
    AFDB_BASE_URL,
    AFDB_FEATURES,
    AFDB_MODEL_ORGANISMS,
    PROCESS_COUNTS,
    StreamCounts,
    StreamFilters,
    afdb_features,
    afdb_proteome_urls,
    load_afdb,
    protein_to_example,
    reset_skip_counts,
    skip_counts,
)
from siamdiff_hf.data.downstream import TASKS, load_downstream
from siamdiff_hf.data.prepare import PrepareSummary, prepare_afdb
from siamdiff_hf.data.sources import SourceError, SourceUnit, resolve_sources

__all__ = [
    "AFDB_BASE_URL",
    "AFDB_FEATURES",
    "AFDB_MODEL_ORGANISMS",
    "PROCESS_COUNTS",
    "TASKS",
    "PrepareSummary",
    "SourceError",
    "SourceUnit",
    "StreamCounts",
    "StreamFilters",
    "afdb_features",
    "afdb_proteome_urls",
    "load_afdb",
    "load_downstream",
    "prepare_afdb",
    "protein_to_example",
    "reset_skip_counts",
    "resolve_sources",
    "skip_counts",
]
