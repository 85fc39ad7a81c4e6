"""`siamdiff-hf prepare-afdb`: convert AFDB tars / structure folders into Parquet shards, one input shard at a time."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  siamdiff-hf prepare-afdb UP000005640_9606_HUMAN_v4.tar -o afdb_parquet/ --num-proc 8
  siamdiff-hf prepare-afdb "tars/*.tar" -o afdb_parquet/ --max-length 1000 --min-plddt 70

Each input shard (tar, chunk of loose files, Foldcomp slice) becomes train-<name>-<k>.parquet with <name> taken
from the input's file name, plus <name>.done.json when it is finished. Running the same command again (after an
interruption, or with more inputs) converts only the shards without a .done.json, so a cluster can run one job
per tar into one folder:
  for tar in tars/*.tar; do sbatch --wrap "siamdiff-hf prepare-afdb $tar -o afdb_parquet/"; done

The output loads back with
  load_afdb("DIR")                                                    # siamdiff_hf.data, streaming
  datasets.load_dataset("parquet", data_files="DIR/*.parquet", split="train", streaming=True)

Sharing it on the Hub (the recommended way to share a pre-processed corpus): upload the folder as it is,
which keeps the shards and their schema,
  from huggingface_hub import HfApi
  HfApi().upload_folder(repo_id="user/afdb-parquet", repo_type="dataset", folder_path="DIR", path_in_repo="data")
then stream it with load_afdb("hf://datasets/user/afdb-parquet/data") or
datasets.load_dataset("user/afdb-parquet", split="train", streaming=True).

Exit status: 0 when structures were written (or were already), 1 when nothing was kept or an input is missing,
2 for usage errors.
"""


def run(args: argparse.Namespace) -> int:
    """Convert, print the summary; return 0, or 1 when no structure was kept."""
    from siamdiff_hf.data.afdb import StreamFilters
    from siamdiff_hf.data.prepare import prepare_afdb
    from siamdiff_hf.errors import UsageError

    try:
        filters = StreamFilters(args.min_length, args.max_length, args.min_plddt)
    except ValueError as error:
        raise UsageError(f"prepare-afdb: {error}") from error
    for name in ("num_proc", "shard_size", "files_per_shard"):
        if getattr(args, name) < 1:
            raise UsageError(f"prepare-afdb: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    summary = prepare_afdb(
        args.sources,
        args.output,
        num_proc=args.num_proc,
        shard_size=args.shard_size,
        filters=filters,
        backend=args.backend,
        prefer=args.prefer,
        files_per_shard=args.files_per_shard,
        layout=args.layout,
        progress=not args.no_progress,
    )
    print(f"{summary} in {args.output}")
    if not summary.kept:
        why = "every structure failed" if summary.failed and not summary.filtered else "no structure was kept"
        print(f"siamdiff-hf prepare-afdb: error: {why} ({summary})", file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `prepare-afdb`."""
    from siamdiff_hf.protein.parsing import BACKENDS

    parser = subparsers.add_parser(
        "prepare-afdb",
        help="convert AlphaFold DB tars / structure folders into Parquet shards (resumable, one input at a time)",
        description=(
            "Parse structure sources (AFDB tars, local or http(s)/hf:// URLs; directories or globs of "
            ".pdb/.cif(.gz); Foldcomp databases) in parallel processes and write Parquet shards that "
            "load_afdb streams much faster than the raw files."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sources", nargs="+", help="paths, globs, directories or URLs (see `siamdiff-hf afdb-urls`)")
    parser.add_argument("-o", "--output", required=True, help="output folder (finished input shards are kept)")
    parser.add_argument("--num-proc", type=int, default=1, help="input shards converted in parallel (default 1)")
    parser.add_argument("--shard-size", type=int, default=10_000, help="max structures per Parquet shard")
    parser.add_argument("--min-length", type=int, default=None, help="drop structures shorter than this")
    parser.add_argument("--max-length", type=int, default=None, help="drop structures longer than this")
    parser.add_argument("--min-plddt", type=float, default=None, help="drop structures with a lower mean pLDDT")
    parser.add_argument("--backend", choices=BACKENDS, default="gemmi", help="parser (default gemmi)")
    parser.add_argument("--prefer", choices=("cif", "pdb"), default="pdb",
                        help="format kept when an entry has both (AFDB tars do; default pdb)")  # fmt: skip
    parser.add_argument("--files-per-shard", type=int, default=1000, help="loose files per input shard")
    parser.add_argument(
        "--layout",
        choices=("arrays", "packed"),
        default="arrays",
        help="arrays (default: datasets Array3D columns) or packed (raw bytes, ~5x faster to read)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser
