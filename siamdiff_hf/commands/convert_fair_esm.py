"""`siamdiff-hf convert-fair-esm`: a fair-esm ESM-2 `.pt` file -> a transformers `EsmModel` folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import example_epilog


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convert-fair-esm CHECKPOINT --output DIR``."""
    parser = subparsers.add_parser(
        "convert-fair-esm",
        help="convert a fair-esm ESM-2 checkpoint (.pt) into a transformers EsmModel folder",
        description="Convert a fair-esm ESM-2 checkpoint (e.g. esm2_t33_650M_UR50D.pt, read with weights_only=True; "
        "a sibling <stem>-contact-regression.pt is merged when present) into a folder with the model, its "
        "tokenizer and a model card. Load it with EsmModel.from_pretrained(DIR, add_pooling_layer=False) or "
        "EsmGearNetModel.from_esm_pretrained(DIR). The LM head is dropped.",
        epilog=example_epilog("siamdiff-hf convert-fair-esm esm2_t33_650M_UR50D.pt -o esm2/"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="fair-esm ESM-2 .pt file")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert and save the model, its tokenizer and a model card; return 0 (errors are raised, one line each)."""
    from ..convert.fair_esm import convert_fair_esm
    from ..hub import build_model_card, esm_base_model
    from ..protein.processor import esm_tokenizer

    model = convert_fair_esm(args.checkpoint)
    args.output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output)
    esm_tokenizer().save_pretrained(args.output)
    config = model.config
    card = build_model_card(
        config,
        title=f"ESM-2 ({config.num_hidden_layers} layers, {config.hidden_size} wide), converted from "
        f"{args.checkpoint.name}",
        description=f"The fair-esm checkpoint `{args.checkpoint.name}` converted with `siamdiff-hf "
        "convert-fair-esm` (LM head dropped). Load it with `EsmModel.from_pretrained(DIR, add_pooling_layer=False)` "
        "or as the sequence model of ESM-GearNet with `EsmGearNetModel.from_esm_pretrained(DIR)`.",
        settings={"source checkpoint": args.checkpoint.name},
        base_model=esm_base_model(config),
        usage="from transformers import AutoTokenizer, EsmModel\n\n"
        f'tokenizer = AutoTokenizer.from_pretrained("{args.output}")\n'
        f'model = EsmModel.from_pretrained("{args.output}", add_pooling_layer=False)\n'
        'outputs = model(**tokenizer(["MKTAYIAKQR"], return_tensors="pt"))\n'
        "outputs.last_hidden_state  # (1, 12, hidden size): <cls>, residues, <eos>",
    )  # fmt: skip
    card.save(args.output / "README.md")
    params = sum(p.numel() for p in model.parameters())
    print(f"converted {args.checkpoint} -> {args.output} (EsmModel, {params:,} parameters)")
    return 0
