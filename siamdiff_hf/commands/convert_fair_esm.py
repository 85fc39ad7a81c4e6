"""`siamdiff-hf convert-fair-esm`: a fair-esm ESM-2 `.pt` file -> a transformers `EsmModel` folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..convert.fair_esm import convert_fair_esm
from ..convert.torchdrug import CheckpointError
from ..protein.processor import esm_tokenizer


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convert-fair-esm CHECKPOINT --output DIR``."""
    parser = subparsers.add_parser(
        "convert-fair-esm",
        help="convert a fair-esm ESM-2 checkpoint (.pt) into a transformers EsmModel folder",
        description="Convert a fair-esm ESM-2 checkpoint (e.g. esm2_t33_650M_UR50D.pt, read with weights_only=True; "
        "a sibling <stem>-contact-regression.pt is merged when present) into a folder with the model and its "
        "tokenizer. Load it with EsmModel.from_pretrained(DIR, add_pooling_layer=False) or "
        "EsmGearNetModel.from_esm_pretrained(DIR). The LM head is dropped.",
    )
    parser.add_argument("checkpoint", type=Path, help="fair-esm ESM-2 .pt file")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and save the model and its tokenizer; return the exit code (2 on an unreadable checkpoint)."""
    try:
        model = convert_fair_esm(args.checkpoint)
    except (CheckpointError, FileNotFoundError) as error:
        print(f"error: {error}")
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output)
    esm_tokenizer().save_pretrained(args.output)
    params = sum(p.numel() for p in model.parameters())
    print(f"converted {args.checkpoint} -> {args.output} (EsmModel, {params:,} parameters)")
    return 0
