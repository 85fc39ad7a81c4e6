"""EC and GO benchmark files as DeepFRI released them and TorchDrug's `EnzymeCommission` / `GeneOntology` read them.

Files (flatironinstitute/DeepFRI `preprocessing/data/`; TorchDrug 0.2.1 `torchdrug/datasets/enzyme_commission.py`,
`gene_ontology.py`):

- ``nrPDB-EC[_2020.04]_annot.tsv``: line 1 a header, line 2 the 538 EC numbers (tab-separated), line 3 a header,
  then ``PDB-chain<TAB>EC,EC,...``.
- ``nrPDB-GO[_2019.06.18]_annot.tsv``: a 12-line header of four lines per branch in the order MF, BP, CC (title,
  terms, title, names), a column header, then ``PDB-chain<TAB>MF terms<TAB>BP terms<TAB>CC terms`` (comma
  lists, possibly empty; TorchDrug keeps a chain with an empty branch as an all-zero target).
- ``*_train.txt`` / ``*_valid.txt`` / ``*_test.txt``: one chain id per line (``1ABC-A``).
- ``*_test.csv``: ``PDB-chain,<30%,<40%,<50%,<70%,<95%``; a test chain flagged ``0`` under the chosen cutoff is
  removed (TorchDrug: ``test_cutoff`` in 0.3, 0.4, 0.5, 0.7, 0.95, default 0.95).
- structures: TorchDrug's zip layout (folders ``train/``, ``valid/``, ``test/`` of ``<chain id>_<n>.pdb``; the
  split is the folder) or one folder of ``<chain id>[_...].pdb|.cif[.gz]`` files (the split from the lists).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..protein.formats import entry_id, structure_format

TEST_CUTOFFS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.7, 0.95)
GO_BRANCHES: tuple[str, ...] = ("MF", "BP", "CC")  # the order of the annotation file's columns and header blocks
SPLITS: dict[str, str] = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}


@dataclass
class DeepFRISplit:
    """One split of EC or a GO branch: chains to read, their positive term indices, and what was left out."""

    terms: list[str]
    chains: list[str] = field(default_factory=list)  # kept chain ids, in split-file order
    files: dict[str, str] = field(default_factory=dict)  # chain id -> structure file
    positives: dict[str, list[int]] = field(default_factory=dict)  # chain id -> term indices
    counts: dict[str, int] = field(default_factory=dict)  # listed, removed_by_cutoff, missing_structure, ...
    source_files: list[str] = field(default_factory=list)  # every file the split depends on (for cache keys)


def _find(root: Path, pattern: str, what: str) -> Path:
    matches = sorted(root.glob(pattern)) or sorted(root.glob(f"*/{pattern}"))
    if not matches:
        raise FileNotFoundError(f"{root}: no {what} file matching {pattern!r} (DeepFRI/TorchDrug layout expected)")
    return matches[0]


def read_terms_and_annotations(path: Path, branch: str | None) -> tuple[list[str], dict[str, list[int]]]:
    """Return (terms, chain id -> positive term indices) of an EC (``branch=None``) or GO annotation file."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    if branch is None:
        header, column = 3, 1
        terms = rows[1] if len(rows) > 1 else []
    else:
        index = GO_BRANCHES.index(branch)
        header, column = 13, index + 1
        terms = rows[4 * index + 1] if len(rows) > 4 * index + 1 else []
    if not terms or len(rows) < header:
        raise ValueError(f"{path}: not a DeepFRI annotation file (too short or no term list)")
    term_index = {t: i for i, t in enumerate(terms)}
    positives: dict[str, list[int]] = {}
    for line_no, row in enumerate(rows[header:], start=header + 1):
        if not row:
            continue
        value = row[column] if column < len(row) else ""
        try:
            positives[row[0]] = [term_index[t] for t in value.split(",") if t]
        except KeyError as err:
            raise ValueError(f"{path}:{line_no}: term {err.args[0]!r} is not in the file's term list") from None
    return terms, positives


def read_cutoff_flags(path: Path, cutoff: float) -> dict[str, bool]:
    """Return chain id -> kept at ``cutoff`` from ``*_test.csv`` (TorchDrug drops the chains flagged "0")."""
    if cutoff not in TEST_CUTOFFS:
        raise ValueError(f"test_cutoff must be one of {TEST_CUTOFFS}, got {cutoff!r}")
    column = TEST_CUTOFFS.index(cutoff) + 1
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader, None)
        return {row[0]: row[column] != "0" for row in reader if row}


def _chain_of_file(name: str) -> str | None:
    """Return the chain id a structure file stands for (``1ABC-A_123.pdb`` -> ``1ABC-A``), None for other files."""
    if structure_format(name) is None:
        return None
    return entry_id(name).split("_")[0]


def _chain_key(chain: str) -> str:
    """Return the lookup key of a chain id: the PDB code upper-cased, the chain kept as it is (``1abc-a`` ->
    ``1ABC-a``). Chain ids are case-sensitive: the released lists hold both ``3H4P-A`` and ``3H4P-a``."""
    code, dash, name = chain.partition("-")
    return code.upper() + dash + name


def _index_structures(folder: Path) -> dict[str, str]:
    """Return chain key (`_chain_key`) -> file for the structure files directly inside ``folder``."""
    index: dict[str, str] = {}
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            chain = _chain_of_file(entry.name) if entry.is_file() else None
            if chain is not None:
                index.setdefault(_chain_key(chain), entry.path)
    return index


def read_split(
    root: str | os.PathLike, task: str, split: str, *, test_cutoff: float = 0.95, structure_dir: str | None = None
) -> DeepFRISplit:
    """Return the chains of one split of ``task`` (``"ec"`` or ``"go-bp"/"go-mf"/"go-cc"``) under ``root``.

    The split's chains are the ``*_<split>.txt`` list when present, else the files of the ``<split>/`` folder;
    structures are looked up in ``structure_dir``, else ``<root>/<split>/``, else ``<root>/structures/``, else
    ``root`` itself. The cutoff filter applies to the test split (only test chains appear in ``*_test.csv``).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(SPLITS)}")
    split = SPLITS[split]
    stem = "EC" if task == "ec" else "GO"
    branch = None if task == "ec" else task.split("-")[1].upper()
    annot = _find(root, f"nrPDB-{stem}*_annot.tsv", "annotation")
    terms, positives = read_terms_and_annotations(annot, branch)
    result = DeepFRISplit(terms=terms, source_files=[str(annot)])

    if structure_dir is not None:
        folder = Path(structure_dir).expanduser()
    else:
        candidates = [root / split, root / "structures", root]
        folder = next(c for c in candidates if c.is_dir() and (c == root or any(c.iterdir())))
    structures = _index_structures(folder)
    lists = sorted(root.glob(f"nrPDB-{stem}*_{split}.txt")) or sorted(root.glob(f"*/nrPDB-{stem}*_{split}.txt"))
    if lists:
        chains = [line.strip() for line in lists[0].read_text().splitlines() if line.strip()]
        result.source_files.append(str(lists[0]))
    elif folder == root / split:
        chains = sorted(_chain_of_file(Path(p).name) for p in structures.values())
    else:
        raise FileNotFoundError(f"{root}: no nrPDB-{stem}*_{split}.txt list and no {split}/ folder")
    counts = dict.fromkeys(("listed", "removed_by_cutoff", "missing_annotation", "missing_structure"), 0)
    counts["listed"] = len(chains)
    keep = None
    csvs = sorted(root.glob(f"nrPDB-{stem}*_test.csv")) or sorted(root.glob(f"*/nrPDB-{stem}*_test.csv"))
    if csvs:
        keep = read_cutoff_flags(csvs[0], test_cutoff)
        result.source_files.append(str(csvs[0]))
    elif split == "test" and test_cutoff != 0.95:
        raise FileNotFoundError(f"{root}: test_cutoff={test_cutoff} needs nrPDB-{stem}*_test.csv")
    for chain in chains:
        if keep is not None and not keep.get(chain, True):
            counts["removed_by_cutoff"] += 1
        elif chain not in positives:
            counts["missing_annotation"] += 1
        elif _chain_key(chain) not in structures:
            counts["missing_structure"] += 1
        else:
            result.chains.append(chain)
            result.files[chain] = structures[_chain_key(chain)]
            result.positives[chain] = positives[chain]
    result.counts = counts
    result.source_files.extend(result.files[c] for c in result.chains)
    return result
