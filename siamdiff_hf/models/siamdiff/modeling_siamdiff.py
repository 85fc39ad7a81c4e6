"""SiamDiff / DiffPreT pre-training (Zhang et al., NeurIPS 2023), encoder-agnostic.

One forward is one step of the official `SiamDiff.predict_and_target` (reference siamdiff_torchdrug §2.3):
siamese conformer, shared noise level and masked residues, clean-structure graphs over noisy coordinates,
cross-trajectory structure and sequence denoising.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function
from transformers import AutoModel
from transformers.utils import ModelOutput

from ...diffusion import MaskRateSchedule, StructureNoiseSchedule
from ...graph import ProteinGraph, scatter_rows
from ...protein.conformer import gaussian_conformer, torsion_conformer
from ...protein.constants import NUM_RESIDUE_FEATURES, NUM_RESIDUE_TYPES
from ..modeling_utils import ProteinPreTrainedModel
from .configuration_siamdiff import SiamDiffConfig


@dataclass
class SiamDiffPreTrainingOutput(ModelOutput):
    """Output of one SiamDiff step.

    Args:
        loss: gamma (Ls1 + Ls2) + (1 - gamma)(Lq1 + Lq2), the quantity to minimise.
        structure_loss: Ls1 + Ls2 (unweighted), the official "structure denoising loss".
        sequence_loss: Lq1 + Lq2 (unweighted), the official "sequence denoising loss".
        sequence_accuracy: mean argmax accuracy of the masked-residue predictions over both trajectories.
        structure_prediction: (n, 3) predicted per-node noise vectors P(s^) of trajectory 1 (equivariant).
        structure_target: (n, 3) their targets P(s).
        timesteps: (B,) noise level of each protein.
        masked_residues: (M,) packed indices of the masked residue draws (duplicates possible, as official).
    """

    loss: torch.Tensor | None = None
    structure_loss: torch.Tensor | None = None
    sequence_loss: torch.Tensor | None = None
    sequence_accuracy: torch.Tensor | None = None
    structure_prediction: torch.Tensor | None = None
    structure_target: torch.Tensor | None = None
    timesteps: torch.Tensor | None = None
    masked_residues: torch.Tensor | None = None


class MLP(nn.Module):
    """TorchDrug's `layers.MLP` without options: Linear layers with ReLU between them, none after the last."""

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


@dataclass
class _Trajectory:
    """One diffusion trajectory: its clean graph, noisy graph, per-edge targets and encoder output."""

    noisy: ProteinGraph
    target: torch.Tensor
    hidden: torch.Tensor | None = None


class SiamDiffPreTrainedModel(ProteinPreTrainedModel):
    config_class = SiamDiffConfig
    base_model_prefix = "encoder"


class SiamDiffForPreTraining(SiamDiffPreTrainedModel):
    """An encoder (any registered one) with the SiamDiff heads; `forward` returns the pre-training losses.

    Heads (D = encoder output width, L = `num_mlp_layer`): `struct_mlp` 2D -> D... -> 1, `dist_mlp`
    1 -> D... -> D, `seq_mlp` D -> D... -> 20. `model.encoder.save_pretrained(dir)` exports the encoder alone.
    A stage-1 model starts stage 2 with `SiamDiffForPreTraining.from_pretrained(dir, **STAGES[2])`: heads and
    encoder carry over, the schedule (held in the config, not in weights) is replaced.
    """

    def __init__(self, config: SiamDiffConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder_config)
        dim = self.encoder.output_dim
        depth = config.num_mlp_layer - 1
        self.struct_mlp = MLP(2 * dim, [dim] * depth + [1])
        self.dist_mlp = MLP(1, [dim] * depth + [dim])
        self.seq_mlp = MLP(dim, [dim] * depth + [NUM_RESIDUE_TYPES])
        self.post_init()

    @property
    def noise_schedule(self) -> StructureNoiseSchedule:
        c = self.config
        return StructureNoiseSchedule(c.beta_start, c.beta_end, c.num_timesteps)

    @property
    def mask_schedule(self) -> MaskRateSchedule:
        c = self.config
        return MaskRateSchedule(c.num_timesteps, c.min_mask_rate, c.max_mask_rate)

    def conformer(
        self, residue_type: torch.Tensor, atom_positions: torch.Tensor, atom_mask: torch.Tensor, batch: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Return (L, 37, 3) siamese conformer coordinates (Gaussian at residue level, torsions at atom level)."""
        c = self.config
        if c.level == "residue":
            return gaussian_conformer(atom_positions, atom_mask, std=c.conformer_std, generator=generator)
        positions, _ = torsion_conformer(
            residue_type, atom_positions, atom_mask, batch, std=c.conformer_std, skip_proline=c.skip_proline,
            resample_clashes=c.resample_clashes, clash_distance=c.clash_distance, generator=generator,
        )  # fmt: skip
        return positions

    def forward(
        self,
        residue_type: torch.Tensor,
        atom_positions: torch.Tensor,
        atom_mask: torch.Tensor,
        batch: torch.Tensor,
        residue_index: torch.Tensor | None = None,
        chain_index: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        timesteps: torch.Tensor | None = None,
        conformer_positions: torch.Tensor | None = None,
        structure_noise: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_dict: bool | None = None,
        **encoder_inputs,
    ) -> SiamDiffPreTrainingOutput | tuple:
        """Run one SiamDiff step on a packed batch (the processor's outputs) and return its losses.

        Args:
            residue_type, atom_positions, atom_mask, batch, residue_index, chain_index: as for the encoder.
            generator: a `torch.Generator` that makes the step reproducible (noise levels, masks, noise).
            timesteps: (B,) fixed noise levels instead of sampled ones.
            conformer_positions: (L, 37, 3) the second trajectory's clean coordinates instead of a sampled
                conformer.
            structure_noise: ((n, 3), (n, 3)) standard-normal coordinate noise of the two trajectories' nodes
                instead of sampled noise (rotate it with the input to check equivariance).
            encoder_inputs: extra encoder inputs (e.g. ESM token ids), passed to `build_graph`.
        """
        c = self.config
        num_graphs = int(batch.max()) + 1
        device = atom_positions.device
        if timesteps is None:
            timesteps = self.noise_schedule.sample_timesteps(num_graphs, generator=generator, device=device)
        masked_index = batch.new_zeros(0)
        masked = torch.zeros_like(batch, dtype=torch.bool)
        if c.gamma < 1:
            masked_index = self.mask_schedule.sample_masked_residues(batch, timesteps, generator=generator)
            masked[masked_index] = True
        positions = [atom_positions]
        if c.use_mutual_information:
            if conformer_positions is None:
                with record_function("siamdiff.conformer"):
                    conformer_positions = self.conformer(residue_type, atom_positions, atom_mask, batch, generator)
            positions.append(conformer_positions)

        trajectories = []
        for k, trajectory_positions in enumerate(positions):
            with record_function("siamdiff.graph_construction"):
                graph = self.encoder.build_graph(
                    residue_type, trajectory_positions, atom_mask, batch, residue_index, chain_index,
                    masked_residues=masked, **encoder_inputs,
                )  # fmt: skip
            if c.level == "atom" and c.official_atom_masking:
                graph.node_features = graph.node_features.clone()
                graph.node_features[:, -NUM_RESIDUE_FEATURES:] = 0  # the official bug: no atom keeps its type
            noise = structure_noise[k] if structure_noise is not None else None
            trajectories.append(self._add_structure_noise(graph, timesteps, noise, generator))
        for trajectory in trajectories:
            with record_function("siamdiff.encoder"):
                trajectory.hidden = self.encoder(graph=trajectory.noisy).node_embeddings
        if len(trajectories) == 1:  # DiffPreT: the same trajectory plays both roles
            trajectories.append(trajectories[0])

        structure_losses, sequence_losses, accuracies, predictions = [], [], [], []
        for own, other in (trajectories, trajectories[::-1]):
            with record_function("siamdiff.heads"):
                structure_loss, prediction, target = self._structure_loss(own, other.hidden, timesteps)
                sequence_loss, accuracy = self._sequence_loss(
                    own.noisy, other.hidden, residue_type, masked_index, batch
                )
            structure_losses.append(structure_loss)
            sequence_losses.append(sequence_loss)
            accuracies.append(accuracy)
            predictions.append((prediction, target))
        structure_loss = structure_losses[0] + structure_losses[1]
        sequence_loss = sequence_losses[0] + sequence_losses[1]
        loss = c.gamma * structure_loss + (1 - c.gamma) * sequence_loss
        output = SiamDiffPreTrainingOutput(
            loss=loss, structure_loss=structure_loss, sequence_loss=sequence_loss,
            sequence_accuracy=(accuracies[0] + accuracies[1]) / 2, structure_prediction=predictions[0][0],
            structure_target=predictions[0][1], timesteps=timesteps, masked_residues=masked_index,
        )  # fmt: skip
        use_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if use_dict else output.to_tuple()

    def _add_structure_noise(
        self, graph: ProteinGraph, timesteps: torch.Tensor, noise: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> _Trajectory:  # fmt: skip
        """Noise the node coordinates; edges and features stay those of the clean graph (official)."""
        if self.config.gamma == 0:  # no structure diffusion: the encoder sees the clean structure
            return _Trajectory(graph, graph.positions.new_zeros(graph.num_edges))
        if noise is None:
            device = generator.device if generator is not None else graph.positions.device
            noise = torch.randn(graph.positions.shape, generator=generator, device=device).to(graph.positions)
        node_t = timesteps[graph.node_batch]
        noisy = graph.with_positions(self.noise_schedule.add_noise(graph.positions, noise, node_t))
        edge_t = node_t[graph.edge_index[1]]
        target = self.noise_schedule.edge_target(graph.edge_lengths(), noisy.edge_lengths(), edge_t)
        return _Trajectory(noisy, target)

    def _structure_loss(
        self, trajectory: _Trajectory, hidden: torch.Tensor, timesteps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (loss, predicted node vectors, target node vectors) of one trajectory's structure denoising."""
        graph = trajectory.noisy
        if self.config.gamma == 0:
            zero = graph.positions.new_zeros(())
            return (
                zero,
                graph.positions.new_zeros(graph.positions.shape),
                graph.positions.new_zeros(graph.positions.shape),
            )
        source, target_node = graph.edge_index
        noisy_lengths = graph.edge_lengths().unsqueeze(-1)
        pair = hidden[source] * hidden[target_node]
        score = self.edge_scores(pair, noisy_lengths.to(pair.dtype))
        prediction = project_edges_to_nodes(graph, score.float())
        target = project_edges_to_nodes(graph, trajectory.target.float())
        per_node = 0.5 * ((prediction - target) ** 2).sum(-1)
        return _mean_per_graph(per_node, graph.node_batch, graph.num_graphs), prediction, target

    def edge_scores(self, pair: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Return (E,) ``struct_mlp([pair, dist_mlp(lengths)])`` for (E, D) pair features and (E, 1) lengths.

        The same function as the official heads, computed faster: the last linear map of `dist_mlp` and the
        distance half of `struct_mlp`'s first layer have nothing between them, so they are folded into one (D, D)
        matrix per step instead of two (E, D) x (D, D) products per edge (a fifth of the heads' FLOPs).
        """
        dim = pair.shape[-1]
        first, last_dist = self.struct_mlp.layers[0], self.dist_mlp.layers[-1]
        distance = lengths
        for layer in self.dist_mlp.layers[:-1]:
            distance = torch.relu(layer(distance))
        pair_weight, distance_weight = first.weight[:, :dim], first.weight[:, dim:]
        fused_weight = distance_weight @ last_dist.weight
        fused_bias = first.bias + distance_weight @ last_dist.bias
        hidden = F.linear(pair, pair_weight) + F.linear(distance, fused_weight, fused_bias)
        for layer in self.struct_mlp.layers[1:]:
            hidden = layer(torch.relu(hidden))
        return hidden.squeeze(-1)

    def _sequence_loss(
        self, graph: ProteinGraph, hidden: torch.Tensor, residue_type: torch.Tensor, masked_index: torch.Tensor,
        batch: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Return (loss, accuracy) of predicting the true types of the masked residues from `hidden`."""
        if self.config.gamma == 1 or masked_index.numel() == 0:
            zero = hidden.new_zeros((), dtype=torch.float32)
            return zero, zero
        residue_hidden = scatter_rows(hidden, graph.node_residue, graph.num_residues, "mean")
        logits = self.seq_mlp(residue_hidden[masked_index]).float()
        labels = residue_type[masked_index]
        # Unknown residues (id 20) have no class: their draws are left out of the loss (the official code had
        # none, as TorchDrug mapped them to GLY at parsing).
        known = labels < NUM_RESIDUE_TYPES
        cross_entropy = 0.5 * F.cross_entropy(logits, labels.clamp(max=NUM_RESIDUE_TYPES - 1), reduction="none")
        loss = _mean_per_graph(cross_entropy, batch[masked_index], graph.num_graphs, weight=known.float())
        accuracy = ((logits.argmax(-1) == labels) & known).float().sum() / known.sum().clamp(min=1)
        return loss, accuracy


def project_edges_to_nodes(graph: ProteinGraph, edge_values: torch.Tensor) -> torch.Tensor:
    """Return (n, 3) per-node vectors from (E,) per-edge scalars along the noisy edge directions (official P).

    ``P(s)_i = mean_{e: src(e)=i} s_e u_e - mean_{e: dst(e)=i} s_e u_e`` with ``u_e = (x_src - x_dst)/|.|``;
    zero-length edges (sequential self-loops) give u = 0 but count in the means, as in the official code.
    """
    source, target = graph.edge_index
    delta = graph.positions[source] - graph.positions[target]
    direction = delta / (delta.norm(dim=-1, keepdim=True) + 1e-10)
    vectors = edge_values.unsqueeze(-1) * direction.to(edge_values.dtype)
    return scatter_rows(vectors, source, graph.num_nodes, "mean") - scatter_rows(
        vectors, target, graph.num_nodes, "mean"
    )


def _mean_per_graph(
    values: torch.Tensor, graph_index: torch.Tensor, num_graphs: int, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Return the mean over graphs of the (weighted) mean of `values` within each graph (empty graphs skipped)."""
    weight = torch.ones_like(values) if weight is None else weight
    total = values.new_zeros(num_graphs).index_add_(0, graph_index, values * weight)
    count = values.new_zeros(num_graphs).index_add_(0, graph_index, weight)
    present = count > 0
    return (total[present] / count[present]).mean() if present.any() else values.new_zeros(())
