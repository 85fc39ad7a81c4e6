"""`siamdiff-hf convert-torchdrug`: official TorchDrug / SiamDiff checkpoints -> `from_pretrained` folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..cli import example_epilog

ARCHITECTURES = ("auto", "gearnet", "gvp", "esm_gearnet")


def _architecture(value: str) -> str:
    """Accept model types and their hyphenated spelling (``esm-gearnet``)."""
    name = value.replace("-", "_")
    if name not in ARCHITECTURES:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(ARCHITECTURES)})")
    return name


class _DeprecatedModelFlag(argparse.Action):
    """The old ``--model ARCH`` of this command (``--model`` is a model folder everywhere else)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print("warning: convert-torchdrug --model is deprecated, use --architecture", file=sys.stderr)
        namespace.architecture = _architecture(values)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert-torchdrug",
        help="convert a TorchDrug/SiamDiff checkpoint (.pth) into Hugging Face model folders",
        description="Convert a published SiamDiff/GearNet checkpoint (a TorchDrug state dict, read with "
        "weights_only=True) into folders that from_pretrained loads. The architecture is recognised from the keys "
        "and its sizes read off the tensor shapes. A whole SiamDiff task (encoder plus struct_mlp, dist_mlp and "
        "seq_mlp heads, as the official stage 1 saves) becomes OUTPUT/model (SiamDiffForPreTraining, to continue "
        "pre-training with model.init_from=OUTPUT/model) and OUTPUT/encoder (the encoder alone); an encoder "
        "checkpoint, or --encoder-only, becomes the encoder folder OUTPUT.",
        epilog=example_epilog(
            "siamdiff-hf convert-torchdrug siamdiff_gearnet_res.pth -o hf_model/",
            "siamdiff-hf convert-torchdrug stage1_task.pth -o siamdiff_stage1/   # -> model/ and encoder/",
            "siamdiff-hf convert-torchdrug gvp_task.pth -o gvp/ --architecture gvp --encoder-only",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", type=Path, help="TorchDrug .pth file (encoder or whole-task state dict)")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--architecture", type=_architecture, default="auto", metavar="{" + ",".join(ARCHITECTURES) + "}",
        help="model type of the checkpoint's encoder (default auto: recognised from its keys)",
    )  # fmt: skip
    parser.add_argument("--model", action=_DeprecatedModelFlag, help=argparse.SUPPRESS)
    parser.add_argument("--level", choices=["residue", "atom"], help="graph level (default: from the input width)")
    parser.add_argument("--encoder-only", action="store_true", help="of a whole task, convert only the encoder")
    parser.set_defaults(func=run)


def _detect(state_dict: dict) -> str:
    if any(k.endswith("sequence_model.model.embed_tokens.weight") for k in state_dict):
        return "esm_gearnet"
    if any(k.endswith("W_v.1.ws.weight") for k in state_dict):
        return "gvp"
    return "gearnet"


def _convert_encoder(architecture: str, state_dict: dict, level: str | None):
    from ..errors import UsageError

    if architecture == "gearnet":
        from ..convert.torchdrug import convert_gearnet_state_dict

        return convert_gearnet_state_dict(state_dict, level=level)
    if architecture == "gvp":
        from ..convert.gvp import convert_gvp_state_dict

        if level not in (None, "atom"):
            raise UsageError("GVP is an atom-level model: leave --level out or pass --level atom")
        return convert_gvp_state_dict(state_dict)
    from ..convert.fair_esm import convert_esm_gearnet_state_dict

    if level not in (None, "residue"):
        raise UsageError("ESM-GearNet is a residue-level model: leave --level out or pass --level residue")
    return convert_esm_gearnet_state_dict(state_dict)


def _save(model, folder: Path, architecture: str, checkpoint: Path, what: str) -> None:
    from ..hub import build_model_card, esm_base_model, model_title
    from ..protein import ProteinStructureProcessor

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    ProteinStructureProcessor(include_esm_tokens=architecture == "esm_gearnet").save_pretrained(folder)
    encoder_config = getattr(model.config, "encoder_config", model.config)
    card = build_model_card(
        model.config,
        title=f"{model_title(encoder_config)}{what}, converted from {checkpoint.name}",
        description=f"The official checkpoint `{checkpoint.name}` converted with `siamdiff-hf convert-torchdrug` "
        "(weights unchanged; outputs match the official implementation on the same graph).",
        settings={"source checkpoint": checkpoint.name},
        base_model=esm_base_model(encoder_config),
        pipeline_tag=None if what else "feature-extraction",
    )  # fmt: skip
    card.save(folder / "README.md")


def run(args: argparse.Namespace) -> int:
    """Convert and save; return 0 (errors are raised and shown by the CLI in one line)."""
    from ..convert.siamdiff_task import convert_siamdiff_task_state_dict, is_siamdiff_task
    from ..convert.torchdrug import load_torch_state_dict

    state_dict = load_torch_state_dict(args.checkpoint)
    architecture = _detect(state_dict) if args.architecture == "auto" else args.architecture
    encoder = _convert_encoder(architecture, state_dict, args.level)
    params = sum(p.numel() for p in encoder.parameters())
    if args.encoder_only or not is_siamdiff_task(state_dict):
        _save(encoder, args.output, architecture, args.checkpoint, "")
        print(f"converted {args.checkpoint} -> {args.output} ({type(encoder).__name__}, {params:,} parameters)")
        return 0
    model = convert_siamdiff_task_state_dict(state_dict, encoder)
    _save(model, args.output / "model", architecture, args.checkpoint, " with SiamDiff pre-training heads")
    _save(encoder, args.output / "encoder", architecture, args.checkpoint, "")
    c = model.config
    print(f"converted the SiamDiff task {args.checkpoint} -> {args.output / 'model'} (SiamDiffForPreTraining; "
          f"schedule beta {c.beta_start:g}..{c.beta_end:g}, {c.num_timesteps} steps) and {args.output / 'encoder'} "
          f"({type(encoder).__name__}, {params:,} parameters)")  # fmt: skip
    return 0
