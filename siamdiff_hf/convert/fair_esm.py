"""fair-esm ESM-2 checkpoints -> transformers `EsmModel`; ESM-GearNet FusionNetwork checkpoints -> `EsmGearNetModel`.

Key mapping (fair-esm 2.0 `esm/model/esm2.py` names -> transformers `models/esm/modeling_esm.py` names):
``embed_tokens`` -> ``embeddings.word_embeddings``, ``emb_layer_norm_after`` -> ``encoder.emb_layer_norm_after``,
per layer ``layers.{i}.X`` -> ``encoder.layer.{i}.Y`` (q/k/v/out_proj -> attention.self.query/key/value,
attention.output.dense; self_attn_layer_norm -> attention.LayerNorm; fc1/fc2 -> intermediate.dense/output.dense;
final_layer_norm -> LayerNorm); the per-layer rotary ``inv_freq`` (stored, possibly fp16-rounded) -> the shared
``rotary_embeddings.inv_freq``; ``contact_head.regression`` keeps its name. The LM head is dropped (EsmModel has
none). Files are read with ``torch.load(weights_only=True)``; the only non-tensor class allowed is
``argparse.Namespace`` (fair-esm's ``cfg["model"]``), never a blanket unpickle.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import EsmConfig, EsmModel

from ..errors import CheckpointError
from ..models.esm_gearnet import EsmGearNetConfig, EsmGearNetModel, esm2_config
from .loading import load_converted_weights
from .torchdrug import extract_gearnet_state_dict, infer_gearnet_config

logger = logging.getLogger(__name__)

_PREFIXES = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")
_LAYER_RENAMES = {
    "self_attn.q_proj.": "attention.self.query.",
    "self_attn.k_proj.": "attention.self.key.",
    "self_attn.v_proj.": "attention.self.value.",
    "self_attn.out_proj.": "attention.output.dense.",
    "self_attn_layer_norm.": "attention.LayerNorm.",
    "fc1.": "intermediate.dense.",
    "fc2.": "output.dense.",
    "final_layer_norm.": "LayerNorm.",
}
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)$")
# Attention heads of the released ESM-2 sizes, by width (fair-esm README), for files without cfg or inv_freq.
_HEADS_BY_WIDTH = {320: 20, 480: 20, 640: 20, 1280: 20, 2560: 40, 5120: 40}


def load_fair_esm_checkpoint(path: str | Path) -> dict[str, Any]:
    """Return a fair-esm `.pt` file's contents (``{"model": state dict, "cfg": ...}``), read with weights_only=True.

    ``argparse.Namespace`` (fair-esm's config object) is the one class allow-listed. A sibling
    ``<stem>-contact-regression.pt`` is merged into ``"model"`` when present.
    """
    path = Path(path)
    data = _safe_load(path)
    regression = path.with_name(f"{path.stem}-contact-regression.pt")
    if regression.is_file() and isinstance(data, dict) and isinstance(data.get("model"), Mapping):
        extra = _safe_load(regression)
        data["model"] = {**data["model"], **dict(extra.get("model", extra))}
    return data


def _safe_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointError(
            f"{path}: cannot be read with weights_only=True (only tensors, containers and argparse.Namespace are "
            f"allowed): {error}"
        ) from error


def fair_esm_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Return the fair-esm ESM2 state dict (keys like ``layers.0.fc1.weight``) of a checkpoint or state dict."""
    state_dict = checkpoint.get("model", checkpoint)
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"expected a fair-esm checkpoint or state dict, got {type(state_dict).__name__}")
    tensors = {_PREFIXES.sub("", k): v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    if "embed_tokens.weight" not in tensors:
        raise CheckpointError(f"no fair-esm ESM-2 weights found (keys: {', '.join(list(tensors)[:8])})")
    if any(k.startswith(("embed_positions.", "emb_layer_norm_before.")) for k in tensors):
        raise CheckpointError("this is an ESM-1 / ESM-1b checkpoint (learned positions); only ESM-2 converts")
    return tensors


def infer_esm_config(state_dict: Mapping[str, torch.Tensor], cfg: Any = None) -> EsmConfig:
    """Return the ESM-2 `EsmConfig` of a fair-esm state dict: sizes from shapes, heads from cfg / inv_freq / width."""
    vocab_size, hidden = state_dict["embed_tokens.weight"].shape
    num_layers = 1 + max(int(m.group(1)) for k in state_dict if (m := _LAYER_KEY.match(k)))
    intermediate = state_dict["layers.0.fc1.weight"].shape[0]
    heads = getattr(cfg, "encoder_attention_heads", None)
    token_dropout = getattr(cfg, "token_dropout", True)
    if heads is None and "layers.0.self_attn.rot_emb.inv_freq" in state_dict:
        heads = hidden // (2 * state_dict["layers.0.self_attn.rot_emb.inv_freq"].shape[0])
    if heads is None and "contact_head.regression.weight" in state_dict:
        heads = state_dict["contact_head.regression.weight"].shape[1] // num_layers
    if heads is None:
        heads = _HEADS_BY_WIDTH.get(hidden)
    if heads is None:
        raise CheckpointError(f"cannot tell the number of attention heads of a {hidden}-wide ESM; pass esm_config")
    return esm2_config(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=heads,
        intermediate_size=intermediate, token_dropout=bool(token_dropout),
    )  # fmt: skip


def map_fair_esm_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return a fair-esm ESM2 state dict renamed to transformers `EsmModel` keys (LM head dropped)."""
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("lm_head."):
            continue
        if key == "embed_tokens.weight":
            mapped["embeddings.word_embeddings.weight"] = value
        elif key.startswith("emb_layer_norm_after."):
            mapped["encoder." + key] = value
        elif key.startswith("contact_head."):
            mapped[key] = value
        elif match := _LAYER_KEY.match(key):
            layer, rest = match.groups()
            if rest == "self_attn.rot_emb.inv_freq":
                if layer == "0":  # one shared buffer in transformers; every fair-esm layer holds the same values
                    mapped["rotary_embeddings.inv_freq"] = value
                continue
            for old, new in _LAYER_RENAMES.items():
                if rest.startswith(old):
                    mapped[f"encoder.layer.{layer}.{new}{rest[len(old) :]}"] = value
                    break
            else:
                mapped[key] = value  # reported as unexpected below
        else:
            mapped[key] = value
    return mapped


def _load_esm_weights(model: EsmModel, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load renamed fair-esm weights into `model`; a missing contact head (separate file) is allowed."""
    optional = {"contact_head.regression.weight", "contact_head.regression.bias", "rotary_embeddings.inv_freq"}
    missing = load_converted_weights(
        model, map_fair_esm_keys(state_dict), "ESM weights do not fit the architecture", optional
    )
    if missing:
        logger.warning("not in the checkpoint, left at their initial values: %s", ", ".join(missing))


def convert_fair_esm(
    path_or_state_dict: str | Path | Mapping[str, Any], esm_config: EsmConfig | None = None
) -> EsmModel:
    """Return a transformers `EsmModel` (no pooling layer) holding a fair-esm ESM-2 checkpoint's weights.

    Args:
        path_or_state_dict: a fair-esm `.pt` file (e.g. ``esm2_t33_650M_UR50D.pt``), its loaded contents
            (``{"model": ..., "cfg": ...}``) or a bare ``ESM2.state_dict()``.
        esm_config: the architecture; inferred from the tensors (and the file's cfg) when omitted.
    """
    if isinstance(path_or_state_dict, (str, Path)):
        checkpoint = load_fair_esm_checkpoint(path_or_state_dict)
    else:
        checkpoint = path_or_state_dict
    state_dict = fair_esm_state_dict(checkpoint)
    cfg = checkpoint.get("cfg", {}).get("model") if isinstance(checkpoint.get("cfg"), Mapping) else None
    config = esm_config if esm_config is not None else infer_esm_config(state_dict, cfg)
    model = EsmModel(config, add_pooling_layer=False)
    _load_esm_weights(model, state_dict)
    return model.eval()


def split_esm_gearnet_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Return (fair-esm ESM2 keys, GearNet keys) of a FusionNetwork state dict (any task prefix like ``model.``).

    FusionNetwork keys: ``sequence_model.model.*`` (fair-esm), ``sequence_model.mapping`` (a TorchDrug buffer,
    dropped) and ``structure_model.*`` (GearNet).
    """
    anchor_key = "sequence_model.model.embed_tokens.weight"
    anchor = next((k for k in state_dict if k.endswith(anchor_key)), None)
    if anchor is None:
        raise CheckpointError(f"no ESM-GearNet FusionNetwork found (expected a key '{anchor_key}')")
    prefix = anchor[: -len(anchor_key)]
    esm_prefix, structure_prefix = f"{prefix}sequence_model.model.", f"{prefix}structure_model."
    esm = {k[len(esm_prefix) :]: v for k, v in state_dict.items() if k.startswith(esm_prefix)}
    structure = {k[len(structure_prefix) :]: v for k, v in state_dict.items() if k.startswith(structure_prefix)}
    other = [k for k in state_dict if not k.startswith((esm_prefix, structure_prefix))]
    if other:
        logger.warning("ignored %d keys outside the FusionNetwork (e.g. %s)", len(other), ", ".join(other[:4]))
    return esm, extract_gearnet_state_dict(structure)


def convert_esm_gearnet_state_dict(
    state_dict: Mapping[str, torch.Tensor], esm_config: EsmConfig | None = None, **config_kwargs
) -> EsmGearNetModel:
    """Return an `EsmGearNetModel` holding an official ESM-GearNet (FusionNetwork, series) state dict.

    ESM sizes are read off the shapes (or `esm_config`), GearNet's with `infer_gearnet_config`; `config_kwargs`
    go to `EsmGearNetConfig` (e.g. ``freeze_sequence_model=False``).
    """
    esm_state, gearnet_state = split_esm_gearnet_state_dict(state_dict)
    esm_state = fair_esm_state_dict(esm_state)
    esm_config = esm_config if esm_config is not None else infer_esm_config(esm_state)
    gearnet_config = infer_gearnet_config(gearnet_state, level="residue", readout="sum")
    if gearnet_config.edge_message_passing:
        raise CheckpointError("the structure model has edge message passing; ESM-GearNet's GearNet has none")
    if gearnet_config.input_dim != esm_config.hidden_size:
        raise CheckpointError(
            f"GearNet input width {gearnet_config.input_dim} != ESM width {esm_config.hidden_size}: not series fusion"
        )
    config = EsmGearNetConfig(esm_config=esm_config, gearnet_config=gearnet_config, **config_kwargs)
    model = EsmGearNetModel(config)
    _load_esm_weights(model.esm, esm_state)
    expected = model.gearnet.state_dict()
    if set(expected) != set(gearnet_state):
        raise CheckpointError(f"GearNet keys do not match: {sorted(set(expected) ^ set(gearnet_state))[:5]}")
    model.gearnet.load_state_dict({k: v.to(expected[k].dtype) for k, v in gearnet_state.items()}, strict=True)
    return model.eval()
