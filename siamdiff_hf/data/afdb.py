"""`load_afdb`: AlphaFold DB (and any PDB/mmCIF collection) as a sharded, resumable Hugging Face dataset.

Examples are plain arrays (`AFDB_FEATURES`)::

    id              string              entry id, e.g. "AF-P12345-F1-model_v4"
    residue_type    list<int64>  (L,)   TorchDrug residue ids, 20 = unknown
    atom_positions  Array3D      (L, 37, 3) float32, atom37 layout, Angstrom
    atom_mask       Array2D      (L, 37) bool
    plddt           list<float32> (L,)  CA B-factor: pLDDT for AlphaFold models
    length          int32               L

``atom_positions``/``atom_mask`` use datasets' variable-first-dimension ``Array3D``/``Array2D``: float32 and bool
round-trip exactly (Arrow and Parquet), and ``with_format("numpy"|"torch")`` returns (L, 37, 3) arrays directly.

Skipped and filtered structures are counted by the stream's `StreamCounts` (see `load_afdb`'s ``counts``).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import Array2D, Array3D, Dataset, Features, IterableDataset, List, Value

from siamdiff_hf.data.sources import (
    DEFAULT_PREFER,
    GZIP_ERRORS,
    RawStructure,
    SkipEvent,
    SourceUnit,
    iter_unit,
    resolve_sources,
)
from siamdiff_hf.protein.constants import NUM_ATOM37
from siamdiff_hf.protein.formats import gunzip, is_gzipped
from siamdiff_hf.protein.parsing import check_backend

logger = logging.getLogger(__name__)

AFDB_FEATURES = Features(
    {
        "id": Value("string"),
        "residue_type": List(Value("int64")),
        "atom_positions": Array3D(shape=(None, NUM_ATOM37, 3), dtype="float32"),
        "atom_mask": Array2D(shape=(None, NUM_ATOM37), dtype="bool"),
        "plddt": List(Value("float32")),
        "length": Value("int32"),
    }
)
SKIP_FIELD = "num_skipped"  # optional int32 column, see `load_afdb(report_skips=True)`

# Failure reasons (a structure lost) and filter reasons (a structure deliberately dropped).
FAILURE_REASONS = (
    "corrupt_gzip", "parse_error", "invalid_structure", "truncated_tar", "unreadable", "corrupt_member", "invalid_row",
)  # fmt: skip
FILTER_REASONS = ("filtered_length", "filtered_plddt")


@dataclass(frozen=True)
class StreamFilters:
    """Which structures a stream keeps: ``min_length <= L <= max_length`` residues, mean pLDDT >= ``min_plddt``.

    The one definition of the filters shared by `load_afdb`, `prepare_afdb`, ``siamdiff-hf prepare-afdb`` and the
    pre-training config (``data.min_length`` ...); None disables a bound. Raises ValueError for impossible bounds.
    """

    min_length: int | None = None
    max_length: int | None = None
    min_plddt: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_length", "max_length"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.min_length is not None and self.max_length is not None and self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) is larger than max_length ({self.max_length})")
        if self.min_plddt is not None and not 0 <= self.min_plddt <= 100:
            raise ValueError(f"min_plddt must lie in [0, 100] (pLDDT is a percentage), got {self.min_plddt!r}")

    def reject_reason(self, example: dict[str, Any]) -> str | None:
        """Return the filter reason that drops ``example``, or None to keep it."""
        length = int(example["length"])
        if (self.min_length is not None and length < self.min_length) or (
            self.max_length is not None and length > self.max_length
        ):
            return "filtered_length"
        if self.min_plddt is not None and (length == 0 or float(np.mean(example["plddt"])) < self.min_plddt):
            return "filtered_plddt"
        return None


class StreamCounts:
    """What one stream did in one process: examples yielded, structures lost (per failure reason), filtered.

    A stream updates the `StreamCounts` it was given (`load_afdb`'s ``counts``) in the process that reads it: the
    main process without DataLoader workers, otherwise each worker updates its own copy. ``report_skips=True``
    carries the failures to the consumer in the ``num_skipped`` column instead, which works with workers.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._unreported = 0  # failures not yet reported through the `num_skipped` field

    def failure(self, event: SkipEvent) -> None:
        """Count a lost structure and log it (one warning line naming the member)."""
        self._counts[event.reason] += 1
        self._unreported += 1
        logger.warning("skipped %s (%s): %s", event.origin, event.reason, event.detail)

    def filtered(self, reason: str) -> None:
        """Count a structure dropped by a filter."""
        self._counts[reason] += 1

    def example(self) -> None:
        """Count a delivered example."""
        self._counts["examples"] += 1

    def take_unreported(self) -> int:
        """Return the failures since the previous call (what the next example's ``num_skipped`` says)."""
        value, self._unreported = self._unreported, 0
        return value

    def as_dict(self) -> dict[str, int]:
        """Return ``examples``, each failure reason and each filter reason (zeros included)."""
        counts = dict.fromkeys(("examples", *FAILURE_REASONS, *FILTER_REASONS), 0)
        counts.update(self._counts)
        return counts

    @property
    def total(self) -> int:
        """Structures seen: delivered, filtered or lost."""
        return sum(self._counts.values())

    def reset(self) -> None:
        """Zero every count."""
        self._counts.clear()
        self._unreported = 0

    def __repr__(self) -> str:
        return f"StreamCounts({ {k: v for k, v in self.as_dict().items() if v} })"


PROCESS_COUNTS = StreamCounts()  # the counts of streams built without their own ``counts`` (see `skip_counts`)


def skip_counts() -> dict[str, int]:
    """Return `PROCESS_COUNTS` as a dict: what streams built without ``counts=`` did in this process."""
    return PROCESS_COUNTS.as_dict()


def reset_skip_counts() -> None:
    """Zero `PROCESS_COUNTS` (see `skip_counts`)."""
    PROCESS_COUNTS.reset()


def protein_to_example(protein: Any) -> dict[str, Any]:
    """Return the `AFDB_FEATURES` example of a parsed `Protein` (pLDDT taken from the CA B-factors)."""
    return {
        "id": protein.id,
        "residue_type": np.asarray(protein.residue_type, dtype=np.int64),
        "atom_positions": np.asarray(protein.atom_positions, dtype=np.float32),
        "atom_mask": np.asarray(protein.atom_mask, dtype=bool),
        "plddt": np.asarray(protein.b_factor, dtype=np.float32),
        "length": np.int32(len(protein.residue_type)),
    }


def parse_record(record: RawStructure, backend: str = "gemmi") -> dict[str, Any] | SkipEvent:
    """Return the example of one raw record, or the `SkipEvent` explaining why it cannot be used."""

    from siamdiff_hf.protein import InvalidStructureError, parse_structure

    data = record.data
    if record.gzipped or is_gzipped(data):
        try:
            data = gunzip(data)
        except GZIP_ERRORS as error:
            return SkipEvent("corrupt_gzip", record.origin, str(error) or type(error).__name__)
    try:
        protein = parse_structure(data, format=record.format, name=record.origin, backend=backend, id=record.id)
    except InvalidStructureError as error:
        reason = "parse_error" if str(getattr(error, "reason", "")).startswith("cannot parse") else "invalid_structure"
        return SkipEvent(reason, record.origin, str(error))
    except Exception as error:  # gemmi/Biopython raise many types on garbage input
        return SkipEvent("parse_error", record.origin, f"{type(error).__name__}: {error}")
    return protein_to_example(protein)


@dataclass(frozen=True)
class StreamOptions:
    """Per-example settings shared by every shard of a `load_afdb` stream."""

    filters: StreamFilters = field(default_factory=StreamFilters)
    backend: str = "gemmi"
    prefer: str = DEFAULT_PREFER
    report_skips: bool = False


def generate_examples(
    shards: list[SourceUnit], options: StreamOptions, counts: StreamCounts | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the examples of ``shards`` in order; failures are logged and counted in ``counts``, never raised.

    Deterministic for given shards, which is what makes datasets' ``state_dict`` resumption exact: a resumed
    shard is re-read from its start and the examples already delivered are dropped.
    """
    counts = PROCESS_COUNTS if counts is None else counts
    for unit in shards:
        for record in iter_unit(unit, options.prefer):
            if isinstance(record, SkipEvent):
                counts.failure(record)
                continue
            example = parse_record(record, options.backend) if isinstance(record, RawStructure) else record
            if isinstance(example, SkipEvent):
                counts.failure(example)
                continue
            reason = options.filters.reject_reason(example)
            if reason is not None:
                counts.filtered(reason)
                continue
            counts.example()
            if options.report_skips:
                example[SKIP_FIELD] = np.int32(counts.take_unreported())
            yield example


def afdb_features(report_skips: bool = False) -> Features:
    """Return `AFDB_FEATURES`, with the ``num_skipped`` int32 column when ``report_skips``."""
    if not report_skips:
        return AFDB_FEATURES.copy()
    return Features({**AFDB_FEATURES, SKIP_FIELD: Value("int32")})


def load_afdb(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    streaming: bool = True,
    *,
    min_length: int | None = None,
    max_length: int | None = None,
    min_plddt: float | None = None,
    filters: StreamFilters | None = None,
    backend: str = "gemmi",
    prefer: str = DEFAULT_PREFER,
    files_per_shard: int = 1000,
    foldcomp_shard_size: int = 10_000,
    report_skips: bool = False,
    counts: StreamCounts | None = None,
    num_proc: int | None = None,
    cache_dir: str | None = None,
) -> IterableDataset | Dataset:
    """Return AlphaFold DB structures as a `datasets.IterableDataset` (a map-style `Dataset` if not ``streaming``).

    Args:
        sources: paths, globs, directories or URLs (``file://``, ``http(s)://``, ``hf://``, any fsspec URL) of
            PDB/mmCIF files (``.gz`` too), AFDB tar shards (per-proteome and Swiss-Prot tars, read as streams),
            Parquet shards written by ``siamdiff-hf prepare-afdb`` (either layout), or Foldcomp databases.
        streaming: build an `IterableDataset` (no parsing up front); otherwise parse everything into Arrow.
        min_length, max_length: keep structures with ``min_length <= L <= max_length`` residues.
        min_plddt: keep structures whose mean pLDDT (CA B-factor) is at least this.
        filters: the three bounds above as one `StreamFilters` (then leave them unset).
        backend: ``"gemmi"`` (fast) or ``"biopython"`` parser.
        prefer: format kept when an entry has both ``.cif`` and ``.pdb`` files (AFDB tars ship both; the
            default ``"pdb"`` reads the same arrays from AFDB models faster).
        files_per_shard: loose files (directories, globs) per shard.
        foldcomp_shard_size: Foldcomp database entries per shard.
        report_skips: add an int32 ``num_skipped`` column: structures lost to failures in this worker since the
            previous example, so summing it over batches (and ranks) gives the total failure count.
        counts: the `StreamCounts` the stream updates where it is read (default: `PROCESS_COUNTS`, which
            `skip_counts` reports).
        num_proc, cache_dir: for ``streaming=False`` (parallel parsing; where the Arrow cache is written).

    One shard per source unit (tar, Parquet file, chunk of ``files_per_shard`` files, Foldcomp slice), so
    DataLoader workers and ``split_dataset_by_node`` ranks read disjoint shards. ``ds.shuffle(seed=...,
    buffer_size=...)`` + ``ds.set_epoch(epoch)`` shuffle shard order and a buffer. ``ds.state_dict()`` /
    ``ds.load_state_dict()`` (or ``torchdata``'s ``StatefulDataLoader``) resume exactly, except that datasets
    drops the content of a shuffle buffer on resume: use ``buffer_size=1`` (shard-order shuffling, still exact)
    where no example may be lost. A resumed shard is re-read from its start.

    A member that cannot be used (corrupt gzip, truncated tar, unparsable or invalid structure) is skipped with
    a warning naming it and counted (``counts``); a source that cannot be opened, or a Parquet file of another
    schema, raises `SourceError` naming it.
    """
    check_backend(backend)
    filters = _filters(filters, min_length, max_length, min_plddt)
    units = resolve_sources(
        sources, prefer=prefer, files_per_shard=files_per_shard, foldcomp_shard_size=foldcomp_shard_size
    )
    options = StreamOptions(filters, backend, prefer, report_skips)
    gen_kwargs = {"shards": units, "options": options, "counts": PROCESS_COUNTS if counts is None else counts}
    features = afdb_features(report_skips)
    if streaming:
        return IterableDataset.from_generator(generate_examples, features=features, gen_kwargs=gen_kwargs)
    return Dataset.from_generator(
        generate_examples, features=features, gen_kwargs=gen_kwargs, num_proc=num_proc, cache_dir=cache_dir
    )


def _filters(filters: StreamFilters | None, min_length, max_length, min_plddt) -> StreamFilters:
    """Return ``filters``, or the `StreamFilters` of the separate bounds (not both)."""
    if filters is None:
        return StreamFilters(min_length, max_length, min_plddt)
    if (min_length, max_length, min_plddt) != (None, None, None):
        raise ValueError("give either filters= or min_length/max_length/min_plddt, not both")
    return filters


# --------------------------------------------------------------------------------------------------------------
# AlphaFold DB download URLs
# --------------------------------------------------------------------------------------------------------------
AFDB_BASE_URL = "https://ftp.ebi.ac.uk/pub/databases/alphafold/latest/"

# TorchDrug's `datasets.AlphaFoldDB` species 0-20, the 21 model-organism proteomes SiamDiff pre-trained on
# (`species_start: 0, species_end: 21`): (reference proteome, NCBI taxonomy id, UniProt mnemonic, organism).
AFDB_MODEL_ORGANISMS: tuple[tuple[str, int, str, str], ...] = (
    ("UP000006548", 3702, "ARATH", "Arabidopsis thaliana"),
    ("UP000001940", 6239, "CAEEL", "Caenorhabditis elegans"),
    ("UP000000559", 237561, "CANAL", "Candida albicans"),
    ("UP000000437", 7955, "DANRE", "Danio rerio"),
    ("UP000002195", 44689, "DICDI", "Dictyostelium discoideum"),
    ("UP000000803", 7227, "DROME", "Drosophila melanogaster"),
    ("UP000000625", 83333, "ECOLI", "Escherichia coli"),
    ("UP000008827", 3847, "SOYBN", "Glycine max"),
    ("UP000005640", 9606, "HUMAN", "Homo sapiens"),
    ("UP000008153", 5671, "LEIIN", "Leishmania infantum"),
    ("UP000000805", 243232, "METJA", "Methanocaldococcus jannaschii"),
    ("UP000000589", 10090, "MOUSE", "Mus musculus"),
    ("UP000001584", 83332, "MYCTU", "Mycobacterium tuberculosis"),
    ("UP000059680", 39947, "ORYSJ", "Oryza sativa"),
    ("UP000001450", 36329, "PLAF7", "Plasmodium falciparum"),
    ("UP000002494", 10116, "RAT", "Rattus norvegicus"),
    ("UP000002311", 559292, "YEAST", "Saccharomyces cerevisiae"),
    ("UP000002485", 284812, "SCHPO", "Schizosaccharomyces pombe"),
    ("UP000008816", 93061, "STAA8", "Staphylococcus aureus"),
    ("UP000002296", 353153, "TRYCC", "Trypanosoma cruzi"),
    ("UP000007305", 4577, "MAIZE", "Zea mays"),
)


def afdb_proteome_urls(
    species: Sequence[int | str] | None = None,
    *,
    swissprot: str | None = None,
    version: int = 4,
    base_url: str = AFDB_BASE_URL,
) -> list[str]:
    """Return AlphaFold DB tar URLs of the model-organism proteomes (and optionally Swiss-Prot).

    Args:
        species: TorchDrug species ids (0-20) or mnemonics (``"HUMAN"``); default all 21, the set SiamDiff
            pre-trained on (TorchDrug downloaded the v2 tars; the current release is v4).
        swissprot: ``"pdb"`` or ``"cif"`` to append ``swissprot_<format>_v<version>.tar`` (not in the paper's set).
        version: AFDB release in the file names.
        base_url: mirror or ``.../alphafold/v4/`` instead of ``latest/``.

    Each URL can be passed to `load_afdb` (streamed, never stored) or to ``siamdiff-hf prepare-afdb``::

        >>> afdb_proteome_urls(["ECOLI"])
        ['https://ftp.ebi.ac.uk/pub/databases/alphafold/latest/UP000000625_83333_ECOLI_v4.tar']
    """
    by_name = {entry[2]: i for i, entry in enumerate(AFDB_MODEL_ORGANISMS)}
    indices: list[int] = []
    for item in range(len(AFDB_MODEL_ORGANISMS)) if species is None else species:
        if isinstance(item, str) and item.upper() in by_name:
            indices.append(by_name[item.upper()])
        elif isinstance(item, int) and 0 <= item < len(AFDB_MODEL_ORGANISMS):
            indices.append(item)
        else:
            raise ValueError(f"unknown species {item!r}: use 0-20 or one of {sorted(by_name)}")
    base = base_url if base_url.endswith("/") else base_url + "/"
    urls = []
    for i in indices:
        proteome, taxid, mnemonic, _ = AFDB_MODEL_ORGANISMS[i]
        urls.append(f"{base}{proteome}_{taxid}_{mnemonic}_v{version}.tar")
    if swissprot is not None:
        if swissprot not in ("pdb", "cif"):
            raise ValueError(f"swissprot must be 'pdb' or 'cif', got {swissprot!r}")
        urls.append(f"{base}swissprot_{swissprot}_v{version}.tar")
    return urls
