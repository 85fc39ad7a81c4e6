"""`siamdiff-hf embed`: per-protein and per-residue embeddings of structure files, written to Parquet."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..embedding import embed_files


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed PDB/mmCIF files with a pretrained encoder and write a Parquet table",
        description="Embed structure files (.pdb, .cif, optionally .gz) with an encoder folder or Hub id. "
        "Unreadable files are skipped and listed at the end; the exit code is 1 if every file failed.",
    )
    parser.add_argument("files", nargs="+", type=Path, help="structure files")
    parser.add_argument("--model", "-m", required=True, help="encoder folder or Hub id (from_pretrained)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output .parquet file")
    parser.add_argument("--batch-size", type=int, default=8, help="proteins per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--chain", help="embed only this chain of every file")
    parser.add_argument("--no-residue-embeddings", action="store_true", help="write protein embeddings only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = embed_files(
        args.files, args.model, args.output, batch_size=args.batch_size, device=args.device, chain=args.chain,
        residue_embeddings=not args.no_residue_embeddings,
    )  # fmt: skip
    print(f"embedded {report.num_embedded} of {report.num_embedded + len(report.failed)} files -> {args.output}")
    if report.failed:
        print(f"skipped {len(report.failed)} file(s):")
        for path, reason in report.failed:
            print(f"  {path}: {reason}")
    return 0 if report.num_embedded else 1
