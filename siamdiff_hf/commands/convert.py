"""`siamdiff-hf convert-torchdrug`: official TorchDrug checkpoints -> a `from_pretrained` folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..convert.torchdrug import CheckpointError, convert_gearnet_state_dict, load_torch_state_dict
from ..hub import build_model_card
from ..protein.processor import ProteinStructureProcessor


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert-torchdrug",
        help="convert a TorchDrug GearNet(-Edge) state dict (.pth) into a Hugging Face model folder",
        description="Convert a published SiamDiff/GearNet checkpoint (TorchDrug state dict, read with "
        "weights_only=True) into a folder that AutoModel.from_pretrained loads. The architecture is read off "
        "the tensor shapes.",
    )
    parser.add_argument("checkpoint", type=Path, help="TorchDrug .pth file (encoder or whole-task state dict)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    parser.add_argument("--model", choices=sorted(CONVERTERS), default="gearnet", help="architecture of the checkpoint")
    parser.add_argument("--level", choices=["residue", "atom"], help="graph level (default: from the input width)")
    parser.set_defaults(func=run)


def _convert_gearnet(state_dict: dict, level: str | None):
    return convert_gearnet_state_dict(state_dict, level=level)


def _convert_gvp(state_dict: dict, level: str | None):
    from ..convert.gvp import convert_gvp_state_dict

    if level not in (None, "atom"):
        raise CheckpointError("GVP is an atom-level model: leave --level out or pass --level atom")
    return convert_gvp_state_dict(state_dict)


def _convert_esm_gearnet(state_dict: dict, level: str | None):
    from ..convert.fair_esm import convert_esm_gearnet_state_dict

    if level not in (None, "residue"):
        raise CheckpointError("ESM-GearNet is a residue-level model: leave --level out or pass --level residue")
    return convert_esm_gearnet_state_dict(state_dict)


# --model NAME -> function(state_dict, level) returning a PreTrainedModel with its weights loaded.
CONVERTERS = {"gearnet": _convert_gearnet, "gvp": _convert_gvp, "esm-gearnet": _convert_esm_gearnet}


def run(args: argparse.Namespace) -> int:
    try:
        model = CONVERTERS[args.model](load_torch_state_dict(args.checkpoint), args.level)
    except (CheckpointError, FileNotFoundError) as error:
        print(f"error: {error}")
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output)
    ProteinStructureProcessor(include_esm_tokens=args.model == "esm-gearnet").save_pretrained(args.output)
    card = build_model_card(
        model.config,
        title=f"{type(model).__name__} ({getattr(model.config, 'level', 'residue')} level), converted from "
        f"{args.checkpoint.name}",
        description=f"TorchDrug checkpoint `{args.checkpoint.name}` converted with `siamdiff-hf convert-torchdrug`. "
        "Outputs match the official implementation on the same graph.",
        settings={"source checkpoint": args.checkpoint.name},
    )
    card.save(args.output / "README.md")
    params = sum(p.numel() for p in model.parameters())
    print(f"converted {args.checkpoint} -> {args.output} ({type(model).__name__}, {params:,} parameters)")
    return 0
