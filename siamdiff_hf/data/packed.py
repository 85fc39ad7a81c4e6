"""The ``packed`` Parquet layout of ``prepare-afdb``: coordinates and atom masks as raw bytes, decoded without copies.

The default ``arrays`` layout stores ``atom_positions``/``atom_mask`` as datasets' ``Array3D``/``Array2D`` (nested
Parquet lists), which ``datasets.load_dataset`` turns back into arrays; pyarrow spends ~0.8 ms per AlphaFold
DB-sized row decoding their repetition levels, whatever the compression or page options. ``packed`` stores them
as one binary value per row (little-endian float32 (L, 37, 3) and uint8 0/1 (L, 37)), which decodes ~5x faster;
``id``, ``residue_type``, ``plddt`` and ``length`` keep the ``arrays`` layout's types. The file's schema
metadata says ``{"layout": "packed", "version": 1}`` under the ``siamdiff_hf`` key. `load_afdb` reads both
layouts to the same examples; other Parquet readers see the two packed columns as bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from siamdiff_hf.data.sources import SkipEvent
from siamdiff_hf.protein.constants import NUM_ATOM37

LAYOUTS: tuple[str, ...] = ("arrays", "packed")
METADATA_KEY = b"siamdiff_hf"
PACKED_METADATA = {"layout": "packed", "version": 1}
# packed column -> (numpy dtype of its bytes, values per residue)
PACKED_COLUMNS: dict[str, tuple[str, int]] = {
    "atom_positions": ("<f4", NUM_ATOM37 * 3),
    "atom_mask": ("u1", NUM_ATOM37),
}


def check_layout(layout: str) -> str:
    """Return ``layout`` if it is a known Parquet layout, else raise ValueError."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown Parquet layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    return layout


def packed_table(rows: list[dict[str, Any]]) -> Any:
    """Return the pyarrow Table of ``rows`` (`AFDB_FEATURES` examples) in the packed layout."""
    import pyarrow as pa

    def packed(name: str) -> Any:
        dtype = PACKED_COLUMNS[name][0]
        values = [np.ascontiguousarray(row[name], dtype=dtype).tobytes() for row in rows]
        return pa.array(values, pa.large_binary())  # large: a 10,000-row shard can exceed 2 GiB of coordinates

    table = pa.table({
        "id": pa.array([row["id"] for row in rows], pa.string()),
        "residue_type": pa.array([np.asarray(row["residue_type"], np.int64) for row in rows], pa.list_(pa.int64())),
        "atom_positions": packed("atom_positions"),
        "atom_mask": packed("atom_mask"),
        "plddt": pa.array([np.asarray(row["plddt"], np.float32) for row in rows], pa.list_(pa.float32())),
        "length": pa.array([int(row["length"]) for row in rows], pa.int32()),
    })  # fmt: skip
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(PACKED_METADATA)})


def is_packed(schema: Any) -> bool:
    """Return True if a Parquet file's Arrow schema is the packed layout (its metadata says so)."""
    metadata = schema.metadata or {}
    if METADATA_KEY not in metadata:
        return False
    try:
        return json.loads(metadata[METADATA_KEY]).get("layout") == "packed"
    except (ValueError, AttributeError):
        return False


def packed_batch_to_examples(batch: Any, location: str, first_row: int) -> Iterator[dict[str, Any] | SkipEvent]:
    """Yield the examples of a packed record batch; a row whose bytes disagree with its ``length`` is skipped.

    The binary values are viewed in place (``np.frombuffer`` over pyarrow's buffers): no per-value decoding.
    """
    from siamdiff_hf.data.sources import SourceError, invalid_row, list_columns

    try:
        lengths = batch.column("length").fill_null(-1).to_numpy().astype(np.int64)
        packed = {name: _binary_values(batch.column(name)) for name in PACKED_COLUMNS}
    except Exception as error:  # pyarrow's ArrowInvalid, our TypeError: columns of other types
        raise SourceError(f"{location}: a column has another type than the packed layout ({error})") from error
    lists = list_columns(batch, location, {"residue_type": 1, "plddt": 1})
    for i, protein_id in enumerate(batch.column("id").to_pylist()):
        problems = [f"{name} has {counts[i]}" for name, (counts, _) in lists.items() if counts[i] != lengths[i]]
        for name, (dtype, per_residue) in PACKED_COLUMNS.items():
            _, offsets, valid = packed[name]
            size = offsets[i + 1] - offsets[i] if valid[i] else -1
            if size != lengths[i] * per_residue * np.dtype(dtype).itemsize:
                problems.append(f"{name} has {size} bytes")
        if problems or lengths[i] < 0:
            yield invalid_row(location, first_row + i, protein_id, lengths[i], problems)
            continue
        mask = _row(packed["atom_mask"], i, "u1")
        if mask.size and mask.max() > 1:
            yield SkipEvent("invalid_row", f"{location} row {first_row + i} ({protein_id})", "atom_mask is not 0/1")
            continue
        yield {
            "id": protein_id,
            "residue_type": lists["residue_type"][1][i],
            "atom_positions": _row(packed["atom_positions"], i, "<f4").reshape(-1, NUM_ATOM37, 3),
            "atom_mask": mask.view(bool).reshape(-1, NUM_ATOM37),
            "plddt": lists["plddt"][1][i],
            "length": np.int32(lengths[i]),
        }


def _binary_values(column: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (data bytes, offsets, valid) of a (large_)binary column, views of its buffers."""
    import pyarrow as pa

    if not (pa.types.is_large_binary(column.type) or pa.types.is_binary(column.type)):
        raise TypeError(f"expected a binary column, got {column.type}")
    offset_type = np.int64 if pa.types.is_large_binary(column.type) else np.int32
    _, offsets, data = column.buffers()  # validity, offsets, values
    offsets = np.frombuffer(offsets, offset_type)[column.offset : column.offset + len(column) + 1]
    values = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    valid = ~np.asarray(column.is_null())
    return values, offsets, valid


def _row(packed: tuple[np.ndarray, np.ndarray, np.ndarray], index: int, dtype: str) -> np.ndarray:
    values, offsets, _ = packed
    return values[offsets[index] : offsets[index + 1]].view(dtype)
