"""Builders of the released downstream formats from the `tests/data` chains (for tests and benchmarks).

- `atom_frame`: an ATOM3D atom DataFrame in ``to_json(orient="split")`` form, as atom3d's ``bp_to_df`` writes it
  (see `atom_rows`).
- `pip_item` / `res_item`: a DIPS (PIP) and a RES item as atom3d's task scripts write them.
- `write_atom3d_lmdb`: an LMDB in ATOM3D's layout (``num_examples``, ``serialization_format``, ``id_to_idx``,
  item *i* at ``str(i)`` as gzip-compressed JSON, with the ``types`` dict marking DataFrames).
- `write_deepfri`: a DeepFRI / TorchDrug EC or GO folder (annotation TSV and test CSV written with `csv.writer`
  as DeepFRI's scripts write them, split lists, chain PDBs).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).parent
DATAFRAME = "<class 'pandas.core.frame.DataFrame'>"
COLUMNS = (
    "ensemble", "subunit", "structure", "model", "chain", "hetero", "insertion_code", "residue", "segid", "resname",
    "altloc", "occupancy", "bfactor", "x", "y", "z", "element", "name", "fullname", "serial_number",
)  # fmt: skip


def atom_rows(path: str | Path, ensemble: str | None = None, subunit: Any = 0, chain: str | None = None) -> list[list]:
    """Return the ATOM3D atom-frame rows of a PDB file as atom3d's ``bp_to_df(read_any(path))`` writes them.

    Biopython's values: every model (``model`` its serial), ``ensemble``/``structure`` the file name, ``subunit``
    0, ``resname`` the raw 3-column field (``" MN"``), ``hetero`` ``" "`` / ``"W"`` / ``"H_" + resname``, ``" "``
    for a blank insertion code or altloc, ``fullname`` the 4-column atom name, float32 coordinates written with
    6 decimals (``to_json(double_precision=6)``), hydrogens included. (Biopython keeps one altloc per atom; the
    tests/data chains have none.) ``ensemble``/``subunit``/``chain`` override those columns.
    """
    import gemmi

    name = Path(path).name
    rows = []
    for number, model in enumerate(gemmi.read_structure(str(path)), start=1):
        for ch in model:
            for residue in ch:
                resname = f"{residue.name:>3}"
                if residue.het_flag != "H":
                    hetero = " "
                else:
                    hetero = "W" if residue.name in ("HOH", "WAT") else f"H_{resname}"
                icode = residue.seqid.icode if residue.seqid.icode.strip() else " "
                for atom in residue:
                    xyz = (round(float(np.float32(v)), 6) for v in (atom.pos.x, atom.pos.y, atom.pos.z))
                    rows.append([
                        ensemble or name, subunit, name, number, chain or ch.name, hetero, icode, residue.seqid.num,
                        "    ", resname, atom.altloc if atom.altloc != "\x00" else " ", round(float(atom.occ), 2),
                        round(float(atom.b_iso), 2), *xyz, atom.element.name.upper(), atom.name,
                        f"{atom.padded_name():<4}", atom.serial,
                    ])  # fmt: skip
    return rows


def frame(rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """Return the ``orient="split"`` dict of atom rows."""
    return {"columns": list(COLUMNS), "index": list(range(len(rows))), "data": [list(r) for r in rows]}


def atom_frame(path: str | Path, **kwargs) -> dict[str, Any]:
    """Return the split-form ATOM3D atom frame of a structure file."""
    return frame(atom_rows(path, **kwargs))


def col(name: str) -> int:
    return COLUMNS.index(name)


def encode_item(item: dict[str, Any]) -> bytes:
    """Return the stored bytes of an item: ``types`` added as atom3d does, JSON, gzip."""
    item = dict(item)
    types = {}
    for key, value in item.items():
        is_frame = isinstance(value, dict) and "columns" in value and "data" in value
        types[key] = DATAFRAME if is_frame else str(type(value))
    types["types"] = str(dict)
    item["types"] = types
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6) as f:
        f.write(json.dumps(item).encode())
    return buf.getvalue()


def pip_item(split_number: int = 400) -> tuple[dict[str, Any], set[tuple[int, int]]]:
    """A DIPS item as atom3d's `examples/ppi/dataset` writes it, from 1dx5I cut into chains A and B at a residue
    number: subunits ``<structure>_<model>_<chain>``, ensemble ``<subunit0>_<subunit1>``; ``atoms_neighbors`` =
    the residue pairs with heavy atoms within 6 A (`neighbors.py::_get_heavy_neighbors`, in its order)."""
    rows = atom_rows(DATA / "1dx5I.pdb.gz", chain="A")
    structure = rows[0][col("structure")]
    names = {c: f"{structure}_1_{c}" for c in "AB"}
    ensemble = f"{names['A']}_{names['B']}"
    for r in rows:
        r[col("chain")] = "B" if r[col("residue")] >= split_number else "A"
        r[col("subunit")], r[col("ensemble")] = names[r[col("chain")]], ensemble
    heavy = [r for r in rows if r[col("element")] != "H"]
    xyz = np.array([[r[col(a)] for a in "xyz"] for r in heavy])
    side = np.array([r[col("chain")] == "B" for r in heavy])
    dist = np.linalg.norm(xyz[~side][:, None] - xyz[side][None], axis=-1)
    a = np.array(heavy, dtype=object)[~side]
    b = np.array(heavy, dtype=object)[side]
    i, j = np.nonzero(dist < 6)
    contacts = list(dict.fromkeys((x[col("residue")], y[col("residue")]) for x, y in zip(a[i], b[j])))
    columns = [f"{c}{i}" for i in (0, 1) for c in ("ensemble", "subunit", "structure", "model", "chain", "residue")]
    data = [[ensemble, names["A"], structure, 1, "A", r0, ensemble, names["B"], structure, 1, "B", r1, 1]
            for r0, r1 in contacts]  # fmt: skip
    neighbors = {"columns": [*columns, "label"], "index": list(range(len(data))), "data": data}
    return {"atoms_pairs": frame(rows), "atoms_neighbors": neighbors, "id": ensemble}, set(contacts)


# atom3d `examples/res/dataset/prepare_lmdb.py`: its label vocabulary and the mean glycine CB offset from the CA
_RES_LABELS = {n: i for i, n in enumerate((
    "HIS", "LYS", "ARG", "ASP", "GLU", "SER", "THR", "ASN", "GLN", "ALA", "VAL", "LEU", "ILE", "MET", "PHE", "TYR",
    "TRP", "PRO", "GLY", "CYS",
))}  # fmt: skip
_GLY_CB = np.array([-0.5311191, -0.75842446, 1.2198311], dtype=np.float32)


def res_item(rows: list[list], targets: Sequence[tuple[str, int, str]], item_id: str = "2xcj") -> dict[str, Any]:
    """An ATOM3D RES item as atom3d's ``ResTransform`` writes it: ``atoms`` = the heavy C/O/N/S/P/SE atoms of the
    non-hetero residues (index reset), per target an environment = the sorted indices of the atoms within
    10*sqrt(3) A of the pseudo-CB (CA + mean glycine CB offset) once the target's side chain is removed, and the
    ``labels`` frame ``[subunit "chain_number_resname", ATOM3D label, CB x, y, z]``."""
    rows = [r for r in rows if r[col("element")] in ("C", "O", "N", "S", "P", "SE") and not r[col("hetero")].strip()]
    xyz = np.array([[r[col(a)] for a in "xyz"] for r in rows])
    labels, environments = [], []
    for chain, number, resname in targets:
        target = [i for i, r in enumerate(rows) if r[col("residue")] == number and r[col("chain")] == chain]
        cb = xyz[next(i for i in target if rows[i][col("name")] == "CA")].astype(np.float32) + _GLY_CB
        side_chain = {i for i in target if rows[i][col("name")] not in ("N", "CA", "C", "O")}
        near = np.flatnonzero(np.linalg.norm(xyz - cb, axis=-1) <= 10.0 * np.sqrt(3))
        environments.append([int(i) for i in near if i not in side_chain])
        labels.append([f"{chain}_{number}_{resname}", _RES_LABELS.get(resname, -1), *cb.tolist()])
    label_frame = {"columns": ["subunit", "label", "x", "y", "z"], "index": list(range(len(labels))), "data": labels}
    return {"atoms": frame(rows), "labels": label_frame, "subunit_indices": environments, "id": item_id}


def write_atom3d_lmdb(path: Path, items: Sequence[dict[str, Any] | bytes]) -> Path:
    """Write items (dicts, or raw bytes to store as given, e.g. corrupt data) as an ATOM3D LMDB at ``path``."""
    import lmdb

    path.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(path), map_size=1 << 30)
    id_to_idx = {}
    with env.begin(write=True) as txn:
        for i, item in enumerate(items):
            data = item if isinstance(item, bytes) else encode_item(item)
            txn.put(str(i).encode(), data)
            id_to_idx[item["id"] if isinstance(item, dict) else f"raw{i}"] = i
        txn.put(b"num_examples", str(len(items)).encode())
        txn.put(b"serialization_format", b"json")
        txn.put(b"id_to_idx", json.dumps(id_to_idx).encode())
    env.close()
    return path


def write_deepfri(
    root: Path,
    task: str,
    splits: dict[str, dict[str, str]],
    annotations: dict[str, Any],
    terms: Sequence[str] | dict[str, Sequence[str]],
    cutoffs: dict[str, Sequence[int]],
    layout: str = "deepfri",
) -> Path:
    """Write a DeepFRI-layout EC/GO folder.

    Args:
        splits: split -> {chain id (e.g. "2XDG-A") -> structure file in tests/data}.
        annotations: chain id -> "EC,EC" (EC) or (MF, BP, CC) strings (GO).
        terms: EC term list, or GO {"MF": [...], "BP": [...], "CC": [...]}.
        cutoffs: test chain id -> five 0/1 flags for <30%, <40%, <50%, <70%, <95%.
        layout: "deepfri" (split lists + one structure folder) or "torchdrug" (train/valid/test folders).
    """
    root.mkdir(parents=True, exist_ok=True)
    prefix = "nrPDB-EC_2020.04" if task == "ec" else "nrPDB-GO_2019.06.18"
    # DeepFRI's `create_nrPDB_{EC,GO}_annot.py` write both files with `csv.writer` (CRLF line ends, fields quoted
    # when they hold a quote), the split lists with plain "\n" lines.
    with open(root / f"{prefix}_annot.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        if task == "ec":
            writer.writerows([["### EC-numbers"], terms, ["### PDB-chain", "EC-numbers"]])
            writer.writerows([pdb, ec] for pdb, ec in annotations.items())
        else:
            longs = {"MF": "molecular_function", "BP": "biological_process", "CC": "cellular_component"}
            for branch, long in longs.items():
                names = [f'"{t}" name, with a comma' for t in terms[branch]]
                writer.writerows([[f"### GO-terms ({long})"], terms[branch], [f"### GO-names ({long})"], names])
            writer.writerow(["### PDB-chain", *(f"GO-terms ({long})" for long in longs.values())])
            writer.writerows([pdb, *branches] for pdb, branches in annotations.items())
    with open(root / f"{prefix}_test.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["PDB-chain", "<30%", "<40%", "<50%", "<70%", "<95%"])
        writer.writerows([pdb, *(int(x) for x in flags)] for pdb, flags in cutoffs.items())
    for split, members in splits.items():
        (root / f"{prefix}_{split}.txt").write_text("".join(f"{pdb}\n" for pdb in members))
        folder = root / split if layout == "torchdrug" else root / "structures"
        folder.mkdir(exist_ok=True)
        for pdb, source in members.items():
            name = f"{pdb}_{len(pdb) * 7}.pdb" if layout == "torchdrug" else f"{pdb}.pdb.gz"
            data = gzip.decompress((DATA / source).read_bytes())
            (folder / name).write_bytes(data if layout == "torchdrug" else gzip.compress(data))
    return root
