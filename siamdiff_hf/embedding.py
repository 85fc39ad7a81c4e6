"""Embedding extraction: structure files in, a Parquet table of protein and residue embeddings out."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm
from transformers import AutoModel

from .protein.processor import ProteinStructureProcessor
from .protein.structure import InvalidStructureError, Protein, parse_structure


@dataclass
class EmbeddingReport:
    """What an embedding run did: how many proteins were written and which files failed (path, reason)."""

    num_embedded: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def load_encoder(
    model_name_or_path: str | Path, device: str = "cpu"
) -> tuple[torch.nn.Module, ProteinStructureProcessor]:
    """Return an encoder in eval mode and its processor (cropping off: embeddings cover whole proteins)."""
    model = AutoModel.from_pretrained(str(model_name_or_path)).to(device).eval()
    try:
        processor = ProteinStructureProcessor.from_pretrained(str(model_name_or_path))
    except OSError:  # a folder without preprocessor_config.json: the defaults fit every encoder
        processor = ProteinStructureProcessor()
    processor.crop_length = None
    return model, processor


def _parse_all(paths: Sequence[Path], processor: ProteinStructureProcessor, report: EmbeddingReport,
               chain: str | None) -> Iterator[tuple[Path, Protein]]:  # fmt: skip
    for path in paths:
        try:
            yield path, parse_structure(path, chain=chain or processor.chain, backend=processor.backend)
        except (InvalidStructureError, OSError, ValueError) as error:
            report.failed.append((str(path), str(error)))


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def embed_files(
    paths: Sequence[str | Path],
    model_name_or_path: str | Path,
    output: str | Path,
    *,
    batch_size: int = 8,
    device: str = "cpu",
    chain: str | None = None,
    residue_embeddings: bool = True,
) -> EmbeddingReport:
    """Embed structure files and write one Parquet row per protein; return what was done and what failed.

    Columns: `id`, `path`, `sequence`, `chain_id`, `residue_number`, `protein_embedding` (D floats) and, unless
    turned off, `residue_embeddings` (one D-float list per residue).
    """
    model, processor = load_encoder(model_name_or_path, device)
    report = EmbeddingReport()
    paths = [Path(p) for p in paths]
    rows: dict[str, list] = {
        k: [] for k in ("id", "path", "sequence", "chain_id", "residue_number", "protein_embedding")
    }
    if residue_embeddings:
        rows["residue_embeddings"] = []
    progress = tqdm(total=len(paths), desc="embedding", unit="protein")
    for batch in _batches(_parse_all(paths, processor, report, chain), batch_size):
        inputs = processor([protein for _, protein in batch], return_tensors="pt").to(device)
        out = model(**inputs)
        for index, (path, protein) in enumerate(batch):
            rows["id"].append(protein.id or path.name)
            rows["path"].append(str(path))
            rows["sequence"].append(protein.sequence)
            rows["chain_id"].append([str(c) for c in protein.chain_id])
            rows["residue_number"].append(protein.residue_number.tolist())
            rows["protein_embedding"].append(out.protein_embeddings[index].float().cpu().numpy())
            if residue_embeddings:
                rows["residue_embeddings"].append(
                    list(out.residue_embeddings[out.batch == index].float().cpu().numpy())
                )
        report.num_embedded += len(batch)
        progress.update(len(batch))
    progress.update(len(paths) - progress.n)
    progress.close()
    if report.num_embedded:
        table = pa.table({k: _column(k, v) for k, v in rows.items()})
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, output)
    return report


def _column(name: str, values: list) -> pa.Array:
    if name == "protein_embedding":
        return pa.array([np.asarray(v, dtype=np.float32) for v in values], type=pa.list_(pa.float32()))
    if name == "residue_embeddings":
        return pa.array([[np.asarray(r, dtype=np.float32) for r in v] for v in values],
                        type=pa.list_(pa.list_(pa.float32())))  # fmt: skip
    return pa.array(values)
