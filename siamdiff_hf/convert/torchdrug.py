"""Official TorchDrug GearNet(-Edge) checkpoints -> `GearNetModel`.

The published SiamDiff / GearNet files are plain encoder state dicts whose keys (TorchDrug 0.2.1
`torchdrug/models/gearnet.py`: `layers.{l}.*`, `edge_layers.{l}.*`, `batch_norms.{l}.*`) map 1:1 onto
`GearNetModel`. Whole-task files (SiamDiff stage 1: `alphas`, `model.*`, heads; downstream engines:
`{"model": task_state_dict, ...}`) are accepted too: here the encoder part is taken and the rest reported
(`convert.siamdiff_task` converts a whole SiamDiff task, heads included). The architecture is read off the
tensors' shapes, so custom sizes convert as well.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError  # also importable from here, its first home
from ..models.gearnet import GearNetConfig, GearNetModel
from .loading import load_converted_weights

logger = logging.getLogger(__name__)


_ENCODER_KEY = re.compile(r"^(layers|edge_layers|batch_norms)\.\d+\.")
_ENCODER_PREFIXES = ("model.", "structure_model.", "module.", "encoder.", "gearnet.")


def load_torch_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Return the tensors of a `.pth` file, read with ``weights_only=True`` (never a blanket unpickle)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointError(
            f"{path}: not a plain tensor checkpoint readable with weights_only=True ({error}). Only state dicts of "
            "tensors are accepted; re-save the file as `torch.save(model.state_dict(), path)`."
        ) from error
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]  # TorchDrug engine checkpoint: {"model": task.state_dict(), "optimizer": ...}
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    return dict(obj)


def extract_gearnet_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return the GearNet encoder keys of a state dict, with any task prefix (`model.`, ...) removed."""
    if any(_ENCODER_KEY.match(k) for k in state_dict):
        encoder = {k: v for k, v in state_dict.items() if _ENCODER_KEY.match(k)}
    else:
        encoder = {}
        for prefix in _ENCODER_PREFIXES:
            encoder = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
            encoder = {k: v for k, v in encoder.items() if _ENCODER_KEY.match(k)}
            if encoder:
                break
    if "layers.0.self_loop.weight" not in encoder:
        sample = ", ".join(list(state_dict)[:8])
        raise CheckpointError(
            f"no GearNet encoder found (expected keys like 'layers.0.self_loop.weight'; got {sample})"
        )
    dropped = len(state_dict) - len(encoder)
    if dropped:
        logger.warning("kept %d GearNet keys, ignored %d other keys (task heads, buffers)", len(encoder), dropped)
    return encoder


def infer_gearnet_config(
    state_dict: Mapping[str, torch.Tensor], level: str | None = None, **overrides
) -> GearNetConfig:
    """Return the `GearNetConfig` whose parameter shapes match an encoder state dict.

    Widths, layer count, relations, edge-feature width and angle bins come from the shapes; the level (graph
    construction and readout) from `level`, or from the input width (39 atom, otherwise residue).
    """
    num_layers = 1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("layers."))
    input_dim = state_dict["layers.0.self_loop.weight"].shape[1]
    hidden_dims = [state_dict[f"layers.{i}.self_loop.weight"].shape[0] for i in range(num_layers)]
    num_relation = state_dict["layers.0.linear.weight"].shape[1] // input_dim
    edge_input_dim = num_angle_bin = 0
    if "edge_layers.0.self_loop.weight" in state_dict:
        edge_input_dim = state_dict["edge_layers.0.self_loop.weight"].shape[1]
        num_angle_bin = state_dict["edge_layers.0.linear.weight"].shape[1] // edge_input_dim
    level = level or ("atom" if input_dim == 39 else "residue")
    config = GearNetConfig(
        level=level, input_dim=input_dim, hidden_dims=hidden_dims, num_relation=num_relation,
        edge_input_dim=edge_input_dim, num_angle_bin=num_angle_bin, batch_norm="batch_norms.0.weight" in state_dict,
        **overrides,
    )  # fmt: skip
    return config


def convert_gearnet_state_dict(
    state_dict: Mapping[str, torch.Tensor], level: str | None = None, **overrides
) -> GearNetModel:
    """Return a `GearNetModel` holding the weights of a TorchDrug GearNet(-Edge) state dict (strict)."""
    encoder = extract_gearnet_state_dict(state_dict)
    config = infer_gearnet_config(encoder, level, **overrides)
    model = GearNetModel(config)
    load_converted_weights(model, encoder, "state dict does not fit the inferred architecture")
    return model.eval()
