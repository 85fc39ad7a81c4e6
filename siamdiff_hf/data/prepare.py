"""`prepare_afdb`: parse structure sources once, one input shard at a time, into Parquet shards `load_afdb` streams.

Each source unit (a tar, a chunk of loose files, a Foldcomp slice, a Parquet file) is converted on its own, by one
process, into ``train-<unit>-<k>.parquet`` parts of at most ``shard_size`` structures, where ``<unit>`` comes from
the unit's name (``UP000005640_9606_HUMAN_v4`` for ``UP000005640_9606_HUMAN_v4.tar``). Names depend only on the
input, so a cluster can run one job per tar into the same folder. A unit is finished when its
``<unit>.done.json`` (counts, settings, part names) exists: an interrupted conversion resumes by converting only
the units without one. Parts are written as ``.partial`` files and renamed when complete, so a folder never holds
a half-written ``.parquet``. In the default ``arrays`` layout the files carry datasets' schema metadata, so they
load back through ``load_afdb(DIR)``, ``datasets.load_dataset("parquet", data_files=f"{DIR}/*.parquet",
streaming=True)``, and, once uploaded, ``datasets.load_dataset("user/name")`` from the Hub. The ``packed`` layout
(`siamdiff_hf.data.packed`) is read twice as fast by `load_afdb`, but only `load_afdb` reads it as arrays.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from siamdiff_hf.data.afdb import (
    FAILURE_REASONS,
    FILTER_REASONS,
    StreamCounts,
    StreamFilters,
    StreamOptions,
    _filters,
    afdb_features,
    generate_examples,
)
from siamdiff_hf.data.packed import check_layout, packed_table
from siamdiff_hf.data.sources import DEFAULT_PREFER, TAR_SUFFIXES, SourceUnit, resolve_sources
from siamdiff_hf.protein.parsing import check_backend

ROW_GROUP_SIZE = 64  # rows per Parquet row group: bounds the memory of a streaming read (~0.2 MB per 400 residues)
DONE_SUFFIX = ".done.json"
_PROGRESS_EVERY = 16  # structures between two progress reports of a worker


@dataclass
class PrepareSummary:
    """What `prepare_afdb` did: structures kept, filtered, failed (by reason), the shard paths, units resumed.

    Counts cover every unit of the sources, including those finished by an earlier run (``resumed`` of them).
    """

    kept: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    shards: list[str] = field(default_factory=list)
    units: int = 0
    resumed: int = 0

    @property
    def filtered(self) -> int:
        return sum(self.counts.get(reason, 0) for reason in FILTER_REASONS)

    @property
    def failed(self) -> int:
        return sum(self.counts.get(reason, 0) for reason in FAILURE_REASONS)

    def __str__(self) -> str:
        def detail(reasons: Sequence[str]) -> str:
            parts = [f"{reason} {self.counts[reason]}" for reason in reasons if self.counts.get(reason)]
            return f" ({', '.join(parts)})" if parts else ""

        resumed = f", {self.resumed} of {self.units} input shards already done" if self.resumed else ""
        return (
            f"kept {self.kept}, filtered {self.filtered}{detail(FILTER_REASONS)}, "
            f"failed {self.failed}{detail(FAILURE_REASONS)}; {len(self.shards)} Parquet shards{resumed}"
        )


def unit_names(units: Sequence[SourceUnit]) -> list[str]:
    """Return the output name of each unit: from its file name, unique, the same for the same input in any run.

    Tars and Parquet files give their base name without suffix; a Foldcomp slice ``<db>-<start>``; the k-th chunk
    of loose files from one source ``<folder or glob>-<k>``. A name taken twice (two ``x.tar`` in two folders) gets
    the unit's position appended.
    """
    names, chunks = [], Counter()
    for unit in units:
        base = unit.location.rstrip("/").split("?", 1)[0].rsplit("/", 1)[-1] or "files"
        if unit.kind == "tar":
            name = next((base[: -len(s)] for s in TAR_SUFFIXES if base.lower().endswith(s)), base)
        elif unit.kind == "parquet":
            name = base.removesuffix(".parquet")
        elif unit.kind == "foldcomp":
            name = f"{base}-{unit.start:09d}"
        else:
            name = f"{base}-{chunks[unit.location]:05d}"
            chunks[unit.location] += 1
        names.append(re.sub(r"[^A-Za-z0-9._=+-]+", "_", name).strip("._") or "files")
    seen = Counter(names)
    return [f"{name}-{i:05d}" if seen[name] > 1 else name for i, name in enumerate(names)]


def _settings(unit: SourceUnit, options: StreamOptions, shard_size: int, layout: str) -> dict[str, Any]:
    """Return what a finished unit's output depends on (stored in its ``.done.json``, compared on resume)."""
    return {"source": str(unit), "filters": asdict(options.filters), "backend": options.backend,
            "prefer": options.prefer, "shard_size": shard_size, "layout": layout}  # fmt: skip


def _write_part(rows: list[dict[str, Any]], path: Path, layout: str = "arrays") -> None:
    import pyarrow.parquet as pq
    from datasets import Dataset

    if layout == "packed":
        table = packed_table(rows)
    else:
        table = Dataset.from_list(rows, features=afdb_features()).data.table
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial, row_group_size=ROW_GROUP_SIZE)
    os.replace(partial, path)


def convert_unit(
    unit: SourceUnit,
    name: str,
    options: StreamOptions,
    output_dir: str | os.PathLike,
    shard_size: int,
    report: Callable[[int], Any] | None = None,
    layout: str = "arrays",
) -> dict[str, Any]:
    """Convert one unit into ``train-<name>-<k>.parquet`` parts and its ``<name>.done.json``; return the latter.

    ``report(n)`` is called with the number of structures handled since the previous call (progress).
    """
    output = Path(output_dir)
    own = re.compile(rf"train-{re.escape(name)}-\d{{5}}\.parquet(\.partial)?")
    for stale in output.iterdir():  # an interrupted earlier attempt at this unit
        if own.fullmatch(stale.name):
            stale.unlink()
    counts = StreamCounts()
    parts: list[str] = []
    rows: list[dict[str, Any]] = []
    reported = 0

    def flush() -> None:
        path = output / f"train-{name}-{len(parts):05d}.parquet"
        _write_part(rows, path, layout)
        parts.append(path.name)
        rows.clear()

    for example in generate_examples([unit], options, counts):
        rows.append(example)
        if len(rows) >= shard_size:
            flush()
        if report is not None and counts.total - reported >= _PROGRESS_EVERY:
            report(counts.total - reported)
            reported = counts.total
    if rows:
        flush()
    if report is not None and counts.total > reported:
        report(counts.total - reported)
    done = {**_settings(unit, options, shard_size, layout), "parts": parts, "counts": counts.as_dict()}
    marker = output / f"{name}{DONE_SUFFIX}"
    marker.with_name(marker.name + ".partial").write_text(json.dumps(done, indent=1) + "\n")
    os.replace(marker.with_name(marker.name + ".partial"), marker)
    return done


def _finished(marker: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """Return the ``.done.json`` of a unit finished with the same settings, None if it must be (re)done.

    Raises:
        ValueError: the unit was finished with other settings (filters, backend, ...), naming the file.
    """
    if not marker.exists():
        return None
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None  # unreadable marker: convert the unit again
    done.setdefault("layout", "arrays")  # markers written before layouts existed
    changed = [key for key, value in settings.items() if done.get(key) != value and key != "source"]
    if changed:
        raise ValueError(f"{marker}: this input shard was converted with other settings ({', '.join(changed)}: "
                         f"{', '.join(repr(done.get(k)) for k in changed)}); use another output folder")  # fmt: skip
    if not all((marker.parent / part).exists() for part in done.get("parts", [])):
        return None
    return done


def prepare_afdb(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    num_proc: int = 1,
    shard_size: int = 10_000,
    min_length: int | None = None,
    max_length: int | None = None,
    min_plddt: float | None = None,
    filters: StreamFilters | None = None,
    backend: str = "gemmi",
    prefer: str = DEFAULT_PREFER,
    files_per_shard: int = 1000,
    layout: str = "arrays",
    progress: bool = True,
) -> PrepareSummary:
    """Convert ``sources`` (as in `load_afdb`) into Parquet shards in ``output_dir``, ``num_proc`` units at a time.

    Filters are those of `load_afdb` (``filters`` or the three bounds). ``layout``: ``"arrays"`` (default:
    datasets' ``Array3D``/``Array2D`` columns, which ``datasets.load_dataset`` reads back as arrays) or
    ``"packed"`` (coordinates and masks as raw bytes, ~5x faster to decode, see `siamdiff_hf.data.packed`);
    `load_afdb` reads both to the same examples. Units finished by an earlier run into the
    same folder (their ``.done.json`` exists) are not converted again; their counts are part of the summary.
    Returns a `PrepareSummary`.

    Raises:
        SourceError: a source is missing or cannot be opened (before anything is written).
        ValueError: bad arguments, or the folder holds a unit converted with other settings.
    """
    check_backend(backend)
    check_layout(layout)
    options = StreamOptions(_filters(filters, min_length, max_length, min_plddt), backend, prefer)
    if shard_size < 1 or num_proc < 1:
        raise ValueError(f"shard_size and num_proc must be positive, got {shard_size} and {num_proc}")
    units = resolve_sources(sources, prefer=prefer, files_per_shard=files_per_shard)
    names = unit_names(units)
    output = Path(output_dir)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"{output} exists and is not a folder")
    output.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, Any]] = {}
    todo = []
    for index, (unit, name) in enumerate(zip(units, names)):
        done = _finished(output / f"{name}{DONE_SUFFIX}", _settings(unit, options, shard_size, layout))
        if done is None:
            todo.append(index)
        else:
            results[index] = done
    resumed = len(results)
    with _Progress(len(todo), progress) as bar:
        if num_proc <= 1 or len(todo) <= 1:
            for index in todo:
                results[index] = convert_unit(
                    units[index], names[index], options, output, shard_size, bar.structures, layout
                )
                bar.unit_done()
        else:
            _convert_in_pool(todo, units, names, options, output, shard_size, num_proc, bar, results, layout)
    totals: Counter[str] = Counter()
    for done in results.values():
        totals.update(done["counts"])
    shards = [str(output / part) for index in sorted(results) for part in results[index]["parts"]]
    return PrepareSummary(kept=totals.pop("examples", 0), counts=dict(totals), shards=shards, units=len(units),
                          resumed=resumed)  # fmt: skip


def _convert_in_pool(todo, units, names, options, output, shard_size, num_proc, bar, results, layout) -> None:
    """Convert the ``todo`` units in ``num_proc`` processes; progress travels through a manager queue."""
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=num_proc, mp_context=ctx) as pool:
        queue = manager.Queue()
        pending = {pool.submit(convert_unit, units[i], names[i], options, output, shard_size, queue.put, layout): i
                   for i in todo}  # fmt: skip
        while pending:
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(queue, bar)
            for future in done:
                results[pending.pop(future)] = future.result()
                bar.unit_done()
        _drain(queue, bar)


def _drain(queue: Any, bar: _Progress) -> None:
    while not queue.empty():
        bar.structures(queue.get())


class _Progress:
    """A progress bar over input shards (total and ETA) that also shows the structures handled."""

    def __init__(self, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="input shards", unit=" shard", disable=not enabled, file=sys.stderr)
        self.count = 0

    def structures(self, n: int) -> None:
        self.count += n
        self.bar.set_postfix_str(f"{self.count} structures", refresh=False)
        self.bar.refresh()

    def unit_done(self) -> None:
        self.bar.update(1)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()
