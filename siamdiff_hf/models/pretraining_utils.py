"""What every pre-training objective shares: the config that nests an encoder, the base model, the MLP head, draws.

An objective is an encoder (any registered one, built from the nested ``encoder_config``) plus small heads; one
`forward` is one training step on a packed batch (the processor's tensors) and returns a `ModelOutput` whose
``loss`` comes first and whose other scalar fields are the step's metrics. Every random choice of a step comes
from the ``generator`` passed to `forward` (or can be passed in explicitly), never from coordinates, so a step is
reproducible and its loss invariant to rotating the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig
from transformers.utils import ModelOutput, can_return_tuple

from ..graph import PackedResidues, ProteinGraph
from .gearnet import GearNetConfig
from .modeling_utils import ProteinPreTrainedModel

LEVELS = ("residue", "atom")


def resolve_encoder_config(encoder_config: PretrainedConfig | dict | None) -> PretrainedConfig:
    """Return an encoder config from a config, a dict with its ``model_type``, or None (residue GearNet-Edge)."""
    if encoder_config is None:
        return GearNetConfig()
    if isinstance(encoder_config, dict):
        settings = dict(encoder_config)
        if "model_type" not in settings:
            raise ValueError("encoder_config as a dict needs its 'model_type' (e.g. 'gearnet')")
        return AutoConfig.for_model(settings.pop("model_type"), **settings)
    return encoder_config


class PreTrainingConfig(PretrainedConfig):
    """Base of the objectives' configs: a nested ``encoder_config`` whose ``level`` is the objective's level.

    Args:
        encoder_config (`PretrainedConfig` or `dict`, *optional*): any registered encoder's configuration (a dict
            needs its `model_type`); defaults to the residue GearNet-Edge.
        level (`str`, *optional*): ``level`` has one source of truth, the encoder config; this argument (accepted
            so that older saved configs and YAML files that name it keep working) must agree with it.
    """

    sub_configs = {"encoder_config": AutoConfig}

    def __init__(self, encoder_config: PretrainedConfig | dict | None = None, level: str | None = None, **kwargs):
        self.encoder_config = resolve_encoder_config(encoder_config)
        encoder_level = getattr(self.encoder_config, "level", "residue")
        if encoder_level not in LEVELS:
            raise ValueError(f"the encoder's level must be one of {LEVELS}, got {encoder_level!r}")
        if level is not None and level != encoder_level:
            raise ValueError(
                f"level={level!r} disagrees with the encoder config's level {encoder_level!r}: set the level on the "
                "encoder (model.encoder.level)"
            )
        super().__init__(**kwargs)

    @property
    def level(self) -> str:
        """``"residue"`` or ``"atom"``: the encoder config's level."""
        return getattr(self.encoder_config, "level", "residue")

    @level.setter
    def level(self, value: str) -> None:
        if value != self.level:
            raise ValueError(f"level is the encoder config's ({self.level!r}); cannot set {value!r} here")


class MLP(nn.Module):
    """TorchDrug 0.2.1 `layers.MLP` without options: Linear layers with ReLU between them, none after the last."""

    def __init__(self, input_dim: int, hidden_dims: list[int]):
        super().__init__()
        dims = [input_dim, *hidden_dims]
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(dims) - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def head(input_dim: int, width: int, num_layers: int, output_dim: int) -> MLP:
    """Return the TorchDrug task head ``MLP(input_dim, [width] * (num_layers - 1) + [output_dim])``."""
    return MLP(input_dim, [width] * (num_layers - 1) + [output_dim])


@dataclass
class ProteinBatch(PackedResidues):
    """The processor's tensors of one packed batch (`PackedResidues`, with its defaults), the encoder's extra
    inputs, and how to build an encoder graph from them."""

    extra: dict[str, Any] = field(default_factory=dict)  # encoder-specific inputs (e.g. ESM token ids)

    def graph(
        self,
        encoder: nn.Module,
        atom_positions: torch.Tensor | None = None,
        masked_residues: torch.Tensor | None = None,
    ) -> ProteinGraph:
        """Return ``encoder.build_graph`` of the batch, optionally over other coordinates or with other masked
        residues than the batch's own."""
        positions = self.atom_positions if atom_positions is None else atom_positions
        masked = self.masked_residues if masked_residues is None else masked_residues
        return encoder.build_graph(
            self.residue_type, positions, self.atom_mask, self.batch, self.residue_index, self.chain_index,
            masked_residues=masked, hidden_residue_types=self.hidden_residue_types, **self.extra,
        )  # fmt: skip


class ObjectiveForPreTraining(ProteinPreTrainedModel):
    """Base of the pre-training objectives: `encoder` (from the config) plus the heads `build_heads` makes.

    Subclasses implement `build_heads(dim)` and `step(encoder, inputs, generator, **draws)`; `forward` parses the
    processor's tensors, and `step` takes the encoder as an argument so that objectives can share one encoder
    (`CombinedObjectivesForPreTraining`). ``with_encoder=False`` builds the heads alone.
    """

    base_model_prefix = "encoder"
    draw_names: tuple[str, ...] = ()  # forward keyword arguments that replace the step's random draws

    def __init__(self, config: PreTrainingConfig, with_encoder: bool = True):
        super().__init__(config)
        if with_encoder:
            self.encoder = AutoModel.from_config(config.encoder_config)
        self.build_heads(config.encoder_config.output_dim)
        self.post_init()

    def build_heads(self, dim: int) -> None:
        """Create the objective's heads for encoder outputs of width `dim`."""
        raise NotImplementedError

    def step(self, encoder: nn.Module, inputs: ProteinBatch, generator: torch.Generator | None, **draws) -> ModelOutput:
        """Return the output of one training step of the objective."""
        raise NotImplementedError

    @can_return_tuple
    def forward(
        self,
        residue_type: torch.Tensor,
        atom_positions: torch.Tensor,
        atom_mask: torch.Tensor,
        batch: torch.Tensor,
        residue_index: torch.Tensor | None = None,
        chain_index: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **kwargs,
    ) -> ModelOutput:
        """Run one pre-training step on a packed batch (the processor's outputs) and return its loss and metrics.

        Args:
            residue_type, atom_positions, atom_mask, batch, residue_index, chain_index: as for the encoder.
            generator: a `torch.Generator` that makes the step's random draws reproducible.
            kwargs: the objective's explicit draws (its `draw_names`, see `step`), `return_dict`, and extra
                encoder inputs (e.g. ESM token ids) passed to `build_graph`.
        """
        draws = {name: kwargs.pop(name) for name in self.draw_names if name in kwargs}
        inputs = ProteinBatch(residue_type, atom_positions, atom_mask, batch, residue_index, chain_index, extra=kwargs)
        return self.step(self.encoder, inputs, generator, **draws)


# --- draws --------------------------------------------------------------------------------------------------------
def uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Return float32 U[0, 1) draws, made on the generator's device (a CPU generator cannot fill CUDA) then moved."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source, dtype=torch.float32).to(device)


def normal(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Return standard-normal draws in `like`'s dtype and device (drawn in float32 on the generator's device)."""
    source = generator.device if generator is not None else like.device
    draws = torch.randn(shape, generator=generator, device=source, dtype=torch.float32)
    return draws.to(device=like.device, dtype=like.dtype)


def sample_levels(
    num_graphs: int, num_levels: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Return (num_graphs,) long noise levels drawn uniformly from ``[0, num_levels)``, one per protein."""
    source = generator.device if generator is not None else device
    return torch.randint(0, num_levels, (num_graphs,), generator=generator, device=source).to(device)


def sample_in_groups(
    sizes: torch.Tensor, counts: torch.Tensor | int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (M,) packed indices drawn uniformly **with replacement** within groups, and (M,) their group.

    Group ``g`` holds the items ``offset_g .. offset_g + sizes[g] - 1`` (groups stored one after the other) and gets
    ``counts[g]`` draws (an int: the same for every group); empty groups get none. This is TorchDrug 0.2.1
    `layers.functional.variadic_sample` (``floor(u * size) + offset``) with per-group counts.
    """
    sizes = sizes.long()
    counts = torch.full_like(sizes, counts) if isinstance(counts, int) else counts.long()
    counts = torch.where(sizes > 0, counts, torch.zeros_like(counts))
    offsets = torch.cumsum(sizes, 0) - sizes
    owner = torch.repeat_interleave(torch.arange(sizes.shape[0], device=sizes.device), counts)
    u = uniform((owner.numel(),), generator, sizes.device)
    local = torch.minimum(torch.floor(u * sizes[owner].float()).long(), sizes[owner] - 1)
    return local + offsets[owner], owner


def count_draws(sizes: torch.Tensor, rate: float) -> torch.Tensor:
    """Return ``max(1, floor(size * rate))`` per group (0 for empty groups), as TorchDrug 0.2.1 counts its masks.

    A relative ``1e-9`` is added before the floor so that exact products (``20 * 0.15``) are not rounded down.
    """
    count = torch.floor(sizes.double() * rate * (1.0 + 1e-9)).long().clamp(min=1)
    return torch.where(sizes > 0, count, torch.zeros_like(count))


def mean_per_graph(
    values: torch.Tensor, graph_index: torch.Tensor, num_graphs: int, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Return the mean over graphs of the (weighted) mean of `values` within each graph (empty graphs skipped)."""
    weight = torch.ones_like(values) if weight is None else weight.to(values.dtype)
    total = values.new_zeros(num_graphs).index_add_(0, graph_index, values * weight)
    count = values.new_zeros(num_graphs).index_add_(0, graph_index, weight)
    present = count > 0
    return (total[present] / count[present]).mean() if present.any() else values.new_zeros(())


def masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Return the mean of `values` where `keep` (0 when nothing is kept)."""
    keep = keep.to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp(min=1)
