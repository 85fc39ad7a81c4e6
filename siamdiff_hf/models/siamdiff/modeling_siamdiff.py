"""SiamDiff / DiffPreT pre-training (Zhang et al., NeurIPS 2023), encoder-agnostic.

One forward is one step of the official `SiamDiff.predict_and_target` (SiamDiff `siamdiff/task.py`): a siamese
conformer, one noise level and one set of masked residues shared by both trajectories, graphs built on the clean
structures and fed the noisy coordinates, and structure and sequence denoising of each trajectory from the other's
representations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function
from transformers.utils import ModelOutput

from ...diffusion import MaskRateSchedule, StructureNoiseSchedule
from ...graph import ProteinGraph, scatter_rows
from ...protein.constants import NUM_RESIDUE_FEATURES, NUM_RESIDUE_TYPES
from ..pretraining_utils import MLP, ObjectiveForPreTraining, ProteinBatch, head, mean_per_graph, normal
from .configuration_siamdiff import SiamDiffConfig
from .conformer import gaussian_conformer, torsion_conformer


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


@dataclass
class _Trajectory:
    """One diffusion trajectory: its clean graph, noisy graph, per-edge targets and encoder output."""

    noisy: ProteinGraph
    target: torch.Tensor
    hidden: torch.Tensor | None = None


class SiamDiffForPreTraining(ObjectiveForPreTraining):
    """An encoder (any registered one) with the SiamDiff heads; `forward` returns the pre-training losses.

    Heads (D = encoder output width, L = `num_mlp_layer`): `struct_mlp` 2D -> D... -> 1, `dist_mlp`
    1 -> D... -> D, `seq_mlp` D -> D... -> 20. `model.encoder.save_pretrained(dir)` exports the encoder alone.
    A stage-1 model starts stage 2 with `SiamDiffForPreTraining.from_pretrained(dir, **STAGES[2])`: heads and
    encoder carry over, the schedule (held in the config, not in weights) is replaced.

    `forward(residue_type, atom_positions, atom_mask, batch, residue_index=None, chain_index=None, generator=None,
    timesteps=None, conformer_positions=None, structure_noise=None, return_dict=None, **encoder_inputs)`: the
    explicit draws are those of `step`.
    """

    config_class = SiamDiffConfig
    draw_names = ("timesteps", "conformer_positions", "structure_noise")

    def build_heads(self, dim: int) -> None:
        depth = self.config.num_mlp_layer
        self.struct_mlp = head(2 * dim, dim, depth, 1)
        self.dist_mlp = head(1, dim, depth, dim)
        self.seq_mlp = head(dim, dim, depth, NUM_RESIDUE_TYPES)

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

    def sample_timesteps(
        self, num_graphs: int, generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        """Return (num_graphs,) noise levels: uniform over the schedule, or all `fixed_timestep` when that is set."""
        if self.config.fixed_timestep is not None:
            return torch.full((num_graphs,), self.config.fixed_timestep, dtype=torch.long, device=device)
        return self.noise_schedule.sample_timesteps(num_graphs, generator=generator, device=device)

    def step(
        self, encoder: nn.Module, inputs: ProteinBatch, generator: torch.Generator | None = None,
        timesteps: torch.Tensor | None = None, conformer_positions: torch.Tensor | None = None,
        structure_noise: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> SiamDiffPreTrainingOutput:  # fmt: skip
        """Run one SiamDiff step on a packed batch and return its losses.

        Args:
            encoder, inputs: the encoder and the processor's tensors (`forward` passes its own).
            generator: a `torch.Generator` that makes the step reproducible (noise levels, masks, noise).
            timesteps: (B,) fixed noise levels instead of sampled ones.
            conformer_positions: (L, 37, 3) the second trajectory's clean coordinates instead of a sampled
                conformer.
            structure_noise: ((n, 3), (n, 3)) standard-normal coordinate noise of the two trajectories' nodes
                instead of sampled noise (rotate it with the input to check equivariance).
        """
        c = self.config
        batch = inputs.batch
        if timesteps is None:
            timesteps = self.sample_timesteps(inputs.num_graphs, generator, inputs.atom_positions.device)
        masked_index = batch.new_zeros(0)
        masked = torch.zeros_like(batch, dtype=torch.bool)
        if c.sequence_diffusion:
            masked_index = self.mask_schedule.sample_masked_residues(batch, timesteps, generator=generator)
            masked[masked_index] = True
        positions = [inputs.atom_positions]
        if c.use_mutual_information:
            if conformer_positions is None:
                with record_function("siamdiff.conformer"):
                    conformer_positions = self.conformer(
                        inputs.residue_type, inputs.atom_positions, inputs.atom_mask, batch, generator
                    )
            positions.append(conformer_positions)

        trajectories = []
        for k, trajectory_positions in enumerate(positions):
            with record_function("siamdiff.graph_construction"):
                graph = inputs.graph(encoder, trajectory_positions, masked_residues=masked)
            if c.level == "atom" and c.official_atom_masking:
                graph.node_features = graph.node_features.clone()
                graph.node_features[:, -NUM_RESIDUE_FEATURES:] = 0  # the official bug: no atom keeps its type
            noise = structure_noise[k] if structure_noise is not None else None
            trajectories.append(self._add_structure_noise(graph, timesteps, noise, generator))
        for trajectory in trajectories:
            with record_function("siamdiff.encoder"):
                trajectory.hidden = encoder(graph=trajectory.noisy).node_embeddings
        structure_losses, sequence_losses, accuracies, predictions = [], [], [], []
        # Each trajectory is denoised from the other's representations; DiffPreT has one trajectory playing both
        # roles, so its terms (deterministic, the same inputs) are computed once and counted twice.
        for own, other in zip(trajectories, trajectories[::-1]):  # DiffPreT: the one trajectory with itself
            with record_function("siamdiff.heads"):
                structure_loss, prediction, target = self._structure_loss(own, other.hidden, timesteps)
                sequence_loss, accuracy = self._sequence_loss(
                    own.noisy, other.hidden, inputs.residue_type, masked_index, batch
                )
            structure_losses.append(structure_loss)
            sequence_losses.append(sequence_loss)
            accuracies.append(accuracy)
            predictions.append((prediction, target))
        structure_loss = structure_losses[0] + structure_losses[-1]
        sequence_loss = sequence_losses[0] + sequence_losses[-1]
        structure_weight, sequence_weight = c.loss_weights
        return SiamDiffPreTrainingOutput(
            loss=structure_weight * structure_loss + sequence_weight * sequence_loss, structure_loss=structure_loss,
            sequence_loss=sequence_loss, sequence_accuracy=(accuracies[0] + accuracies[-1]) / 2,
            structure_prediction=predictions[0][0], structure_target=predictions[0][1], timesteps=timesteps,
            masked_residues=masked_index,
        )  # fmt: skip

    def _add_structure_noise(
        self, graph: ProteinGraph, timesteps: torch.Tensor, noise: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> _Trajectory:  # fmt: skip
        """Noise the node coordinates; edges and features stay those of the clean graph (official)."""
        if not self.config.structure_diffusion:  # the encoder sees the clean structure
            return _Trajectory(graph, graph.positions.new_zeros(graph.num_edges))
        if noise is None:
            noise = normal(tuple(graph.positions.shape), generator, graph.positions)
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
        if not self.config.structure_diffusion:
            zero = graph.positions.new_zeros(())
            return (
                zero,
                graph.positions.new_zeros(graph.positions.shape),
                graph.positions.new_zeros(graph.positions.shape),
            )
        score = graph_edge_scores(self.struct_mlp, self.dist_mlp, graph, hidden)
        prediction = project_edges_to_nodes(graph, score.float())
        target = project_edges_to_nodes(graph, trajectory.target.float())
        per_node = 0.5 * ((prediction - target) ** 2).sum(-1)
        return mean_per_graph(per_node, graph.node_batch, graph.num_graphs), prediction, target

    def edge_scores(self, pair: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Return (E,) ``struct_mlp([pair, dist_mlp(lengths)])`` for (E, D) pair features and (E, 1) lengths."""
        return edge_scores(self.struct_mlp, self.dist_mlp, pair, lengths)

    def _sequence_loss(
        self, graph: ProteinGraph, hidden: torch.Tensor, residue_type: torch.Tensor, masked_index: torch.Tensor,
        batch: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Return (loss, accuracy) of predicting the true types of the masked residues from `hidden`."""
        if not self.config.sequence_diffusion or masked_index.numel() == 0:
            zero = hidden.new_zeros((), dtype=torch.float32)
            return zero, zero
        residue_hidden = scatter_rows(hidden, graph.node_residue, graph.num_residues, "mean")
        logits = self.seq_mlp(residue_hidden[masked_index]).float()
        labels = residue_type[masked_index]
        # Unknown residues (id 20) have no class: their draws are left out of the loss (the official code had
        # none, as TorchDrug mapped them to GLY at parsing).
        known = labels < NUM_RESIDUE_TYPES
        cross_entropy = 0.5 * F.cross_entropy(logits, labels.clamp(max=NUM_RESIDUE_TYPES - 1), reduction="none")
        loss = mean_per_graph(cross_entropy, batch[masked_index], graph.num_graphs, weight=known.float())
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


def graph_edge_scores(struct_mlp: MLP, dist_mlp: MLP, graph: ProteinGraph, hidden: torch.Tensor) -> torch.Tensor:
    """Return (E,) official edge scores ``struct_mlp([h_u * h_v, dist_mlp(|x_u - x_v|)])`` of `graph`'s edges.

    The score of an edge u -> v is a symmetric function of its two nodes (the product and the length do not
    change with the direction, and the relation does not enter), so the heads run once per node pair
    (`ProteinGraph.node_pairs`) and each edge reads its pair's score: the official per-edge values with 2-2.4x
    fewer head FLOPs (10,709 edges over 4,560 pairs at 4 x 150 residues).
    """
    (first, second), edge_pair = graph.node_pairs()
    pair = hidden[first] * hidden[second]
    lengths = (graph.positions[first] - graph.positions[second]).norm(dim=-1, keepdim=True)
    return edge_scores(struct_mlp, dist_mlp, pair, lengths.to(pair.dtype))[edge_pair]


def edge_scores(struct_mlp: MLP, dist_mlp: MLP, pair: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Return (E,) ``struct_mlp([pair, dist_mlp(lengths)])`` for (E, D) pair features and (E, 1) lengths.

    The same function as the official heads (SiamDiff `siamdiff/task.py`, `struct_predict`), computed faster: the
    last linear map of `dist_mlp` and the distance half of `struct_mlp`'s first layer have nothing between them,
    so they are folded into one (D, D) matrix per step instead of two (E, D) x (D, D) products per edge (a fifth
    of the heads' FLOPs).
    """
    dim = pair.shape[-1]
    first, last_dist = struct_mlp.layers[0], dist_mlp.layers[-1]
    distance = lengths
    for layer in dist_mlp.layers[:-1]:
        distance = torch.relu(layer(distance))
    pair_weight, distance_weight = first.weight[:, :dim], first.weight[:, dim:]
    fused_weight = distance_weight @ last_dist.weight
    fused_bias = first.bias + distance_weight @ last_dist.bias
    hidden = F.linear(pair, pair_weight) + F.linear(distance, fused_weight, fused_bias)
    for layer in struct_mlp.layers[1:]:
        hidden = layer(torch.relu(hidden))
    return hidden.squeeze(-1)
