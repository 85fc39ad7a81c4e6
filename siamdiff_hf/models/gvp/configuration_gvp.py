"""GVP-GNN configuration (SiamDiff's atom-level variant of gvp-pytorch)."""

from __future__ import annotations

from transformers import PretrainedConfig

from ...protein.constants import NUM_RESIDUE_FEATURES
from ..configuration_heads import set_head_options
from ..configuration_utils import check_activation, check_bool, check_choice, check_float, check_int, check_int_list


class GVPConfig(PretrainedConfig):
    r"""Configuration of a GVP-GNN encoder (Jing et al. 2021) as SiamDiff's `GVPGNN` defines it.

    `GVPConfig()` is SiamDiff's atom-level model (874,982 parameters): one node per heavy atom with scalar input
    `embedding(element) + residue_embdding(residue one-hot)` (18 wide, no input vectors); edges of the radius
    graph (4.5 A, at most 32 neighbours) carry 16 Gaussian RBFs of the length on [0, 20] A and the raw vector
    target - source; `W_v` and `W_e` embed nodes to (100 scalars, 16 vectors) and edges to (32, 1); 5
    `GVPConvLayer`s with vector gating and dropout 0.1; `W_out` maps to 100 scalars (no vectors), read out by a
    mean over atoms (per residue and per protein). Feature widths are `[scalars, vectors]` pairs.

    Args:
        node_in_dim (`list[int]`, defaults to `[18, 0]`): width of the node input after the input embeddings.
            Only scalars: the vector part must be 0.
        node_h_dim (`list[int]`, defaults to `[100, 16]`): node (scalar, vector) channels inside the layers.
        edge_in_dim (`list[int]`, defaults to `[16, 1]`): edge input: number of RBFs, and 1 edge vector.
        edge_h_dim (`list[int]`, defaults to `[32, 1]`): edge (scalar, vector) channels after `W_e`.
        num_layers (`int`, defaults to 5): number of `GVPConvLayer`s.
        num_message_layers (`int`, defaults to 3): GVPs in each message function.
        num_feedforward_layers (`int`, defaults to 2): GVPs in each node-wise feed-forward block (hidden width
            4 x scalars, 2 x vectors).
        drop_rate (`float`, defaults to 0.1): dropout of the scalars and of whole vector channels in each layer.
        vector_gate (`bool`, defaults to `True`): gate output vectors by a sigmoid of the pre-activation scalars.
        scalar_activation (`str`, defaults to `"relu"`): scalar activation of the inner GVPs and of `W_out`.
        vector_activation (`str`, *optional*): vector nonlinearity (`None` in SiamDiff); with gating it is applied
            to the scalars that feed the gate.
        residue_in_dim (`int`, defaults to 21): width of the residue one-hot added to the element embedding
            through `residue_embdding`; 0 leaves the residue type out.
        rbf_min, rbf_max (`float`, defaults to 0.0 and 20.0): range of the RBF centres in Angstrom; the width is
            `(rbf_max - rbf_min) / edge_in_dim[0]` (1.25 A).
        radius (`float`, defaults to 4.5): radius of the atom graph in Angstrom.
        min_distance (`int`, defaults to 0): keep edges whose residues are at least this far apart in sequence.
        max_num_neighbors (`int`, defaults to 32): cap of radius neighbours per atom, lowest index first.
        readout (`str`, defaults to `"mean"`): `"mean"` or `"sum"` over atoms for the protein embedding.
        num_mlp_layer, classifier_dropout, freeze_encoder, residue_pooling, pair_pooling: options of the
            fine-tuning heads (`GVPForProteinClassification`, ...), see `models/configuration_heads.py`: MLP
            layers (3, hidden width = `output_dim`), dropout (0), frozen encoder (False), residue node ("ca" = the
            CA atom's node, official RES), pair pooling ("mean" = MSP, "ca" = PIP).
    """

    model_type = "gvp"

    def __init__(
        self,
        node_in_dim: list[int] | tuple[int, int] = (18, 0),
        node_h_dim: list[int] | tuple[int, int] = (100, 16),
        edge_in_dim: list[int] | tuple[int, int] = (16, 1),
        edge_h_dim: list[int] | tuple[int, int] = (32, 1),
        num_layers: int = 5,
        num_message_layers: int = 3,
        num_feedforward_layers: int = 2,
        drop_rate: float = 0.1,
        vector_gate: bool = True,
        scalar_activation: str | None = "relu",
        vector_activation: str | None = None,
        residue_in_dim: int = NUM_RESIDUE_FEATURES,
        rbf_min: float = 0.0,
        rbf_max: float = 20.0,
        radius: float = 4.5,
        min_distance: int = 0,
        max_num_neighbors: int = 32,
        readout: str = "mean",
        **kwargs,
    ):
        kwargs.pop("level", None)  # always atom level; accepted so that saved configs round-trip
        name = type(self).__name__
        self.node_in_dim = check_int_list(name, "node_in_dim", node_in_dim, 0, length=2)
        self.node_h_dim = check_int_list(name, "node_h_dim", node_h_dim, 0, length=2)
        self.edge_in_dim = check_int_list(name, "edge_in_dim", edge_in_dim, 0, length=2)
        self.edge_h_dim = check_int_list(name, "edge_h_dim", edge_h_dim, 0, length=2)
        if self.node_in_dim[1] != 0:
            raise ValueError(f"{name}: node_in_dim must have no vector channels, got {self.node_in_dim}")
        if self.edge_in_dim[1] != 1:
            raise ValueError(
                f"{name}: edge_in_dim must have exactly 1 vector channel (the edge vector), got {self.edge_in_dim}"
            )
        for field in ("node_in_dim", "node_h_dim", "edge_in_dim", "edge_h_dim"):
            if getattr(self, field)[0] < 1:
                raise ValueError(f"{name}: {field} must have at least 1 scalar channel, got {getattr(self, field)}")
        self.level = "atom"
        self.num_layers = check_int(name, "num_layers", num_layers, 0)
        self.num_message_layers = check_int(name, "num_message_layers", num_message_layers, 1)
        self.num_feedforward_layers = check_int(name, "num_feedforward_layers", num_feedforward_layers, 1)
        self.drop_rate = check_float(name, "drop_rate", drop_rate, minimum=0.0, below=1.0)
        self.vector_gate = check_bool(name, "vector_gate", vector_gate)
        self.scalar_activation = check_activation(name, "scalar_activation", scalar_activation)
        self.vector_activation = check_activation(name, "vector_activation", vector_activation)
        self.residue_in_dim = check_choice(name, "residue_in_dim", residue_in_dim, (0, NUM_RESIDUE_FEATURES))
        self.rbf_min = check_float(name, "rbf_min", rbf_min)
        self.rbf_max = check_float(name, "rbf_max", rbf_max)
        if self.rbf_max <= self.rbf_min:
            raise ValueError(f"{name}: rbf_max must be greater than rbf_min, got {rbf_max!r} <= {rbf_min!r}")
        self.radius = check_float(name, "radius", radius, positive=True)
        self.min_distance = check_int(name, "min_distance", min_distance, 0)
        self.max_num_neighbors = check_int(name, "max_num_neighbors", max_num_neighbors, 1)
        self.readout = check_choice(name, "readout", readout, ("sum", "mean"))
        set_head_options(self, kwargs)
        super().__init__(**kwargs)

    @property
    def output_dim(self) -> int:
        """Width of the node and protein embeddings (the scalar channels of `node_h_dim`)."""
        return self.node_h_dim[0]
