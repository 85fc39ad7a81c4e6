"""GVP-GNN (Jing et al. 2021) in SiamDiff's atom-level variant, with plain-torch message passing.

Reads top-down: geometric vector perceptron, its LayerNorm and dropout, the message-passing conv, the conv layer,
then the model. A feature is a pair ``(s, v)``: scalars ``s`` (n, ns) and vectors ``v`` (n, nv, 3); every block
takes and returns such a pair (``nv`` may be 0). Module names follow SiamDiff's `GVPGNN` (and gvp-pytorch), so its
state dicts load 1:1 once the empty ``dummy_param`` entries are dropped (`siamdiff_hf.convert.gvp`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.activations import ACT2FN

from ...graph import Nodes, PackedResidues, ProteinGraph, atom_graph
from ...protein.constants import NUM_ELEMENT_FEATURES, NUM_RESIDUE_FEATURES
from ..modeling_utils import ProteinPreTrainedModel
from ..outputs import ProteinEncoderOutput
from .configuration_gvp import GVPConfig

Features = tuple[torch.Tensor, torch.Tensor]
NORM_EPS = 1e-8  # squared norms are clamped here before any sqrt (gvp-pytorch), so gradients stay finite at 0


def _activation(name: str | None) -> nn.Module | None:
    return ACT2FN[name] if name else None


def _squared_norm(v: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """Return the clamped squared norm ``max(sum v^2, 1e-8)`` over `dim`."""
    return v.square().sum(dim, keepdim=keepdim).clamp(min=NORM_EPS)


class GVP(nn.Module):
    """Geometric vector perceptron: (n, si), (n, vi, 3) -> (n, so), (n, vo, 3), E(3)-equivariant in the vectors.

    With input vectors: ``Vh = wh(V)``, ``s' = ws([s, |Vh|])``, ``V' = wv(Vh)``; with `vector_gate`,
    ``V' *= sigmoid(wsv(s'))`` where the gate reads ``s'`` *before* the scalar activation (through the vector
    activation when one is set); without gating, ``V' *= vector_act(|V'|)``. Without input vectors ``s' = ws(s)``
    and the output vectors are zero. Hidden vector width ``h = max(vi, vo)``.
    """

    def __init__(
        self,
        in_dims: tuple[int, int],
        out_dims: tuple[int, int],
        activations: tuple[str | None, str | None] = ("relu", None),
        vector_gate: bool = False,
    ):
        super().__init__()
        (si, self.vi), (so, self.vo) = in_dims, out_dims
        self.vector_gate = vector_gate
        if self.vi:
            hidden = max(self.vi, self.vo)
            self.wh = nn.Linear(self.vi, hidden, bias=False)
            self.ws = nn.Linear(hidden + si, so)
            if self.vo:
                self.wv = nn.Linear(hidden, self.vo, bias=False)
                if vector_gate:
                    self.wsv = nn.Linear(so, self.vo)
        else:
            self.ws = nn.Linear(si, so)
        self.scalar_act = _activation(activations[0])
        self.vector_act = _activation(activations[1])

    def forward(self, x: Features) -> Features:
        s, v = x
        if self.vi:
            vh = self.wh(v.transpose(-1, -2))  # (n, 3, h): channel mixing acts on the last dim
            s = self.ws(torch.cat([s, _squared_norm(vh, dim=-2).sqrt()], dim=-1))
            if self.vo:
                v = self.wv(vh).transpose(-1, -2)
                if self.vector_gate:
                    gate = self.wsv(self.vector_act(s) if self.vector_act is not None else s)
                    v = v * torch.sigmoid(gate).unsqueeze(-1)
                elif self.vector_act is not None:
                    v = v * self.vector_act(_squared_norm(v, keepdim=True).sqrt())
            else:
                v = s.new_zeros(s.shape[0], 0, 3)
        else:
            s = self.ws(s)
            v = s.new_zeros(s.shape[0], self.vo, 3)
        if self.scalar_act is not None:
            s = self.scalar_act(s)
        return s, v


class GVPLayerNorm(nn.Module):
    """LayerNorm of the scalars (affine, `scalar_norm`); vectors divided by their RMS channel norm (no parameters)."""

    def __init__(self, dims: tuple[int, int]):
        super().__init__()
        self.scalar_norm = nn.LayerNorm(dims[0])

    def forward(self, x: Features) -> Features:
        s, v = x
        if v.shape[-2] == 0:
            return self.scalar_norm(s), v
        rms = _squared_norm(v, keepdim=True).mean(dim=-2, keepdim=True).sqrt()
        return self.scalar_norm(s), v / rms


class VectorDropout(nn.Module):
    """Dropout of whole vector channels: a channel is zeroed with probability p, the others scaled by 1/(1-p)."""

    def __init__(self, drop_rate: float):
        super().__init__()
        self.drop_rate = drop_rate

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_rate == 0:
            return v
        keep = torch.bernoulli(torch.full(v.shape[:-1], 1 - self.drop_rate, dtype=v.dtype, device=v.device))
        return v * keep.unsqueeze(-1) / (1 - self.drop_rate)


class GVPDropout(nn.Module):
    """Dropout of a feature pair: `sdropout` on the scalars, `vdropout` on whole vector channels."""

    def __init__(self, drop_rate: float):
        super().__init__()
        self.sdropout = nn.Dropout(drop_rate)
        self.vdropout = VectorDropout(drop_rate)

    def forward(self, x: Features) -> Features:
        return self.sdropout(x[0]), self.vdropout(x[1])


def _gvp_stack(
    in_dims: tuple[int, int],
    hidden_dims: tuple[int, int],
    out_dims: tuple[int, int],
    num_layers: int,
    activations: tuple[str | None, str | None],
    vector_gate: bool,
) -> nn.Sequential:
    """Return `num_layers` GVPs in -> hidden -> ... -> out; the last one has no activations (gvp-pytorch)."""
    if num_layers == 1:
        return nn.Sequential(GVP(in_dims, out_dims, (None, None), vector_gate))
    dims = [in_dims] + [hidden_dims] * (num_layers - 1)
    blocks = [GVP(dims[i], dims[i + 1], activations, vector_gate) for i in range(num_layers - 1)]
    return nn.Sequential(*blocks, GVP(hidden_dims, out_dims, (None, None), vector_gate))


class GVPConv(nn.Module):
    """GVP message passing: ``m_e = message_func((s_j, V_j) ++ (e_s, e_V) ++ (s_i, V_i))``, mean over j -> i."""

    def __init__(
        self,
        in_dims: tuple[int, int],
        out_dims: tuple[int, int],
        edge_dims: tuple[int, int],
        num_layers: int = 3,
        activations: tuple[str | None, str | None] = ("relu", None),
        vector_gate: bool = False,
    ):
        super().__init__()
        (si, vi), (se, ve) = in_dims, edge_dims
        message_in = (2 * si + se, 2 * vi + ve)
        self.message_func = _gvp_stack(message_in, out_dims, out_dims, num_layers, activations, vector_gate)

    def forward(self, x: Features, edge_index: torch.Tensor, edge_attr: Features) -> Features:
        """Return messages (n, so), (n, vo, 3) averaged at each target node (zeros where none arrive).

        Args: node features (n, si), (n, vi, 3); edges (2, E) source j -> target i; edge features (E, se), (E, ve, 3).
        """
        s, v = x
        source, target = edge_index
        message = self.message_func(
            (
                torch.cat([s[source], edge_attr[0], s[target]], dim=-1),
                torch.cat([v[source], edge_attr[1], v[target]], dim=-2),
            )
        )
        count = torch.bincount(target, minlength=s.shape[0]).clamp(min=1).to(message[0].dtype)
        out_s = message[0].new_zeros(s.shape[0], message[0].shape[-1]).index_add_(0, target, message[0])
        out_v = message[1].new_zeros(s.shape[0], *message[1].shape[1:]).index_add_(0, target, message[1])
        return out_s / count.unsqueeze(-1), out_v / count.view(-1, 1, 1)


class GVPConvLayer(nn.Module):
    """Post-norm residual block: ``x = norm0(x + drop0(conv(x)))``, ``x = norm1(x + drop1(ff(x)))``."""

    def __init__(
        self,
        node_dims: tuple[int, int],
        edge_dims: tuple[int, int],
        num_message_layers: int = 3,
        num_feedforward_layers: int = 2,
        drop_rate: float = 0.1,
        activations: tuple[str | None, str | None] = ("relu", None),
        vector_gate: bool = False,
    ):
        super().__init__()
        self.conv = GVPConv(node_dims, node_dims, edge_dims, num_message_layers, activations, vector_gate)
        self.norm = nn.ModuleList(GVPLayerNorm(node_dims) for _ in range(2))
        self.dropout = nn.ModuleList(GVPDropout(drop_rate) for _ in range(2))
        hidden = (4 * node_dims[0], 2 * node_dims[1])
        self.ff_func = _gvp_stack(node_dims, hidden, node_dims, num_feedforward_layers, activations, vector_gate)

    def forward(self, x: Features, edge_index: torch.Tensor, edge_attr: Features) -> Features:
        """Update node features (n, ns), (n, nv, 3) over edges (2, E) with features (E, se), (E, ve, 3)."""
        update = self.dropout[0](self.conv(x, edge_index, edge_attr))
        x = self.norm[0]((x[0] + update[0], x[1] + update[1]))
        update = self.dropout[1](self.ff_func(x))
        return self.norm[1]((x[0] + update[0], x[1] + update[1]))


@dataclass
class GVPEncoderOutput(ProteinEncoderOutput):
    """`ProteinEncoderOutput` plus the vector channels of the hidden states.

    Args:
        hidden_states: scalar node features (n, ns) after `W_v`, then after each `GVPConvLayer`.
        vector_hidden_states: the matching vector node features (n, nv, 3) (equivariant; zero after `W_v`).
    """

    vector_hidden_states: tuple[torch.Tensor, ...] | None = None


class GVPPreTrainedModel(ProteinPreTrainedModel):
    """Weight initialisation and loading glue shared by GVP models."""

    config_class = GVPConfig
    base_model_prefix = "gvp"
    _no_split_modules = ["GVPConvLayer"]


class GVPModel(GVPPreTrainedModel):
    """GVP-GNN encoder at atom level: packed protein batch in, atom / residue / protein embeddings out.

    Node input: ``embedding(element) + residue_embdding(residue one-hot)`` with the element index read off the
    18-wide element one-hot of `atom_nodes` (atomic number clamped to 17). Edge input: RBFs of the length and the
    raw vector target - source, both computed at forward time from ``graph.positions``, so a SiamDiff graph over
    noisy coordinates (`ProteinGraph.with_positions`) is encoded with the noisy geometry; ``edge_attr`` is ignored.
    """

    def __init__(self, config: GVPConfig):
        super().__init__(config)
        node_in, node_h = tuple(config.node_in_dim), tuple(config.node_h_dim)
        edge_in, edge_h = tuple(config.edge_in_dim), tuple(config.edge_h_dim)
        activations = (config.scalar_activation, config.vector_activation)
        gate = config.vector_gate
        if config.residue_in_dim:
            # Misspelt as in SiamDiff's GVPGNN: the name is the state-dict key of its checkpoints.
            self.residue_embdding = nn.Linear(config.residue_in_dim, node_in[0], bias=False)
        self.embedding = nn.Embedding(NUM_ELEMENT_FEATURES, node_in[0])
        self.W_v = nn.Sequential(GVPLayerNorm(node_in), GVP(node_in, node_h, (None, None), gate))
        self.W_e = nn.Sequential(GVPLayerNorm(edge_in), GVP(edge_in, edge_h, (None, None), gate))
        depths = (config.num_message_layers, config.num_feedforward_layers)
        self.layers = nn.ModuleList(
            GVPConvLayer(node_h, edge_h, *depths, config.drop_rate, activations, gate) for _ in range(config.num_layers)
        )
        self.W_out = nn.Sequential(GVPLayerNorm(node_h), GVP(node_h, (node_h[0], 0), activations, gate))
        self.post_init()

    def edges(
        self,
        residues: PackedResidues,
        nodes: Nodes,
        edge_index: torch.Tensor | None = None,
        edge_type: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
    ) -> ProteinGraph:
        """Return the atom radius graph over `nodes` (`residue_index` used only when `min_distance` > 0).

        A graph of your own: `edge_index`, `edge_type` over the atoms in ``atom_mask.nonzero()`` order. `edge_attr`
        is ignored: GVP computes its edge features from positions at forward time (`edge_features`).
        """
        config = self.config
        if edge_index is None:
            edge_index, edge_type, _ = atom_graph(
                nodes.positions, nodes.batch, residues.residue_index[nodes.residue], radius=config.radius,
                min_distance=config.min_distance, max_num_neighbors=config.max_num_neighbors,
            )  # fmt: skip
        return self.packed_graph(residues, nodes, edge_index, edge_type, None, num_relation=1)

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
    ) -> GVPEncoderOutput | tuple:
        """Encode a packed batch (the processor's outputs) or a ready atom-level `ProteinGraph`.

        Returns `GVPEncoderOutput`: `node_embeddings` (n_atoms, D), `residue_embeddings` (L, D) (mean of the
        residue's atoms), `protein_embeddings` (B, D) (the config's mean or sum over atoms, or `pooling`), `batch`
        (L,), `node_batch` (n_atoms,), `node_residue` (n_atoms,), and when asked `hidden_states` (scalars after
        `W_v` and after each layer) with `vector_hidden_states` (the matching (n_atoms, nv, 3) vectors).
        `hidden_residue_types` (L,) bool hides those residues' types (see `build_graph`).
        """
        graph = self.graph_from_inputs(
            graph, residue_type, atom_positions, atom_mask, batch, residue_index, chain_index,
            hidden_residue_types=hidden_residue_types, edge_index=edge_index, edge_type=edge_type,
        )  # fmt: skip
        states = self.encode(graph)
        return self.encoder_output(
            graph, self.W_out(states[-1])[0], [s for s, _ in states], batch=batch, pooling=pooling,
            output_hidden_states=output_hidden_states, return_dict=return_dict, output_class=GVPEncoderOutput,
            vector_hidden_states=[v for _, v in states],
        )  # fmt: skip

    def encode(self, graph: ProteinGraph) -> list[Features]:
        """Return the node features (scalars (n, ns), vectors (n, nv, 3)) after `W_v` and after each layer."""
        expected = NUM_ELEMENT_FEATURES + NUM_RESIDUE_FEATURES
        if graph.node_features.shape[-1] != expected:
            raise ValueError(
                f"node features are {graph.node_features.shape[-1]} wide, GVP expects {expected} "
                "(element one-hot | residue one-hot, from `atom_nodes`)"
            )
        dtype = self.embedding.weight.dtype
        element = graph.node_features[:, :NUM_ELEMENT_FEATURES].argmax(dim=-1)
        s = self.embedding(element)
        if self.config.residue_in_dim:
            s = s + self.residue_embdding(graph.node_features[:, NUM_ELEMENT_FEATURES:].to(dtype))
        x = self.W_v((s, s.new_zeros(s.shape[0], 0, 3)))
        edge_attr = self.W_e(self.edge_features(graph))
        states = [x]
        for layer in self.layers:
            x = layer(x, graph.edge_index, edge_attr)
            states.append(x)
        return states

    def edge_features(self, graph: ProteinGraph) -> Features:
        """Return the edge input: (E, K) Gaussian RBFs of the length and the (E, 1, 3) raw vector target - source."""
        source, target = graph.edge_index
        vector = graph.positions[target] - graph.positions[source]
        num_rbf = self.config.edge_in_dim[0]
        centers = torch.linspace(
            self.config.rbf_min, self.config.rbf_max, num_rbf, dtype=vector.dtype, device=vector.device
        )
        width = (self.config.rbf_max - self.config.rbf_min) / num_rbf
        rbf = torch.exp(-(((vector.norm(dim=-1, keepdim=True) - centers) / width) ** 2))
        dtype = self.embedding.weight.dtype
        return rbf.to(dtype), vector.unsqueeze(-2).to(dtype)


# --- fine-tuning heads (written once in models/heads.py; thin subclasses here) ----------------------------------
from ..heads import PairClassificationModel, ProteinClassificationModel, ResidueClassificationModel  # noqa: E402


class GVPForProteinClassification(ProteinClassificationModel, GVPPreTrainedModel):
    """GVP-GNN with an MLP on the protein embedding (PSR); `AutoModelForSequenceClassification`."""

    encoder_class = GVPModel


class GVPForResidueClassification(ResidueClassificationModel, GVPPreTrainedModel):
    """GVP-GNN with an MLP on each residue's CA-atom node (RES); `AutoModelForTokenClassification`."""

    encoder_class = GVPModel


class GVPForPairClassification(PairClassificationModel, GVPPreTrainedModel):
    """GVP-GNN on two structures, pooled over selected residues, then an MLP (MSP, PIP)."""

    encoder_class = GVPModel
