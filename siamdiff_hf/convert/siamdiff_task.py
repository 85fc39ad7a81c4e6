"""Official SiamDiff pre-training task checkpoints (encoder and heads) -> `SiamDiffForPreTraining`.

The official stage-1 run saves the whole task (SiamDiff `siamdiff/task.py`, class `SiamDiff`): ``model.*`` (the
encoder), the heads ``struct_mlp.*`` (2D -> D... -> 1), ``dist_mlp.*`` (1 -> D... -> D) and ``seq_mlp.*``
(D -> D... -> 20), each a TorchDrug 0.2.1 ``layers.MLP`` whose ``layers.{i}.weight/bias`` are the names of the
package's heads, and the buffer ``alphas`` (cumulative products of the structure-noise schedule). Stage 2 of the
official recipe starts from stage 1's encoder *and* heads, so converting the whole task lets a user continue it
(``model.init_from``). The heads map 1:1 and keep the official layout; `SiamDiffForPreTraining.edge_scores` folds
`dist_mlp`'s last layer into `struct_mlp` only when it computes. ``alphas`` is not kept (the schedule lives in
`SiamDiffConfig`): it is read back into ``beta_start``/``beta_end``/``num_timesteps`` and checked.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping

import torch
from transformers import PreTrainedModel

from ..diffusion import StructureNoiseSchedule
from ..errors import CheckpointError
from ..models import STAGES, SiamDiffConfig, SiamDiffForPreTraining
from .loading import load_converted_weights

logger = logging.getLogger(__name__)

HEADS = ("struct_mlp", "dist_mlp", "seq_mlp")
_HEAD_LAYER = re.compile(r"^(struct_mlp|dist_mlp|seq_mlp)\.layers\.(\d+)\.(weight|bias)$")


def is_siamdiff_task(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict is a whole SiamDiff task (it holds all three heads)."""
    return all(any(key.startswith(f"{head}.") for key in state_dict) for head in HEADS)


def schedule_from_alphas(alphas: torch.Tensor) -> dict[str, float | int]:
    """Return the `SiamDiffConfig` schedule fields (and ``gamma`` of a paper stage) whose ``alphas`` these are.

    The official schedule is ``beta_t = sigmoid(linspace(-6, 6, T))_t (beta_end - beta_start) + beta_start`` and
    ``alphas = cumprod(1 - beta)`` (SiamDiff `siamdiff/task.py`). A paper stage (`STAGES`) that gives the same
    ``alphas`` is returned exactly, with its ``gamma``; otherwise the two betas are solved from the first and last
    step. Raises `CheckpointError` when no schedule of that form reproduces ``alphas``.
    """
    alphas = alphas.detach().double().flatten()
    steps = alphas.numel()
    for stage in STAGES.values():
        if stage["num_timesteps"] == steps and _fits(alphas, stage["beta_start"], stage["beta_end"]):
            return dict(stage)
    betas = 1 - alphas / torch.cat([alphas.new_ones(1), alphas[:-1]])
    low, high = 1 / (1 + math.exp(6)), 1 / (1 + math.exp(-6))  # sigmoid(-6), sigmoid(6)
    if steps == 1:
        raise CheckpointError("a one-step noise schedule does not determine beta_start and beta_end")
    span = float(betas[-1] - betas[0]) / (high - low)
    beta_start = float(betas[0]) - low * span
    schedule = {"beta_start": float(f"{beta_start:.6g}"), "beta_end": float(f"{beta_start + span:.6g}"),
                "num_timesteps": steps}  # fmt: skip
    if not _fits(alphas, schedule["beta_start"], schedule["beta_end"]):
        raise CheckpointError(f"'alphas' ({steps} steps) is not a sigmoid beta schedule of SiamDiff's form")
    return schedule


def _fits(alphas: torch.Tensor, beta_start: float, beta_end: float) -> bool:
    expected = StructureNoiseSchedule(beta_start, beta_end, alphas.numel()).alphas_cumprod.double()
    return torch.allclose(alphas, expected, rtol=1e-4, atol=1e-7)


def _head_depth(heads: Mapping[str, torch.Tensor]) -> int:
    depths = {}
    for key in heads:
        match = _HEAD_LAYER.match(key)
        if match is None:
            raise CheckpointError(f"unexpected head key '{key}' (expected e.g. 'struct_mlp.layers.0.weight')")
        depths[match.group(1)] = max(depths.get(match.group(1), 0), int(match.group(2)) + 1)
    if len(set(depths.values())) != 1:
        raise CheckpointError(f"the heads have different depths {depths}; SiamDiff's heads share num_mlp_layer")
    return depths["struct_mlp"]


def convert_siamdiff_task_state_dict(
    state_dict: Mapping[str, torch.Tensor], encoder: PreTrainedModel, **config_overrides
) -> SiamDiffForPreTraining:
    """Return a `SiamDiffForPreTraining` (eval mode) with ``encoder`` and the task's heads (strict shapes).

    ``encoder`` is the task's ``model.*`` already converted (`convert_gearnet_state_dict`,
    `convert_gvp_state_dict`, ...). ``config_overrides`` go to `SiamDiffConfig` (e.g. ``use_mutual_information``,
    which the weights do not record; ``official_atom_masking=True`` for the published atom-level files).
    """
    heads = {k: v for k, v in state_dict.items() if k.startswith(tuple(f"{h}." for h in HEADS))}
    if not is_siamdiff_task(heads):
        raise CheckpointError(f"not a whole SiamDiff task: it lacks the heads {', '.join(HEADS)}")
    settings = schedule_from_alphas(state_dict["alphas"]) if "alphas" in state_dict else {}
    config = SiamDiffConfig(
        encoder_config=encoder.config, num_mlp_layer=_head_depth(heads), **{**settings, **config_overrides}
    )
    model = SiamDiffForPreTraining(config)
    weights = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()}, **heads}
    load_converted_weights(model, weights, f"the task's heads do not fit a {encoder.output_dim}-wide encoder")
    ignored = sorted(set(state_dict) - set(heads) - {"alphas"} - {k for k in state_dict if k.startswith("model.")})
    if ignored:
        logger.warning("ignored %d task keys outside model.* and the heads (e.g. %s)", len(ignored), ignored[0])
    return model.eval()
