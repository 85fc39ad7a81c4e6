"""Structure file names and compression: the one place that knows suffixes, the gzip magic and entry ids."""

from __future__ import annotations

import gzip
import zlib

try:  # ISA-L's inflate (python-isal, a dependency): about 3.5x zlib's speed on AlphaFold DB files
    from isal import isal_zlib as _inflate
except ImportError:  # pragma: no cover - a platform without isal wheels
    _inflate = zlib

# Suffixes of single-structure files -> format, longest first so ".cif.gz" wins over ".gz".
STRUCTURE_SUFFIXES: dict[str, str] = {
    ".pdb.gz": "pdb", ".ent.gz": "pdb", ".cif.gz": "cif", ".mmcif.gz": "cif",
    ".pdb": "pdb", ".ent": "pdb", ".cif": "cif", ".mmcif": "cif",
}  # fmt: skip
FORMAT_ALIASES: dict[str, str] = {"pdb": "pdb", "ent": "pdb", "cif": "cif", "mmcif": "cif"}
GZIP_MAGIC: bytes = b"\x1f\x8b"  # RFC 1952 member header
# What gzip.decompress raises on damaged input.
GZIP_ERRORS: tuple[type[BaseException], ...] = (gzip.BadGzipFile, EOFError, zlib.error, OSError, ValueError)


def is_gzipped(data: bytes) -> bool:
    """Return True when ``data`` starts with the gzip magic number."""
    return data[:2] == GZIP_MAGIC


def gunzip(data: bytes) -> bytes:
    """Return gzip ``data`` decompressed (raises one of `GZIP_ERRORS` on damaged data), with ISA-L when installed.

    A single complete member, the usual case, is inflated in one call; several members, trailing bytes or a
    truncated member go to `gzip.decompress`, whose reading and errors are the reference.
    """
    decompressor = _inflate.decompressobj(31)  # wbits 31: a gzip wrapper
    try:
        out = decompressor.decompress(data)
    except _inflate.error as error:
        raise zlib.error(str(error)) from error
    if decompressor.eof and not decompressor.unused_data:
        return out
    return gzip.decompress(data)


def maybe_gunzip(data: bytes) -> bytes:
    """Return ``data`` decompressed when it starts with the gzip magic, else unchanged (raises on corruption)."""
    return gunzip(data) if is_gzipped(data) else data


def structure_format(name: str) -> str | None:
    """Return ``"pdb"``/``"cif"`` for a structure file name (``.gz`` allowed), else None."""
    lower = name.lower()
    for suffix, fmt in STRUCTURE_SUFFIXES.items():
        if lower.endswith(suffix):
            return fmt
    return None


def normalise_format(fmt: str, source: str) -> str:
    """Return ``"pdb"`` or ``"cif"`` for a user-given format name (``"mmcif"``, ``".cif.gz"``, ``"ent"``...)."""
    key = fmt.lower().removeprefix(".").removesuffix(".gz")
    if key not in FORMAT_ALIASES:
        raise ValueError(f"{source}: unknown structure format {fmt!r}; use 'pdb' or 'cif'")
    return FORMAT_ALIASES[key]


def entry_id(name: str) -> str:
    """Return the entry id of a file name or URL: the base name without structure/gzip suffixes.

    ``AF-P12345-F1-model_v4.cif.gz`` -> ``AF-P12345-F1-model_v4``; names without a structure suffix are kept.
    """
    base = name.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
    lower = base.lower()
    for suffix in STRUCTURE_SUFFIXES:
        if lower.endswith(suffix):
            return base[: -len(suffix)]
    return base
