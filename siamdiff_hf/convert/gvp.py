"""SiamDiff-format GVP-GNN state dicts -> `GVPModel` (SiamDiff `siamdiff/model.py`, class `GVPGNN`).

SiamDiff's `GVPGNN` keys (`embedding`, `residue_embdding` (sic), `W_v`, `W_e`, `layers.{l}.{conv.message_func,
norm,dropout,ff_func}`, `W_out`) map 1:1 onto `GVPModel`. The only entries dropped are the empty `dummy_param`
tensors (shape (0,)) that gvp-pytorch uses to find a module's device (SiamDiff keeps them in its vector dropouts);
they hold no weights. Whole-task files (`model.*` with heads, `{"model": ...}` engine files) are accepted: the
encoder part is taken and the rest reported. Sizes are read off the tensors' shapes; graph construction and
readout (not stored in weights) take SiamDiff's defaults unless overridden.

Note: SiamDiff's edge vector is the raw target - source, as in `GVPModel`; gvp-pytorch's own ATOM3D models use
the unit source - target vector and a different input embedding (`embed`), and are not accepted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import torch

from ..errors import CheckpointError
from ..models.gvp import GVPConfig, GVPModel
from .loading import load_converted_weights

logger = logging.getLogger(__name__)

_ANCHOR = "W_v.1.ws.weight"  # present in every SiamDiff / gvp-pytorch GVP-GNN
_ENCODER_KEY = re.compile(r"^(embedding|residue_embdding|W_v|W_e|W_out|layers)\.")
_PREFERRED_PREFIXES = ("", "model.", "encoder.", "gvp.", "module.", "module.model.")


def extract_gvp_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return the GVP encoder keys of a state dict with any task prefix (`model.`, ...) and `dummy_param`s removed."""
    prefixes = [k[: -len(_ANCHOR)] for k in state_dict if k.endswith(_ANCHOR)]
    if not prefixes:
        sample = ", ".join(list(state_dict)[:8])
        raise CheckpointError(f"no GVP-GNN encoder found (expected a key like '{_ANCHOR}'; got {sample})")
    # Tied encoders (SiamDiff's MSP/PIP tasks store `model.*` and `model2.*`) give several prefixes: take one.
    prefix = next((p for p in _PREFERRED_PREFIXES if p in prefixes), sorted(prefixes)[0])
    encoder = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    encoder = {k: v for k, v in encoder.items() if _ENCODER_KEY.match(k)}
    dummies = [k for k in encoder if k.rsplit(".", 1)[-1] == "dummy_param"]
    for key in dummies:
        if encoder[key].numel():
            raise CheckpointError(
                f"'{prefix}{key}' should be an empty placeholder, got shape {tuple(encoder[key].shape)}"
            )
        del encoder[key]
    ignored = len(state_dict) - len(encoder) - len(dummies)
    if ignored:
        logger.warning("kept %d GVP keys under prefix %r, ignored %d other keys", len(encoder), prefix, ignored)
    return encoder


def _count(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state_dict if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def _shape(state_dict: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(f"GVP state dict lacks '{key}', needed to infer the architecture")
    return tuple(state_dict[key].shape)


def infer_gvp_config(state_dict: Mapping[str, torch.Tensor], **overrides) -> GVPConfig:
    """Return the `GVPConfig` whose parameter shapes match a (prefix-free) GVP encoder state dict."""
    node_in = _shape(state_dict, "embedding.weight")[1]
    node_scalars = _shape(state_dict, "W_v.1.ws.weight")[0]
    node_vectors = _shape(state_dict, "W_out.1.wh.weight")[1]
    edge_scalars_in = _shape(state_dict, "W_e.0.scalar_norm.weight")[0]
    edge_vectors_in = _shape(state_dict, "W_e.1.wh.weight")[1]
    edge_scalars = _shape(state_dict, "W_e.1.ws.weight")[0]
    edge_vectors = _shape(state_dict, "W_e.1.wv.weight")[0] if "W_e.1.wv.weight" in state_dict else 0
    residue_in = _shape(state_dict, "residue_embdding.weight")[1] if "residue_embdding.weight" in state_dict else 0
    sizes = dict(
        node_in_dim=[node_in, 0], node_h_dim=[node_scalars, node_vectors],
        edge_in_dim=[edge_scalars_in, edge_vectors_in], edge_h_dim=[edge_scalars, edge_vectors],
        num_layers=_count(state_dict, r"^layers\.(\d+)\."),
        num_message_layers=_count(state_dict, r"^layers\.0\.conv\.message_func\.(\d+)\."),
        num_feedforward_layers=_count(state_dict, r"^layers\.0\.ff_func\.(\d+)\."),
        vector_gate=any(k.endswith(".wsv.weight") for k in state_dict), residue_in_dim=residue_in,
    )  # fmt: skip
    try:
        return GVPConfig(**{**sizes, **overrides})
    except ValueError as error:
        raise CheckpointError(f"GVP state dict gives an unsupported architecture: {error}") from error


def convert_gvp_state_dict(state_dict: Mapping[str, torch.Tensor], **overrides) -> GVPModel:
    """Return a `GVPModel` (eval mode) holding the weights of a SiamDiff-format GVP-GNN state dict (strict).

    `overrides` set config fields the weights do not determine (e.g. `radius`, `readout`, `drop_rate`).
    """
    encoder = extract_gvp_state_dict(state_dict)
    config = infer_gvp_config(encoder, **overrides)
    model = GVPModel(config)
    load_converted_weights(model, encoder, "GVP state dict does not fit the inferred architecture")
    return model.eval()
