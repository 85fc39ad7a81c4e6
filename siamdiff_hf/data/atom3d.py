"""ATOM3D LMDB datasets read directly with `lmdb`, and ATOM3D atom frames turned into `Protein` arrays.

The layout (drorlab/atom3d `atom3d/datasets/datasets.py`, `LMDBDataset` and `make_lmdb_dataset`): an LMDB
environment whose keys ``num_examples`` (ASCII int), ``serialization_format`` (``json`` for every released task
dataset) and ``id_to_idx`` (serialized dict) describe it; item *i* sits at key ``str(i)`` as the gzip-compressed
serialized dict. A pandas DataFrame in an item was serialized with ``DataFrame.to_json(orient="split",
double_precision=6)`` (``{"columns", "index", "data"}``; msgpack: ``to_dict(orient="split")``) and is marked in
the item's ``types`` dict as ``"<class 'pandas.core.frame.DataFrame'>"``; we read those column-wise into numpy
without pandas.

Atom frames have the columns ``ensemble, subunit, structure, model, chain, hetero, insertion_code, residue, segid,
resname, altloc, occupancy, bfactor, x, y, z, element, name, fullname, serial_number`` (atom3d
`atom3d/util/formats.py::bp_to_df`). `protein_from_atoms` applies exactly the parsing rules of
`siamdiff_hf.protein.parse_structure` (first model, residue identity, highest-occupancy record per atom, modified
residues mapped to their parent, unknown residues with a backbone kept, waters and ligands dropped) through the
same vectorised code path, after dropping hydrogens (element ``H``/``D``) as the official SiamDiff PSR/MSP/PIP
loaders do (DeepGraphLearning/SiamDiff `siamdiff/dataset.py`: ``subgraph(atom_type != 0)``, hydrogen being atom
type 0 in TorchDrug's vocabulary).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from siamdiff_hf.protein import InvalidStructureError, Protein
from siamdiff_hf.protein.formats import gunzip

DATAFRAME_TYPE = "<class 'pandas.core.frame.DataFrame'>"
ATOM_COLUMNS: tuple[str, ...] = (
    "ensemble", "subunit", "structure", "model", "chain", "hetero", "insertion_code", "residue", "segid", "resname",
    "altloc", "occupancy", "bfactor", "x", "y", "z", "element", "name", "fullname", "serial_number",
)  # fmt: skip
_NEEDED = ("chain", "residue", "resname", "name", "x", "y", "z")
_HYDROGENS = np.array([b"H", b"D"], dtype="S2")


class CorruptItemError(ValueError):
    """An LMDB item that cannot be decoded (missing key, bad gzip, bad JSON, malformed frame)."""


# --- the LMDB file --------------------------------------------------------------------------------------------


class Atom3DLMDB:
    """Read-only access to one ATOM3D LMDB dataset (a directory with ``data.mdb``, or the ``data.mdb`` file).

    The environment is opened once per process (and again after a fork), so one object can be handed to worker
    processes. Items are decoded dicts; DataFrames become `AtomFrame` column dicts (see `decode_item`).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such ATOM3D LMDB dataset")
        if self.path.is_dir() and not (self.path / "data.mdb").exists():
            raise FileNotFoundError(f"{self.path}: not an LMDB dataset (no data.mdb inside)")
        with self._begin() as txn:
            num = txn.get(b"num_examples")
            fmt = txn.get(b"serialization_format")
        if num is None or fmt is None:
            raise ValueError(f"{self.path}: not an ATOM3D LMDB (keys 'num_examples'/'serialization_format' missing)")
        try:
            self.num_examples = int(num)
            self.serialization_format = fmt.decode()
        except (ValueError, UnicodeDecodeError):
            raise ValueError(
                f"{self.path}: not an ATOM3D LMDB (num_examples {bytes(num)[:20]!r}, serialization_format "
                f"{bytes(fmt)[:20]!r})"
            ) from None
        if self.serialization_format not in ("json", "msgpack"):
            raise ValueError(
                f"{self.path}: serialization format {self.serialization_format!r} is not supported "
                "(json and msgpack are; pickle is refused because loading it can run arbitrary code)"
            )

    def _begin(self):
        return _environment(self.path).begin(write=False)

    def __len__(self) -> int:
        return self.num_examples

    def close(self) -> None:
        """Close this process's environment of the file (reopened by the next read)."""
        env = _ENVIRONMENTS.pop((str(self.path.resolve()), os.getpid()), None)
        if env is not None:
            env.close()

    def ids(self) -> dict[str, int]:
        """Return ATOM3D's ``id_to_idx`` mapping (item id -> index)."""
        with self._begin() as txn:
            raw = txn.get(b"id_to_idx")
        return {} if raw is None else _deserialize(raw, self.serialization_format)

    def raw(self, index: int) -> bytes | None:
        """Return the stored (gzip-compressed) bytes of item ``index``, None when the key is absent."""
        with self._begin() as txn:
            data = txn.get(str(index).encode())
        return None if data is None else bytes(data)

    def item(self, index: int) -> dict[str, Any]:
        """Return the decoded item ``index``; raises `CorruptItemError` naming the item when it cannot be read."""
        if not 0 <= index < self.num_examples:
            raise IndexError(f"{self.path}: item {index} out of range 0..{self.num_examples - 1}")
        data = self.raw(index)
        if data is None:
            raise CorruptItemError(f"{self.path}: item {index} is listed in num_examples but missing")
        return decode_item(data, self.serialization_format, f"{self.path}[{index}]")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(self.num_examples):
            yield self.item(i)


try:  # about 3x faster on ATOM3D's JSON atom frames, when installed
    from orjson import loads as _json_loads
except ImportError:
    _json_loads = json.loads

_ENVIRONMENTS: dict[tuple[str, int], Any] = {}


def _environment(path: Path):
    """Return this process's read-only LMDB environment of ``path`` (LMDB allows one per file and process)."""
    import lmdb

    key = (str(path.resolve()), os.getpid())
    env = _ENVIRONMENTS.get(key)
    if env is None:
        for stale in [k for k in _ENVIRONMENTS if k[0] == key[0]]:  # inherited through a fork: unusable here
            _ENVIRONMENTS.pop(stale).close()
        env = _ENVIRONMENTS[key] = lmdb.open(
            str(path), subdir=path.is_dir(), readonly=True, lock=False, readahead=False, meminit=False,
            max_readers=126,
        )  # fmt: skip
    return env


def _deserialize(data: bytes, fmt: str) -> Any:
    if fmt == "json":
        return _json_loads(data)
    import msgpack

    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def decode_item(data: bytes, fmt: str = "json", name: str = "<item>") -> dict[str, Any]:
    """Return an item from its stored bytes: gunzip, deserialize, DataFrames (per ``types``) to `AtomFrame`."""
    try:
        item = _deserialize(gunzip(data), fmt)
    except (OSError, EOFError, zlib.error, ValueError, UnicodeDecodeError) as err:
        raise CorruptItemError(f"{name}: cannot decode ({type(err).__name__}: {err})") from err
    except Exception as err:  # msgpack raises its own exception types
        raise CorruptItemError(f"{name}: cannot decode ({type(err).__name__}: {err})") from err
    if not isinstance(item, dict):
        raise CorruptItemError(f"{name}: item is a {type(item).__name__}, not a dict")
    types = item.get("types") or {}
    for key, value in list(item.items()):
        if types.get(key) == DATAFRAME_TYPE or (isinstance(value, dict) and set(value) >= {"columns", "data"}):
            try:
                item[key] = AtomFrame.from_split(value)
            except (KeyError, TypeError, ValueError) as err:
                raise CorruptItemError(f"{name}: malformed DataFrame {key!r} ({err})") from err
    return item


# --- atom frames --------------------------------------------------------------------------------------------------


class AtomFrame(dict):
    """A DataFrame read column-wise: column name -> numpy array (strings as ``str`` arrays), all of one length.

    Columns of a decoded frame are converted to numpy on first access (a frame has 20 columns; building a
    `Protein` reads 12), so ``len(frame)`` is the number of rows, as for a DataFrame.
    """

    @classmethod
    def from_split(cls, split: Mapping[str, Any]) -> AtomFrame:
        """Return the frame of a ``DataFrame.to_json(orient="split")`` dict (``columns`` and row-major ``data``)."""
        columns = list(split["columns"])
        rows = split["data"]
        frame = cls()
        if not rows:
            for name in columns:
                frame[name] = np.zeros(0)
            return frame
        transposed = list(zip(*rows))
        if len(transposed) != len(columns) or any(len(r) != len(columns) for r in (rows[0], rows[-1])):
            raise ValueError(f"rows have {len(transposed)} values, expected {len(columns)} columns")
        for name, values in zip(columns, transposed):
            dict.__setitem__(frame, name, values)  # converted by __getitem__ when first read
        return frame

    def __getitem__(self, name: str) -> np.ndarray:
        values = dict.__getitem__(self, name)
        if not isinstance(values, np.ndarray):
            values = _column(values)
            dict.__setitem__(self, name, values)
        return values

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default  # noqa: SIM401 (dict.get would skip the conversion)

    def values(self):  # type: ignore[override]
        return [self[name] for name in self]

    def items(self):  # type: ignore[override]
        return [(name, self[name]) for name in self]

    def __len__(self) -> int:  # number of rows, like a DataFrame
        for name in self:
            values = dict.__getitem__(self, name)
            return int(values.shape[0]) if isinstance(values, np.ndarray) else len(values)
        return 0

    def take(self, index: np.ndarray) -> AtomFrame:
        """Return the rows at ``index`` (integer or boolean array)."""
        return AtomFrame({name: values[index] for name, values in self.items()})


def _column(values: Sequence[Any]) -> np.ndarray:
    """Return one column as a numpy array: numbers as int64/float64, strings (and None) as ``str``."""
    array = np.asarray(values)
    if array.dtype == object:  # mixed (e.g. None among strings or numbers)
        if all(isinstance(v, (int, float)) or v is None for v in values):
            return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        return np.asarray(["" if v is None else str(v) for v in values], dtype=str)
    return array


def protein_from_atoms(frame: Mapping[str, np.ndarray], *, id: str = "", source: str = "<atoms>") -> Protein:
    """Return the validated `Protein` of an ATOM3D atom frame (rules in the module docstring).

    Args:
        frame: column name -> array (an `AtomFrame`, or any mapping with at least ``chain, residue, resname,
            name, x, y, z``; ``insertion_code``, ``occupancy``, ``bfactor``, ``element``, ``model`` are used
            when present).
        id: the protein id.
        source: how errors name the item (e.g. ``"train[12]:original_atoms"``).

    Raises:
        InvalidStructureError: no atoms, no amino-acid residue with a CA, or invalid coordinates.
    """
    from siamdiff_hf.protein.parsing import _protein_from_columns
    from siamdiff_hf.protein.records import AtomRecords

    missing = [c for c in _NEEDED if c not in frame]
    if missing:
        raise InvalidStructureError(source, f"atom frame lacks column(s) {', '.join(missing)}")
    num_records = len(frame["x"])
    keep = np.ones(num_records, dtype=bool)
    if "element" in frame:
        keep &= ~np.isin(_bytes(frame["element"], upper=True), _HYDROGENS)
    if "model" in frame and num_records:
        keep &= frame["model"] == frame["model"][0]
    rows = np.flatnonzero(keep)

    def column(name: str, default: Any) -> np.ndarray:
        values = frame.get(name)
        return np.full(len(rows), default) if values is None else np.asarray(values)[rows]

    icode = _bytes(column("insertion_code", " "))
    icode = np.where(icode == b"", b" ", icode).astype("S1").view(np.uint8)
    positions = np.stack([np.asarray(frame[k], dtype=np.float64)[rows] for k in ("x", "y", "z")], axis=-1)
    columns = AtomRecords(
        chain=_as_int(_bytes(column("chain", ""))),
        resnum=np.asarray(column("residue", 0), dtype=np.int64),
        icode=icode,
        resname=_as_int(_bytes(column("resname", ""))),
        name=_as_int(_bytes(column("name", ""))),
        occ=np.nan_to_num(np.asarray(column("occupancy", 1.0), dtype=np.float32), nan=0.0),
        pos=positions,
        b=np.nan_to_num(np.asarray(column("bfactor", 0.0), dtype=np.float32), nan=0.0),
    )
    if not np.isfinite(positions).all():
        raise InvalidStructureError(source, "NaN/inf atom coordinates in the frame")
    return _protein_from_columns(columns, source, id).validate(source)


def _as_int(names: np.ndarray) -> np.ndarray:
    """Return names as the parser's 8-byte integers (zero-padded 8 characters viewed as uint64, as gemmi's)."""
    return np.ascontiguousarray(names.astype("S8")).view(np.uint64).reshape(-1)


def _bytes(values: np.ndarray, upper: bool = False) -> np.ndarray:
    """Return a string column as a stripped ``S`` array (the form the vectorised parser's code works on)."""
    values = np.asarray(values)
    if values.dtype.kind not in "US":
        values = values.astype(str)
    if values.dtype.kind == "U":
        try:
            values = values.astype("S")  # a C cast; ATOM3D's strings are ASCII
        except UnicodeEncodeError:
            values = np.strings.encode(values, "latin-1", errors="replace")
    values = np.strings.strip(values)
    return np.strings.upper(values) if upper else values
