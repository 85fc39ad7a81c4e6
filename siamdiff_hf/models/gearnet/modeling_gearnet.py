"""GearNet-Edge (Zhang et al. 2023) as TorchDrug v0.2.1 defines it, with sparse relational aggregation.

Reads top-down: relational conv, model. Module names match TorchDrug's so official state dicts load 1:1
(`layers.{l}.{batch_norm,self_loop,linear}`, `edge_layers.{l}.*`, `batch_norms.{l}`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from ...graph import (
    ProteinGraph,
    RelationalAdjacency,
    atom_graph,
    gearnet_edge_features,
    line_graph,
    relational_adjacency,
    relational_aggregate,
    relational_linear,
    residue_graph,
)
from ...graph.nodes import Nodes, PackedResidues, edge_residue_type
from ..modeling_utils import ProteinPreTrainedModel
from ..outputs import ProteinEncoderOutput
from .configuration_gearnet import GearNetConfig


class RelationalGraphConv(nn.Module):
    """TorchDrug's `GeometricRelationalGraphConv`: ``act(BN(linear(M) + self_loop(x)))``.

    ``M[v] = [sum_{u->v, r=0} x_u | ... | sum_{u->v, r=R-1} x_u]`` is an unnormalised relational sum, computed as
    one sparse-dense product; ``linear`` then mixes all relations in a single dense matmul.
    """

    def __init__(
        self, in_dim: int, out_dim: int, num_relation: int, batch_norm: bool, activation: str, recompute: bool = False
    ):
        super().__init__()
        self.num_relation = num_relation
        self.recompute = recompute
        # Registration order follows TorchDrug so state dicts list keys in the same order.
        self.batch_norm = nn.BatchNorm1d(out_dim) if batch_norm else None
        self.self_loop = nn.Linear(in_dim, out_dim)
        self.linear = nn.Linear(num_relation * in_dim, out_dim)
        self.activation = ACT2FN[activation] if activation else None

    def forward(self, x: torch.Tensor, adjacency: RelationalAdjacency) -> torch.Tensor:
        """Map (n, in_dim) node features over a (n*R, n) relational adjacency to (n, out_dim)."""
        hidden = self.relational_linear(adjacency, x) + self.self_loop(x)
        if self.batch_norm is not None:
            hidden = self.batch_norm(hidden)
        return self.activation(hidden) if self.activation is not None else hidden

    def relational_linear(self, adjacency: RelationalAdjacency, x: torch.Tensor) -> torch.Tensor:
        """Return ``linear(M)`` for the relational sums M of `x` (with `recompute`, M is not kept for backward)."""
        if self.recompute:
            return relational_linear(adjacency, x, self.linear.weight, self.linear.bias, self.num_relation)
        return self.linear(relational_aggregate(adjacency, x, self.num_relation))


class GearNetPreTrainedModel(ProteinPreTrainedModel):
    """Weight initialisation and loading glue shared by GearNet models."""

    config_class = GearNetConfig
    base_model_prefix = "gearnet"
    _no_split_modules = ["RelationalGraphConv"]


class GearNetModel(GearNetPreTrainedModel):
    """GearNet-Edge encoder: packed protein batch in, node / residue / protein embeddings out.

    The graph is built on the inputs' device from coordinates (`build_graph`), or passed in ready-made: either as
    `edge_index`/`edge_type`/`edge_attr` over the model's nodes, or as a `ProteinGraph` (`graph=`), which is how
    SiamDiff feeds a clean-structure graph over noisy coordinates (`ProteinGraph.with_positions`).
    """

    def __init__(self, config: GearNetConfig):
        super().__init__(config)
        dims = [config.input_dim, *config.hidden_dims]
        conv = dict(batch_norm=config.batch_norm, activation=config.activation, recompute=config.recompute_aggregation)
        self.layers = nn.ModuleList(
            RelationalGraphConv(dims[i], dims[i + 1], config.num_relation, **conv) for i in range(len(dims) - 1)
        )
        if config.edge_message_passing:
            # The edge stream runs one width behind the node stream (TorchDrug: edge_dims = [edge_in] + dims[:-1]).
            edge_dims = [config.edge_input_dim, *dims[:-1]]
            self.edge_layers = nn.ModuleList(
                RelationalGraphConv(edge_dims[i], edge_dims[i + 1], config.num_angle_bin, **conv)
                for i in range(len(edge_dims) - 1)
            )
        if config.batch_norm:
            self.batch_norms = nn.ModuleList(nn.BatchNorm1d(d) for d in dims[1:])
        self.post_init()

    def edges(
        self,
        residues: PackedResidues,
        nodes: Nodes,
        edge_index: torch.Tensor | None = None,
        edge_type: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
    ) -> ProteinGraph:
        """Return the relational graph over `nodes` (see `residue_graph` / `atom_graph`) with GearNet edge features.

        A graph of your own: `edge_index`, `edge_type` over the model's nodes (residues, or atoms in
        ``atom_mask.nonzero()`` order); edge features are computed when `edge_attr` is omitted.
        """
        config = self.config
        node_index = residues.residue_index[nodes.residue]
        if edge_index is None and config.level == "residue":
            edge_index, edge_type, _ = residue_graph(
                nodes.positions, nodes.batch, residues.chain_index, node_index,
                sequential_max_distance=config.sequential_max_distance, radius=config.radius, knn_k=config.knn_k,
                min_distance=config.min_distance, max_num_neighbors=config.max_num_neighbors,
            )  # fmt: skip
        elif edge_index is None:
            edge_index, edge_type, _ = atom_graph(
                nodes.positions, nodes.batch, node_index, radius=config.radius, min_distance=config.min_distance,
                max_num_neighbors=config.max_num_neighbors,
            )  # fmt: skip
        graph = self.packed_graph(residues, nodes, edge_index, edge_type, edge_attr, config.num_relation)
        if edge_attr is None and config.edge_message_passing:
            types = edge_residue_type(residues.residue_type, residues.type_hidden)[nodes.residue]
            graph.edge_attr = gearnet_edge_features(
                graph.edge_index, graph.edge_type, config.num_relation, types, node_index, nodes.positions
            )
        return graph

    def forward(
        self,
        residue_type: torch.Tensor | None = None,
        atom_positions: torch.Tensor | None = None,
        atom_mask: torch.Tensor | None = None,
        batch: torch.Tensor | None = None,
        residue_index: torch.Tensor | None = None,
        chain_index: torch.Tensor | None = None,
        edge_index: torch.Tensor | None = None,
        edge_type: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
        graph: ProteinGraph | None = None,
        hidden_residue_types: torch.Tensor | None = None,
        pooling: str | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ProteinEncoderOutput | tuple:
        """Encode a packed batch (the processor's outputs) or a ready `ProteinGraph`.

        Returns `ProteinEncoderOutput`: `node_embeddings` (n, D), `residue_embeddings` (L, D) (atom level: mean of
        the residue's atoms), `protein_embeddings` (B, D) (the config's sum or mean readout, or `pooling`),
        `batch` (L,), `node_batch` (n,), `node_residue` (n,), and `hidden_states` (input, then each layer) when
        asked. `hidden_residue_types` (L,) bool hides those residues' types (see `build_graph`).
        """
        graph = self.graph_from_inputs(
            graph, residue_type, atom_positions, atom_mask, batch, residue_index, chain_index,
            hidden_residue_types=hidden_residue_types, edge_index=edge_index, edge_type=edge_type, edge_attr=edge_attr,
        )  # fmt: skip
        hidden_states = self.encode(graph)
        return self.encoder_output(
            graph, self.node_embeddings(hidden_states), hidden_states, batch=batch, pooling=pooling,
            output_hidden_states=output_hidden_states, return_dict=return_dict,
        )  # fmt: skip

    def node_embeddings(self, hidden_states: list[torch.Tensor]) -> torch.Tensor:
        """Return the node output: every layer's output concatenated (`concat_hidden`) or the last one."""
        return torch.cat(hidden_states[1:], dim=-1) if self.config.concat_hidden else hidden_states[-1]

    def encode(self, graph: ProteinGraph) -> list[torch.Tensor]:
        """Return the node features before the first layer and after each layer.

        The forward of TorchDrug 0.2.1 `models/gearnet.py` (`GeometryAwareRelationalGraphNeuralNetwork`), step for
        step: node conv, short cut where the shapes match (never at layer 0), the edge update, then the outer
        batch norm.
        """
        if graph.node_features.shape[-1] != self.config.input_dim:
            raise ValueError(
                f"node features are {graph.node_features.shape[-1]} wide, model expects {self.config.input_dim}"
            )
        adjacency = relational_adjacency(graph.edge_index, graph.edge_type, graph.num_nodes, graph.num_relation)
        if self.config.edge_message_passing:
            if graph.edge_attr is None or graph.edge_attr.shape[-1] != self.config.edge_input_dim:
                width = None if graph.edge_attr is None else graph.edge_attr.shape[-1]
                raise ValueError(f"edge_attr must be {self.config.edge_input_dim} wide, got {width}")
            line_index, line_type = line_graph(
                graph.edge_index, graph.num_nodes, graph.positions, self.config.num_angle_bin
            )
            line_adjacency = relational_adjacency(line_index, line_type, graph.num_edges, self.config.num_angle_bin)
            # Edge messages reach their target node per relation: "sources" of this adjacency are the edges.
            edge_ids = torch.arange(graph.num_edges, device=graph.edge_index.device)
            edge_to_node = relational_adjacency(
                torch.stack([edge_ids, graph.edge_index[1]]), graph.edge_type, graph.num_nodes, graph.num_relation,
                num_sources=graph.num_edges,
            )  # fmt: skip
            edge_hidden = graph.edge_attr
        x = graph.node_features
        hidden_states = [x]
        for i, layer in enumerate(self.layers):
            hidden = layer(x, adjacency)
            if self.config.short_cut and hidden.shape == x.shape:
                hidden = hidden + x
            if self.config.edge_message_passing:
                edge_hidden = self.edge_layers[i](edge_hidden, line_adjacency)
                # The edge update goes through the node conv's own `linear` (same weight and bias) and a ReLU, with
                # no batch norm or self loop: `update = self.layers[i].linear(update)` in TorchDrug 0.2.1
                # `models/gearnet.py`.
                update = layer.relational_linear(edge_to_node, edge_hidden)
                hidden = hidden + torch.relu(update)
            if self.config.batch_norm:
                hidden = self.batch_norms[i](hidden)
            hidden_states.append(hidden)
            x = hidden
        return hidden_states


# --- fine-tuning heads (written once in models/heads.py; thin subclasses here) ----------------------------------
from ..heads import PairClassificationModel, ProteinClassificationModel, ResidueClassificationModel  # noqa: E402


class GearNetForProteinClassification(ProteinClassificationModel, GearNetPreTrainedModel):
    """GearNet-Edge with an MLP on the protein embedding (EC, GO, PSR); `AutoModelForSequenceClassification`."""

    encoder_class = GearNetModel


class GearNetForResidueClassification(ResidueClassificationModel, GearNetPreTrainedModel):
    """GearNet-Edge with an MLP on each residue's node (RES); `AutoModelForTokenClassification`."""

    encoder_class = GearNetModel


class GearNetForPairClassification(PairClassificationModel, GearNetPreTrainedModel):
    """GearNet-Edge on two structures, pooled over selected residues, then an MLP (MSP, PIP)."""

    encoder_class = GearNetModel
