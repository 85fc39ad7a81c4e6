"""`siamdiff-hf prepare-afdb`: parse AFDB tars / structure folders in parallel into Parquet shards."""

from __future__ import annotations

import argparse

EPILOG = """\
The output loads back with
  load_afdb("DIR")                                                    # siamdiff_hf.data, streaming
  datasets.load_dataset("parquet", data_files="DIR/*.parquet", split="train", streaming=True)

Sharing it on the Hub (the recommended way to share a pre-processed corpus): upload the folder as it is,
which keeps the shards and their schema,
  from huggingface_hub import HfApi
  HfApi().upload_folder(repo_id="user/afdb-parquet", repo_type="dataset", folder_path="DIR", path_in_repo="data")
then stream it with load_afdb("hf://datasets/user/afdb-parquet/data") or
datasets.load_dataset("user/afdb-parquet", split="train", streaming=True). Alternatively
  datasets.load_dataset("parquet", data_files="DIR/*.parquet", split="train").push_to_hub("user/afdb-parquet")
re-shards it through datasets.
"""


def run(args: argparse.Namespace) -> int:
    """Convert, print the summary; return 0 (1 when nothing was kept)."""
    from siamdiff_hf.data.prepare import prepare_afdb

    summary = prepare_afdb(
        args.sources,
        args.output,
        num_proc=args.num_proc,
        shard_size=args.shard_size,
        min_length=args.min_length,
        max_length=args.max_length,
        min_plddt=args.min_plddt,
        backend=args.backend,
        prefer=args.prefer,
        files_per_shard=args.files_per_shard,
        progress=not args.no_progress,
    )
    print(f"{summary} in {args.output}")
    return 0 if summary.kept else 1


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `prepare-afdb`."""
    parser = subparsers.add_parser(
        "prepare-afdb",
        help="parse AlphaFold DB tars / structure folders into Parquet shards (train-00000-of-000NN.parquet)",
        description=(
            "Parse structure sources (AFDB tars, local or http(s)/hf:// URLs; directories or globs of "
            ".pdb/.cif(.gz); Foldcomp databases) in parallel processes and write Parquet shards that "
            "load_afdb streams much faster than the raw files."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sources", nargs="+", help="paths, globs, directories or URLs (see `siamdiff-hf afdb-urls`)")
    parser.add_argument("--output", "-o", required=True, help="output directory (must hold no train-*.parquet)")
    parser.add_argument("--num-proc", type=int, default=1, help="parallel parsing processes (default 1)")
    parser.add_argument("--shard-size", type=int, default=10_000, help="max structures per Parquet shard")
    parser.add_argument("--min-length", type=int, default=None, help="drop structures shorter than this")
    parser.add_argument("--max-length", type=int, default=None, help="drop structures longer than this")
    parser.add_argument("--min-plddt", type=float, default=None, help="drop structures with a lower mean pLDDT")
    parser.add_argument("--backend", choices=("gemmi", "biopython"), default="gemmi", help="parser (default gemmi)")
    parser.add_argument("--prefer", choices=("cif", "pdb"), default="cif",
                        help="format kept when an entry has both (AFDB tars do; default cif)")  # fmt: skip
    parser.add_argument("--files-per-shard", type=int, default=1000, help="loose files per parsing task")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser
