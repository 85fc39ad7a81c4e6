"""Embedding extraction: structure files in, a Parquet table of protein and residue embeddings out."""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModel
from transformers.utils import logging as transformers_logging

from . import models  # noqa: F401  (registers the encoders with AutoModel)
from .errors import ModelLoadError
from .graph import scatter_rows
from .protein import InvalidStructureError, Protein, ProteinStructureProcessor, parse_structure

logger = logging.getLogger(__name__)

POOLINGS = ("sum", "mean")
# Key of the run description in the Parquet file's schema metadata (JSON: model, pooling, package version, ...).
METADATA_KEY = b"siamdiff_hf"
# A Hub repo id (`name` or `owner/name`); anything else that does not exist locally is a missing folder.
_HUB_ID = re.compile(r"^[\w.\-]+(/[\w.\-]+)?$")


@dataclass
class EmbeddingReport:
    """What an embedding run did: how many proteins were written and which files failed (path, reason)."""

    num_embedded: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def load_encoder(
    model_name_or_path: str | Path, device: str = "cpu"
) -> tuple[torch.nn.Module, ProteinStructureProcessor]:
    """Return an encoder in eval mode and its processor (cropping off: embeddings cover whole proteins).

    Raises `ModelLoadError` naming the folder or file and the reason: a folder that does not exist or has no
    `config.json`, a `model_type` that is not an encoder, a config with invalid values, weights that do not fit.
    """
    name = str(model_name_or_path)
    config = _load_config(name)
    if Path(name).expanduser().is_dir():
        _check_weight_shapes(Path(name).expanduser(), config)
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its load report: the missing weights are an error below
    try:
        model, info = AutoModel.from_pretrained(name, config=config, output_loading_info=True)
    except (OSError, RuntimeError, ValueError) as error:
        reason = _first_line(error)
        raise ModelLoadError(f"{name}: the weights do not load into {type(config).__name__} ({reason})") from None
    finally:
        transformers_logging.set_verbosity(verbosity)
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise ModelLoadError(f"{name}: {len(missing)} weights of the config.json architecture are missing from the "
                             f"checkpoint, e.g. {missing[0]} (an encoder would embed with random weights)")  # fmt: skip
    model = model.to(device).eval()
    try:
        processor = ProteinStructureProcessor.from_pretrained(name)
    except OSError:  # a folder without preprocessor_config.json: the defaults fit every encoder
        processor = ProteinStructureProcessor()
    processor.crop_length = None
    return model, processor


def _load_config(name: str):
    """Return the encoder config of a folder or Hub id, or raise a one-line `ModelLoadError`."""
    folder = Path(name).expanduser()
    if folder.exists():
        if not (folder / "config.json").is_file():
            raise ModelLoadError(f"{folder}: no config.json here (expected a folder written by save_pretrained)")
        try:
            model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        except (json.JSONDecodeError, AttributeError) as error:
            raise ModelLoadError(f"{folder / 'config.json'}: not a JSON object ({error})") from None
        _check_encoder_type(folder / "config.json", model_type)
    elif not _HUB_ID.match(name):
        raise ModelLoadError(f"{name}: no such model folder")
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError, TypeError, KeyError) as error:
        where = folder / "config.json" if folder.exists() else name
        raise ModelLoadError(f"{where}: {_first_line(error)}") from None
    _check_encoder_type(name, config.model_type)
    return config


def _check_weight_shapes(folder: Path, config) -> None:
    """Raise a one-line `ModelLoadError` naming the file when its safetensors weights have other shapes than the
    config.json architecture's (transformers' own error points at a multi-line report)."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return  # other formats: transformers checks them
    with torch.device("meta"):
        empty = AutoModel.from_config(config)
    expected = {k: tuple(v.shape) for k, v in empty.state_dict().items()}
    found = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            found.update({key: (file, tuple(handle.get_slice(key).get_shape())) for key in handle.keys()})  # noqa: SIM118
    wrong = [k for k in expected if k in found and found[k][1] != expected[k]]  # keys transformers renames: skipped
    if wrong:
        file, shape = found[wrong[0]]
        raise ModelLoadError(f"{file}: {len(wrong)} weights do not fit config.json, e.g. {wrong[0]} is {shape}, "
                             f"the config needs {expected[wrong[0]]}")  # fmt: skip


def _check_encoder_type(where: str | Path, model_type: str | None) -> None:
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    from .models import SiamDiffConfig

    encoders = {c.model_type for c in AutoModel._model_mapping._extra_content}
    if model_type == SiamDiffConfig.model_type:
        raise ModelLoadError(f"{where}: a SiamDiff pre-training model; embed its encoder (the `encoder` folder "
                             "next to it, or `model.encoder.save_pretrained(...)`)")  # fmt: skip
    if model_type not in encoders and model_type not in MODEL_MAPPING_NAMES:
        raise ModelLoadError(f"{where}: unknown model_type {model_type!r} (encoders: {', '.join(sorted(encoders))})")


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _skip_reason(path: Path, error: Exception) -> str:
    """Return the reason a file was skipped, without the file name the message may already start with."""
    message = _first_line(error)
    for prefix in (str(path), path.name):
        if message.startswith(prefix):
            return message[len(prefix) :].lstrip(" :")
    return message


def _parse_all(paths: Sequence[Path], processor: ProteinStructureProcessor, report: EmbeddingReport,
               chain: str | None) -> Iterator[tuple[Path, Protein]]:  # fmt: skip
    for path in paths:
        try:
            yield path, parse_structure(path, chain=chain or processor.chain, backend=processor.backend)
        except (InvalidStructureError, OSError, ValueError) as error:
            reason = _skip_reason(path, error)
            report.failed.append((str(path), reason))
            logger.warning("skipped %s: %s", path, reason)


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def encode(model: torch.nn.Module, inputs, pooling: str | None = None) -> tuple[object, torch.Tensor]:
    """Return the encoder output and (B, D) protein embeddings: the model's readout, or ``pooling`` of its nodes.

    ``pooling`` is "sum", "mean" or None (the model's readout). Residue GearNet-Edge sums over residues (the
    official readout), so its embedding's norm grows with the protein's length; "mean" is length-independent.
    Encoders whose ``forward`` takes ``pooling`` pool themselves; for others the node embeddings are pooled here.
    """
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"pooling must be None, 'sum' or 'mean', got {pooling!r}")
    if pooling is None or pooling == getattr(model.config, "readout", None):
        out = model(**inputs)
        return out, out.protein_embeddings
    if "pooling" in inspect.signature(model.forward).parameters:
        out = model(**inputs, pooling=pooling)
        return out, out.protein_embeddings
    out = model(**inputs)
    return out, scatter_rows(out.node_embeddings, out.node_batch, out.protein_embeddings.shape[0], pooling)


def _run_metadata(model_name_or_path: str | Path, model: torch.nn.Module, pooling: str | None) -> dict[bytes, bytes]:
    from . import __version__

    config = model.config
    description = {
        "model": str(model_name_or_path),
        "model_type": config.model_type,
        "level": getattr(config, "level", None),
        "pooling": pooling or getattr(config, "readout", None) or "model default",
        "embedding_dim": int(model.output_dim),
        "siamdiff_hf_version": __version__,
    }
    return {METADATA_KEY: json.dumps(description).encode()}


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
    pooling: str | None = None,
) -> EmbeddingReport:
    """Embed structure files and write one Parquet row per protein; return what was done and what failed.

    Columns: `id`, `path`, `sequence`, `chain_id`, `residue_number`, `insertion_code` (so 52, 52A, 52B stay
    distinct), `b_factor` (per-residue CA B-factor: pLDDT for AlphaFold DB models), `protein_embedding` (D floats)
    and, unless turned off, `residue_embeddings` (one D-float list per residue). ``pooling`` ("sum" or "mean";
    None = the model's readout) pools the protein embedding. The schema metadata key ``siamdiff_hf`` holds JSON
    naming the model, its type and level, the pooling, the embedding width and the package version. Unreadable
    files are skipped, logged and listed in the report.
    """
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"pooling must be None, 'sum' or 'mean', got {pooling!r}")
    model, processor = load_encoder(model_name_or_path, device)
    report = EmbeddingReport()
    paths = [Path(p) for p in paths]
    names = ("id", "path", "sequence", "chain_id", "residue_number", "insertion_code", "b_factor", "protein_embedding")
    rows: dict[str, list] = {k: [] for k in names}
    if residue_embeddings:
        rows["residue_embeddings"] = []
    progress = tqdm(total=len(paths), desc="embedding", unit="protein")
    for batch in _batches(_parse_all(paths, processor, report, chain), batch_size):
        inputs = processor([protein for _, protein in batch], return_tensors="pt").to(device)
        out, pooled = encode(model, inputs, pooling)
        for index, (path, protein) in enumerate(batch):
            rows["id"].append(protein.id or path.name)
            rows["path"].append(str(path))
            rows["sequence"].append(protein.sequence)
            rows["chain_id"].append([str(c) for c in protein.chain_id])
            rows["residue_number"].append(protein.residue_number.tolist())
            rows["insertion_code"].append([str(c) for c in protein.insertion_code])
            rows["b_factor"].append(np.asarray(protein.b_factor, dtype=np.float32))
            rows["protein_embedding"].append(pooled[index].float().cpu().numpy())
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
        table = table.replace_schema_metadata(_run_metadata(model_name_or_path, model, pooling))
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, output)
    return report


def read_embedding_metadata(path: str | Path) -> dict:
    """Return the run description stored in an `embed_files` Parquet file (model, pooling, version, ...)."""
    metadata = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in metadata:
        raise ValueError(f"{path}: no siamdiff_hf metadata (not written by embed_files)")
    return json.loads(metadata[METADATA_KEY])


def _column(name: str, values: list) -> pa.Array:
    if name in ("protein_embedding", "b_factor"):
        return pa.array([np.asarray(v, dtype=np.float32) for v in values], type=pa.list_(pa.float32()))
    if name == "residue_embeddings":
        return pa.array([[np.asarray(r, dtype=np.float32) for r in v] for v in values],
                        type=pa.list_(pa.list_(pa.float32())))  # fmt: skip
    return pa.array(values)
