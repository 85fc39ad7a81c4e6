"""`prepare_afdb`: parse structure sources once, in parallel processes, into Parquet shards `load_afdb` streams.

Each source unit (tar, chunk of files, Foldcomp slice) is parsed by one process and written as parts of at most
``shard_size`` structures; the parts are then named ``train-00000-of-000NN.parquet`` in source order, so the output
does not depend on process scheduling. The files carry datasets' schema metadata, so they load back through
``load_afdb(DIR)``, ``datasets.load_dataset("parquet", data_files=f"{DIR}/*.parquet", streaming=True)``, and, once
uploaded, ``datasets.load_dataset("user/name")`` from the Hub.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siamdiff_hf.data.afdb import (
    FAILURE_REASONS,
    FILTER_REASONS,
    StreamOptions,
    afdb_features,
    generate_examples,
    reset_skip_counts,
    skip_counts,
)
from siamdiff_hf.data.sources import SourceUnit, resolve_sources

ROW_GROUP_SIZE = 64  # rows per Parquet row group: bounds the memory of a streaming read (~0.2 MB per 400 residues)
_PROGRESS_EVERY = 16
_progress_queue: Any = None  # set in each worker process by `_init_worker`


@dataclass
class PrepareSummary:
    """What `prepare_afdb` did: structures kept, filtered, failed (by reason) and the shard paths."""

    kept: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    shards: list[str] = field(default_factory=list)

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

        return (
            f"kept {self.kept}, filtered {self.filtered}{detail(FILTER_REASONS)}, "
            f"failed {self.failed}{detail(FAILURE_REASONS)}; {len(self.shards)} Parquet shards"
        )


def _init_worker(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue


def _write_part(rows: list[dict[str, Any]], path: Path, report_skips: bool) -> None:
    import pyarrow.parquet as pq
    from datasets import Dataset

    table = Dataset.from_list(rows, features=afdb_features(report_skips)).data.table
    pq.write_table(table, path, row_group_size=ROW_GROUP_SIZE)


def _convert_unit(
    index: int, unit: SourceUnit, options: StreamOptions, tmp_dir: str, shard_size: int
) -> tuple[int, list[str], dict[str, int]]:
    """Parse one unit into ``part-<index>-<k>.parquet`` files; return (index, part paths, counts)."""
    reset_skip_counts()
    parts: list[str] = []
    rows: list[dict[str, Any]] = []
    reported = 0

    def flush() -> None:
        path = Path(tmp_dir) / f"part-{index:06d}-{len(parts):05d}.parquet"
        _write_part(rows, path, options.report_skips)
        parts.append(str(path))
        rows.clear()

    for example in generate_examples([unit], options):
        rows.append(example)
        if len(rows) >= shard_size:
            flush()
        seen = sum(skip_counts().values())
        if _progress_queue is not None and seen - reported >= _PROGRESS_EVERY:
            _progress_queue.put(seen - reported)
            reported = seen
    if rows:
        flush()
    counts = skip_counts()
    if _progress_queue is not None and sum(counts.values()) > reported:
        _progress_queue.put(sum(counts.values()) - reported)
    return index, parts, counts


def _drain(queue: Any, bar: Any) -> None:
    while True:
        try:
            bar.update(queue.get_nowait())
        except Exception:  # queue.Empty
            return


def prepare_afdb(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    *,
    num_proc: int = 1,
    shard_size: int = 10_000,
    min_length: int | None = None,
    max_length: int | None = None,
    min_plddt: float | None = None,
    backend: str = "gemmi",
    prefer: str = "cif",
    files_per_shard: int = 1000,
    progress: bool = True,
) -> PrepareSummary:
    """Parse ``sources`` (as in `load_afdb`) in ``num_proc`` processes and write Parquet shards to ``output_dir``.

    Returns a `PrepareSummary`. Filters are those of `load_afdb`. Refuses to write into a directory that already
    holds ``train-*.parquet`` shards.
    """
    from tqdm.auto import tqdm

    output = Path(output_dir)
    if any(output.glob("train-*.parquet")):
        raise FileExistsError(f"{output} already holds train-*.parquet shards; choose an empty directory")
    output.mkdir(parents=True, exist_ok=True)
    units = resolve_sources(sources, prefer=prefer, files_per_shard=files_per_shard)
    options = StreamOptions(min_length, max_length, min_plddt, backend, prefer)
    results: list[tuple[int, list[str], dict[str, int]]] = []
    with tempfile.TemporaryDirectory(dir=output, prefix=".prepare-") as tmp_dir:
        bar = tqdm(desc="structures", unit=" structures", disable=not progress, file=sys.stderr)
        if num_proc <= 1:
            for index, unit in enumerate(units):
                results.append(_convert_unit(index, unit, options, tmp_dir, shard_size))
                bar.update(sum(results[-1][2].values()))
        else:
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
            queue = ctx.Queue()
            with ProcessPoolExecutor(
                max_workers=num_proc, mp_context=ctx, initializer=_init_worker, initargs=(queue,)
            ) as pool:
                pending = {pool.submit(_convert_unit, i, unit, options, tmp_dir, shard_size) for i, unit in
                           enumerate(units)}  # fmt: skip
                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    _drain(queue, bar)
                    results.extend(future.result() for future in done)
            _drain(queue, bar)
        bar.close()
        parts = [part for _, unit_parts, _ in sorted(results) for part in unit_parts]
        shards = []
        for i, part in enumerate(parts):
            shard = output / f"train-{i:05d}-of-{len(parts):05d}.parquet"
            shutil.move(part, shard)
            shards.append(str(shard))
    totals: Counter[str] = Counter()
    for _, _, counts in results:
        totals.update(counts)
    return PrepareSummary(kept=totals.pop("examples", 0), counts=dict(totals), shards=shards)
