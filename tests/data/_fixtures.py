"""AlphaFold-DB-shaped fixtures built from the CC0 PDB chains in this folder.

Each chain becomes an AFDB entry ``AF-<ID>-F1-model_v4`` with a per-residue pLDDT written in the B-factor column,
as gzipped PDB (Biopython PDBIO) and gzipped mmCIF (Biopython MMCIFIO), packed into tars in AFDB's layout (one
``.cif.gz`` and one ``.pdb.gz`` per entry, adjacent, at the archive root).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import tarfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parent
PDB_FILES = sorted(DATA_DIR.glob("*.pdb.gz"))


@dataclass(frozen=True)
class Entry:
    """One AFDB-shaped entry: its id, the pLDDT written per residue, and the gzipped PDB and mmCIF bytes."""

    id: str
    plddt: np.ndarray
    pdb_gz: bytes
    cif_gz: bytes

    @property
    def pdb(self) -> str:
        return gzip.decompress(self.pdb_gz).decode()


def _gzip(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


@functools.cache
def afdb_entries() -> tuple[Entry, ...]:
    """Return one AFDB-shaped entry per test chain (cached; deterministic)."""
    from Bio.PDB import MMCIFIO, PDBIO, PDBParser

    entries = []
    for number, path in enumerate(PDB_FILES):
        code = path.name.split(".")[0].upper()  # e.g. 2XDGA
        entry_id = f"AF-Q{code}-F1-model_v4"
        with gzip.open(path, "rt") as handle:
            structure = PDBParser(QUIET=True).get_structure(entry_id, handle)
        for model in list(structure)[1:]:
            structure.detach_child(model.id)
        residues = list(structure[0].get_residues())
        # mean pLDDT 40, 50, 60, ... per entry, varying along the chain
        plddt = np.round(40.0 + 10.0 * number + 15.0 * np.sin(0.37 * np.arange(len(residues)) + number), 2)
        for residue, value in zip(residues, plddt):
            for atom in residue.get_unpacked_list():
                atom.set_bfactor(float(value))
        pdb_io, cif_io = PDBIO(), MMCIFIO()
        pdb_text, cif_text = io.StringIO(), io.StringIO()
        pdb_io.set_structure(structure)
        pdb_io.save(pdb_text)
        cif_io.set_structure(structure)
        cif_io.save(cif_text)
        pdb_gz, cif_gz = _gzip(pdb_text.getvalue()), _gzip(cif_text.getvalue())
        entries.append(Entry(entry_id, plddt.astype(np.float32), pdb_gz, cif_gz))
    return tuple(entries)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    archive.addfile(info, io.BytesIO(data))


def write_afdb_tar(
    path: Path, entries: Sequence[Entry], *, extra: Sequence[tuple[str, bytes]] = (), truncate_at: float | None = None
) -> Path:
    """Write ``entries`` as an AFDB proteome tar (cif.gz then pdb.gz per entry), then ``extra`` (name, bytes).

    ``truncate_at`` (0-1) cuts the file at that fraction of its size, as an interrupted download would.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for entry in entries:
            _add(archive, f"{entry.id}.cif.gz", entry.cif_gz)
            _add(archive, f"{entry.id}.pdb.gz", entry.pdb_gz)
        for name, data in extra:
            _add(archive, name, data)
    data = buffer.getvalue()
    if truncate_at is not None:
        data = data[: int(len(data) * truncate_at)]
    path.write_bytes(data)
    return path


def corrupt_gzip(data: bytes) -> bytes:
    """Return gzip bytes with the deflate stream damaged (the header stays valid)."""
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]


def write_foldcomp_db(path: Path, entries: Sequence[Entry]) -> Path:
    """Write a Foldcomp database (data + .index/.lookup/.dbtype) of ``entries``' PDB models."""
    import foldcomp

    offset = 0
    blobs, index, lookup = [], [], []
    for key, entry in enumerate(entries):
        blob = foldcomp.compress(entry.id, entry.pdb) + b"\0"
        blobs.append(blob)
        index.append(f"{key}\t{offset}\t{len(blob)}\n")
        lookup.append(f"{key}\t{entry.id}\t0\n")
        offset += len(blob)
    path.write_bytes(b"".join(blobs))
    Path(f"{path}.index").write_text("".join(index))
    Path(f"{path}.lookup").write_text("".join(lookup))
    Path(f"{path}.dbtype").write_bytes((12).to_bytes(4, "little"))
    return path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (random port) in a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 10
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
