"""`siamdiff-hf embed`: per-protein and per-residue embeddings of structure files, written to Parquet."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import example_epilog


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed PDB/mmCIF files with a pretrained encoder and write a Parquet table",
        description="Embed structure files (.pdb, .ent, .cif, .mmcif, optionally .gz) with an encoder folder or Hub "
        "id. One row per file: id, path, sequence, chain_id, residue_number, insertion_code, b_factor (pLDDT for "
        "AlphaFold DB models), protein_embedding and residue_embeddings; the file's schema metadata names the "
        "model, the pooling and the package version. Unreadable files are skipped (a warning each, a list at the "
        "end); the exit code is 1 if every file failed.",
        epilog=example_epilog(
            "siamdiff-hf embed --model outputs/quickstart/encoder tests/data/*.pdb.gz -o embeddings.parquet",
            "siamdiff-hf embed --model outputs/quickstart/encoder my_pdbs/*.cif.gz -o e.parquet --pooling mean",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", type=Path, help="structure files")
    parser.add_argument("--model", "-m", required=True, help="encoder folder or Hub id (from_pretrained)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output .parquet file")
    parser.add_argument("--batch-size", type=int, default=8, help="proteins per forward pass (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--chain", help="embed only this chain of every file")
    parser.add_argument(
        "--pooling", choices=("sum", "mean"), default=None,
        help="protein embedding = sum or mean over the model's nodes (default: the model's readout; residue "
        "GearNet-Edge sums, so the norm grows with length: mean is length-independent)",
    )  # fmt: skip
    parser.add_argument("--no-residue-embeddings", action="store_true", help="write protein embeddings only")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as transformers_logging

    from ..embedding import embed_files
    from ..errors import UsageError

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    transformers_logging.disable_progress_bar()  # "Loading weights" bars: ours is the one that matters
    report = embed_files(
        args.files, args.model, args.output, batch_size=args.batch_size, device=args.device, chain=args.chain,
        residue_embeddings=not args.no_residue_embeddings, pooling=args.pooling,
    )  # fmt: skip
    total = report.num_embedded + len(report.failed)
    written = f" -> {args.output}" if report.num_embedded else " (nothing written)"
    print(f"embedded {report.num_embedded} of {total} files{written}")
    if report.failed:
        print(f"skipped {len(report.failed)} file(s):")
        for path, reason in report.failed:
            print(f"  {path}: {reason}")
    return 0 if report.num_embedded else 1
