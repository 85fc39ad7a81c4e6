"""Structure sources: resolve paths/URLs into shard units and read raw structure records from each unit.

A *unit* is the smallest piece a DataLoader worker or a node reads on its own: one tar file, one Parquet file, a
chunk of files from a directory or glob, or a slice of a Foldcomp database. Reading a unit yields `RawStructure`
records (bytes still to parse), ready example dicts (Parquet) or `SkipEvent`s (a member that could not be read);
`siamdiff_hf.data.afdb` turns them into examples. Nothing here parses coordinates.
"""

from __future__ import annotations

import glob as globlib
import os
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from siamdiff_hf.protein.constants import NUM_ATOM37
from siamdiff_hf.protein.formats import (  # noqa: F401 (STRUCTURE_SUFFIXES, maybe_gunzip: re-exported)
    GZIP_ERRORS,
    GZIP_MAGIC,
    STRUCTURE_SUFFIXES,
    entry_id,
    is_gzipped,
    maybe_gunzip,
    structure_format,
)

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
PARQUET_SUFFIXES = (".parquet",)
FOLDCOMP_SIDECARS = (".index", ".dbtype", ".lookup", ".source")
_URL_SCHEMES = ("http://", "https://", "hf://", "s3://", "gs://", "gcs://", "az://", "abfs://")
_HTTP_TIMEOUT_S = 60


class SourceError(OSError):
    """A source (path, URL, tar, database) that cannot be opened or listed at all."""


@dataclass(frozen=True)
class SourceUnit:
    """One shard of a `load_afdb` stream.

    kind: ``"files"`` (``members`` are structure file paths/URLs), ``"tar"``, ``"parquet"`` or ``"foldcomp"``
    (entries ``start:stop`` of the database at ``location``).
    """

    kind: str
    location: str
    members: tuple[str, ...] = ()
    start: int = 0
    stop: int | None = None

    def __str__(self) -> str:
        if self.kind == "files":
            return f"{len(self.members)} files from {self.location}"
        if self.kind == "foldcomp":
            return f"foldcomp {self.location}[{self.start}:{self.stop}]"
        return f"{self.kind} {self.location}"


@dataclass(frozen=True)
class RawStructure:
    """Undecoded bytes of one structure (gzip still applied when ``gzipped``), named after its origin."""

    id: str
    format: str
    data: bytes
    origin: str
    gzipped: bool = False


@dataclass(frozen=True)
class SkipEvent:
    """A member that could not be read: ``reason`` is a `skip_counts` key; ``origin`` names the member."""

    reason: str
    origin: str
    detail: str


# --------------------------------------------------------------------------------------------------------------
# naming
# --------------------------------------------------------------------------------------------------------------
def is_url(location: str) -> bool:
    """Return True for ``scheme://`` locations other than ``file://``."""
    return "://" in location and not location.startswith("file://")


def _local_path(location: str) -> str:
    return location[len("file://") :] if location.startswith("file://") else location


# The format kept when an entry has both files (AlphaFold DB tars ship a .cif.gz and a .pdb.gz of every model). For
# AlphaFold DB models the two parse to identical arrays (tested), and the PDB file is the faster of the two to read
# (fixed columns, read by gemmi; about 1.5x the tar stream rate of mmCIF here, benchmarks/data_pipeline.py).
DEFAULT_PREFER = "pdb"


def _pick_preferred(names: Sequence[str], prefer: str) -> list[str]:
    """Keep one file per entry id: the ``prefer`` format when present, otherwise the first seen."""
    chosen: dict[str, str] = {}
    for name in names:
        key = entry_id(name)
        if key not in chosen or (structure_format(name) == prefer and structure_format(chosen[key]) != prefer):
            chosen[key] = name
    keep = set(chosen.values())
    return [name for name in names if name in keep]


# --------------------------------------------------------------------------------------------------------------
# resolving sources into units
# --------------------------------------------------------------------------------------------------------------
def resolve_sources(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    prefer: str = DEFAULT_PREFER,
    files_per_shard: int = 1000,
    foldcomp_shard_size: int = 10_000,
    check: bool = True,
) -> list[SourceUnit]:
    """Return the shard units of ``sources`` (paths, globs, directories, URLs), in a deterministic order.

    Directories and globs are expanded: structure files are grouped ``files_per_shard`` at a time (one file per
    entry, the ``prefer`` format winning), each tar and Parquet file is its own unit, and a Foldcomp database
    (``NAME`` beside ``NAME.index``) is cut into slices of ``foldcomp_shard_size`` entries. With ``check``,
    missing local paths and unreachable URLs raise `SourceError` naming them, before any worker starts.
    """
    if prefer not in ("cif", "pdb"):
        raise ValueError(f"prefer must be 'cif' or 'pdb', got {prefer!r}")
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    units: list[SourceUnit] = []
    for source in sources:
        units.extend(_resolve_one(os.fspath(source), prefer, files_per_shard, foldcomp_shard_size, check))
    if not units:
        raise SourceError(f"no structures, tar shards, Parquet files or Foldcomp databases found in {list(sources)}")
    return units


def _resolve_one(source: str, prefer: str, files_per_shard: int, fc_size: int, check: bool) -> list[SourceUnit]:
    if is_url(source):
        return _resolve_url(source, prefer, files_per_shard, check)
    path = _local_path(source)
    if globlib.has_magic(path):
        names = sorted(globlib.glob(path, recursive=True))
        if not names:
            raise SourceError(f"glob matched nothing: {source}")
        return _classify(names, source, prefer, files_per_shard, fc_size)
    if os.path.isdir(path):
        names = sorted(str(p) for p in Path(path).rglob("*") if p.is_file())
        return _classify(names, source, prefer, files_per_shard, fc_size)
    if not os.path.exists(path):
        raise SourceError(f"no such file or directory: {source}")
    if _is_foldcomp_db(path):
        return _foldcomp_units(path, fc_size)
    units = _classify([path], source, prefer, files_per_shard, fc_size)
    if not units:
        raise SourceError(f"not a structure file, tar, Parquet file or Foldcomp database: {source}")
    return units


def _classify(names: list[str], origin: str, prefer: str, files_per_shard: int, fc_size: int) -> list[SourceUnit]:
    sidecars = {name for name in names if name.endswith(FOLDCOMP_SIDECARS) and _is_foldcomp_db(name.rsplit(".", 1)[0])}
    units: list[SourceUnit] = []
    structures: list[str] = []
    for name in names:
        lower = name.lower()
        if name in sidecars:
            continue
        if lower.endswith(TAR_SUFFIXES):
            units.append(SourceUnit("tar", name))
        elif lower.endswith(PARQUET_SUFFIXES):
            units.append(SourceUnit("parquet", name))
        elif structure_format(name):
            structures.append(name)
        elif not is_url(name) and _is_foldcomp_db(name):
            units.extend(_foldcomp_units(name, fc_size))
    structures = _pick_preferred(structures, prefer)
    for start in range(0, len(structures), files_per_shard):
        units.append(SourceUnit("files", origin, members=tuple(structures[start : start + files_per_shard])))
    return units


def _resolve_url(url: str, prefer: str, files_per_shard: int, check: bool) -> list[SourceUnit]:
    lower = url.lower().split("?", 1)[0]
    if url.startswith(("http://", "https://")):
        if check:
            _check_http(url)
        if structure_format(lower):
            return [SourceUnit("files", url, members=(url,))]
        if lower.endswith(PARQUET_SUFFIXES):
            return [SourceUnit("parquet", url)]
        return [SourceUnit("tar", url)]  # AFDB's FTP/HTTP shards are tars
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
        if globlib.has_magic(path):
            names = sorted(fs.glob(path))
        elif fs.isdir(path):
            names = sorted(fs.find(path))
        elif fs.exists(path):
            names = [path]
        else:
            names = []
    except Exception as error:  # fsspec back-ends raise many types; the message must name the URL
        raise SourceError(f"cannot open {url}: {error}") from error
    if not names:
        raise SourceError(f"no such file, directory or glob match: {url}")
    protocol = url.split("://", 1)[0]
    names = [name if "://" in name else f"{protocol}://{name}" for name in names]
    return _classify(names, url, prefer, files_per_shard, 0)


def _check_http(url: str) -> None:
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT_S):
            pass
    except (urllib.error.URLError, OSError) as error:
        raise SourceError(f"cannot open {url}: {error}") from error


# --------------------------------------------------------------------------------------------------------------
# opening streams
# --------------------------------------------------------------------------------------------------------------
def open_stream(location: str, seekable: bool = False) -> IO[bytes]:
    """Return a readable binary stream for a local path, ``file://``, ``http(s)://`` or any fsspec URL.

    HTTP is read with urllib (a plain forward stream, what ``tarfile`` mode ``r|*`` needs) unless ``seekable``
    (Parquet footers), then with fsspec's range requests, like other URLs. Raises `SourceError` naming the
    location when it cannot be opened.
    """
    try:
        if location.startswith(("http://", "https://")) and not seekable:
            return urllib.request.urlopen(location, timeout=_HTTP_TIMEOUT_S)
        if is_url(location):
            import fsspec

            return fsspec.open(location, "rb", block_size=8 << 20).open()
        return open(_local_path(location), "rb")
    except (urllib.error.URLError, OSError) as error:
        raise SourceError(f"cannot open {location}: {error}") from error
    except Exception as error:  # fsspec back-ends (hf://, s3://) raise their own types
        raise SourceError(f"cannot open {location}: {error}") from error


def read_bytes(location: str) -> bytes:
    """Return the whole content of ``location`` (see `open_stream`)."""
    with open_stream(location) as stream:
        return stream.read()


# --------------------------------------------------------------------------------------------------------------
# reading units
# --------------------------------------------------------------------------------------------------------------
def iter_unit(unit: SourceUnit, prefer: str = DEFAULT_PREFER) -> Iterator[RawStructure | SkipEvent | dict[str, Any]]:
    """Yield the records of one unit, in a deterministic order (the basis of exact resumption)."""
    if unit.kind == "files":
        yield from _iter_files(unit)
    elif unit.kind == "tar":
        yield from _iter_tar(unit.location, prefer)
    elif unit.kind == "parquet":
        yield from iter_parquet(unit.location)
    elif unit.kind == "foldcomp":
        yield from _iter_foldcomp(unit)
    else:
        raise ValueError(f"unknown source kind {unit.kind!r}")


def _iter_files(unit: SourceUnit) -> Iterator[RawStructure | SkipEvent]:
    for name in unit.members:
        try:
            data = read_bytes(name)
        except SourceError as error:
            yield SkipEvent("unreadable", name, str(error))
            continue
        yield RawStructure(entry_id(name), structure_format(name) or "pdb", data, name, gzipped=is_gzipped(data))


class _TailReader:
    """Forward-only reader that remembers the last bytes read: a plain tar must end with zero blocks."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.tail = b""
        self.head = b""

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        if not self.head:
            self.head = data[:6]
        self.tail = (self.tail + data)[-1024:] if len(data) < 1024 else data[-1024:]
        return data

    def ended_cleanly(self) -> bool:
        """Drain the stream; True unless it is an uncompressed tar missing its end-of-archive blocks."""
        while self.read(1 << 16):
            pass
        compressed = self.head.startswith((GZIP_MAGIC, b"BZh", b"\xfd7zXZ"))  # gzip, bzip2, xz
        return compressed or self.tail == bytes(1024)


def _iter_tar(location: str, prefer: str) -> Iterator[RawStructure | SkipEvent]:
    """Stream a tar (AFDB proteome or Swiss-Prot layout); keep one format per entry, ``prefer`` first.

    Members of one entry are adjacent in AFDB's tars: they are buffered per entry id and the preferred one is
    emitted when the id changes; ids already emitted are skipped, so a non-adjacent duplicate is never repeated.
    A tar cut short yields what it holds, then a ``truncated_tar`` `SkipEvent`.
    """
    stream = open_stream(location)
    reader = _TailReader(stream)
    seen: set[str] = set()
    pending: dict[str, RawStructure] = {}  # format -> record of the current entry
    members = 0
    try:
        try:
            archive = tarfile.open(fileobj=reader, mode="r|*")  # noqa: SIM115 (closed in the finally below)
        except (tarfile.TarError, *GZIP_ERRORS) as error:
            raise SourceError(f"cannot read tar {location}: {error}") from error
        try:
            for member in archive:
                members += 1
                fmt = structure_format(member.name) if member.isfile() else None
                if fmt is None:
                    continue
                key = entry_id(member.name)
                if pending and key not in {r.id for r in pending.values()}:
                    yield from _flush(pending, prefer, seen)
                if key in seen:
                    continue
                data = archive.extractfile(member).read()
                origin = f"{location}!{member.name}"
                pending[fmt] = RawStructure(key, fmt, data, origin, gzipped=member.name.lower().endswith(".gz"))
            yield from _flush(pending, prefer, seen)
            if not reader.ended_cleanly():
                yield SkipEvent("truncated_tar", location, f"no end-of-archive marker after {members} members")
        except (tarfile.TarError, EOFError, OSError, *GZIP_ERRORS) as error:
            yield from _flush(pending, prefer, seen)
            yield SkipEvent("truncated_tar", location, f"after {members} members: {error}")
        finally:
            archive.close()
    finally:
        stream.close()


def _flush(pending: dict[str, RawStructure], prefer: str, seen: set[str]) -> Iterator[RawStructure]:
    if not pending:
        return
    record = pending.get(prefer) or next(iter(pending.values()))
    pending.clear()
    seen.add(record.id)
    yield record


def _is_foldcomp_db(path: str) -> bool:
    return os.path.isfile(path) and os.path.isfile(path + ".index") and os.path.isfile(path + ".dbtype")


def _foldcomp_units(path: str, shard_size: int) -> list[SourceUnit]:
    with open(path + ".index") as index:
        count = sum(1 for line in index if line.strip())
    return [SourceUnit("foldcomp", path, start=s, stop=min(s + shard_size, count)) for s in range(0, count, shard_size)]


def _iter_foldcomp(unit: SourceUnit) -> Iterator[RawStructure | SkipEvent]:
    try:
        import foldcomp
    except ImportError as error:
        raise SourceError(f"reading the Foldcomp database {unit.location} needs `pip install foldcomp`") from error
    try:
        database = foldcomp.open(unit.location)
    except Exception as error:  # foldcomp raises plain RuntimeError/ValueError
        raise SourceError(f"cannot open Foldcomp database {unit.location}: {error}") from error
    with database as db:
        for index in range(unit.start, unit.stop if unit.stop is not None else len(db)):
            origin = f"{unit.location}[{index}]"
            try:
                name, pdb_string = db[index]
            except Exception as error:  # a corrupt FCZ blob fails inside foldcomp's C++ decoder
                yield SkipEvent("corrupt_member", origin, str(error))
                continue
            yield RawStructure(entry_id(name), "pdb", pdb_string.encode(), f"{origin} {name}")


PARQUET_COLUMNS: tuple[str, ...] = ("id", "residue_type", "atom_positions", "atom_mask", "plddt", "length")
# Values per residue of each list column.
_PER_RESIDUE = {"residue_type": 1, "plddt": 1, "atom_positions": NUM_ATOM37 * 3, "atom_mask": NUM_ATOM37}


def iter_parquet(location: str, batch_size: int = 64) -> Iterator[dict[str, Any] | SkipEvent]:
    """Yield example dicts (numpy arrays) from a Parquet shard written by ``prepare-afdb`` (either layout).

    Columns are flattened in bulk and split by each column's own list offsets, so no per-value Python objects are
    made. A file without the `PARQUET_COLUMNS` (another schema) raises `SourceError` naming the file and the
    missing columns; a row whose arrays disagree with its ``length`` is skipped as an ``invalid_row`` `SkipEvent`.
    """
    import pyarrow.parquet as pq

    stream = open_stream(location, seekable=True)
    try:
        try:
            parquet = pq.ParquetFile(stream)
        except Exception as error:  # pyarrow.ArrowInvalid for a non-Parquet file
            raise SourceError(f"cannot read Parquet file {location}: {error}") from error
        names = parquet.schema_arrow.names
        missing = [name for name in PARQUET_COLUMNS if name not in names]
        if missing:
            raise SourceError(
                f"{location}: not a prepare-afdb Parquet file: no column {', '.join(map(repr, missing))} "
                f"(columns: {', '.join(names)})"
            )
        from siamdiff_hf.data.packed import is_packed, packed_batch_to_examples

        to_examples = packed_batch_to_examples if is_packed(parquet.schema_arrow) else _batch_to_examples
        first_row = 0
        for batch in parquet.iter_batches(batch_size=batch_size, columns=list(PARQUET_COLUMNS)):
            yield from to_examples(batch, location, first_row)
            first_row += batch.num_rows
    finally:
        stream.close()


def _storage(column: Any) -> Any:
    import pyarrow as pa

    return column.storage if isinstance(column.type, pa.ExtensionType) else column


def _flat_values(column: Any, depth: int) -> np.ndarray:
    import pyarrow.compute as pc

    column = _storage(column)
    for _ in range(depth):
        column = pc.list_flatten(column)
    return column.to_numpy(zero_copy_only=False)


class ListSizeError(ValueError):
    """A list column whose flattened values do not add up to its per-residue width."""


def list_rows(column: Any, depth: int = 1, per_residue: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
    """Return (residues per row, -1 for null; each row's values as a view of one flat array) of a list column.

    ``depth``: list levels (3 for ``Array3D``); ``per_residue``: values per residue (37 * 3 for coordinates).
    Raises `ListSizeError` if the values do not add up, pyarrow's errors for a column of another type.
    """
    import pyarrow.compute as pc

    counts = pc.fill_null(pc.list_value_length(_storage(column)), -1).to_numpy()
    flat = _flat_values(column, depth)
    sizes = counts.clip(min=0) * per_residue
    if flat.size != sizes.sum():
        raise ListSizeError(f"does not hold {per_residue} values per residue")
    return counts, np.split(flat, np.cumsum(sizes)[:-1])


def list_columns(batch: Any, location: str, depths: dict[str, int]) -> dict[str, tuple[np.ndarray, list]]:
    """Return `list_rows` of each named column of a record batch; raise `SourceError` naming the file if one fails."""
    rows = {}
    for name, depth in depths.items():
        try:
            rows[name] = list_rows(batch.column(name), depth, _PER_RESIDUE[name])
        except ListSizeError as error:
            raise SourceError(f"{location}: column {name!r} {error}") from error
        except Exception as error:  # pyarrow raises ArrowNotImplementedError/ArrowInvalid for other types
            raise SourceError(f"{location}: a column has another type than prepare-afdb writes ({error})") from error
    return rows


def invalid_row(location: str, row: int, protein_id: str, length: int, problems: list[str]) -> SkipEvent:
    """Return the ``invalid_row`` `SkipEvent` of a Parquet row whose arrays disagree with its ``length``."""
    return SkipEvent("invalid_row", f"{location} row {row} ({protein_id})",
                     f"column 'length' says {length} residues but {', '.join(problems)}")  # fmt: skip


def _batch_to_examples(batch: Any, location: str, first_row: int) -> Iterator[dict[str, Any] | SkipEvent]:
    try:
        lengths = batch.column("length").fill_null(-1).to_numpy().astype(np.int64)
    except Exception as error:  # a length column of another type
        raise SourceError(f"{location}: a column has another type than prepare-afdb writes ({error})") from error
    rows = list_columns(batch, location, {"residue_type": 1, "plddt": 1, "atom_positions": 3, "atom_mask": 2})
    for i, protein_id in enumerate(batch.column("id").to_pylist()):
        wrong = [f"{name} has {counts[i]}" for name, (counts, _) in rows.items() if counts[i] != lengths[i]]
        if wrong:
            yield invalid_row(location, first_row + i, protein_id, lengths[i], wrong)
            continue
        yield {
            "id": protein_id,
            "residue_type": rows["residue_type"][1][i],
            "atom_positions": rows["atom_positions"][1][i].reshape(-1, NUM_ATOM37, 3),
            "atom_mask": rows["atom_mask"][1][i].reshape(-1, NUM_ATOM37),
            "plddt": rows["plddt"][1][i],
            "length": np.int32(lengths[i]),
        }
