"""GearNet-Edge configuration."""

from __future__ import annotations

from transformers import PretrainedConfig

from ..configuration_heads import set_head_options
from ..configuration_utils import check_activation, check_bool, check_choice, check_float, check_int, check_int_list

# The paper's two GearNet-Edge models: SiamDiff `config/pretrain/res_gearnet_1st.yaml` (residue: model and
# `graph_construction_model`) and `config/pretrain/gearnet_1st.yaml` (atom).
PRESETS: dict[str, dict] = {
    "residue": dict(
        input_dim=21, hidden_dims=[512] * 6, num_relation=7, edge_input_dim=59, num_angle_bin=8, readout="sum",
        radius=10.0, min_distance=5,
    ),
    "atom": dict(
        input_dim=39, hidden_dims=[128] * 6, num_relation=1, edge_input_dim=53, num_angle_bin=8, readout="mean",
        radius=4.5, min_distance=0,
    ),
}  # fmt: skip


class GearNetConfig(PretrainedConfig):
    r"""Configuration of a GearNet-Edge encoder (TorchDrug's `GeometryAwareRelationalGraphNeuralNetwork`).

    `GearNetConfig()` is the paper's residue-level model (21 -> [512]x6, 7 relations, edge features 59 wide,
    8 angle bins, sum readout; 20,145,635 parameters) and `GearNetConfig(level="atom")` the atom-level model
    (39 -> [128]x6, 1 relation, edge features 53 wide, 8 angle bins, mean readout; 834,503 parameters). Any
    argument left as `None` takes the value of the `level` preset.

    Args:
        level (`str`, *optional*, defaults to `"residue"`):
            `"residue"`: one node per residue at its CA; `"atom"`: one node per heavy atom.
        input_dim (`int`): width of the node input (21 residue one-hot; 39 = 18 element + 21 residue one-hot).
        hidden_dims (`list[int]`): width of each layer's output.
        num_relation (`int`): number of edge relations (7 at residue level: sequential offsets -2..2, radius,
            kNN; 1 at atom level).
        edge_input_dim (`int`): width of the GearNet edge features (20 + 20 + num_relation + 11 + 1); 0 (the
            default) without edge message passing.
        num_angle_bin (`int`): angle bins of the line graph (relations of the edge stream); 0 (the default)
            without edge message passing.
        edge_message_passing (`bool`, *optional*): the line-graph edge stream of GearNet-Edge (`False`: plain
            GearNet, as in ESM-GearNet). Defaults to `True`, except for configs saved before this field existed,
            where `edge_input_dim=0, num_angle_bin=0` meant off (they load to the same model).
        batch_norm (`bool`, defaults to `True`): BatchNorm inside each conv and after each layer.
        short_cut (`bool`, defaults to `True`): residual connection where input and output widths match.
        concat_hidden (`bool`, defaults to `True`): node output = concatenation of every layer's output.
        readout (`str`): `"sum"` or `"mean"` over nodes for the protein embedding.
        activation (`str`, defaults to `"relu"`): activation inside each conv.
        sequential_max_distance (`int`, defaults to 2): residue level, sequential edges |i-j| <= this, in a chain.
        radius (`float`): radius of spatial edges in Angstrom (10 residue, 4.5 atom).
        knn_k (`int`, defaults to 10): residue level, k of the kNN edges.
        min_distance (`int`): spatial and kNN edges need |i-j| >= this in sequence (5 residue, 0 atom).
        max_num_neighbors (`int`, defaults to 32): cap of radius neighbours per node, lowest index first.
        recompute_aggregation (`bool`, *optional*): recompute the relational sums in backward instead of storing
            them (R times less activation memory per layer, ~10% slower). Defaults to on at atom level, where the
            line graph's sums are what exhausts memory, and off at residue level.
        num_mlp_layer, classifier_dropout, freeze_encoder, residue_pooling, pair_pooling: options of the
            fine-tuning heads (`GearNetForProteinClassification`, ...), see `models/configuration_heads.py`:
            MLP layers (3, hidden width = `output_dim`), dropout (0), frozen encoder (False), residue node ("ca"),
            pair pooling ("mean" = MSP, "ca" = PIP). `num_labels` and `problem_type` are `PretrainedConfig`'s.
    """

    model_type = "gearnet"

    def __init__(
        self,
        level: str = "residue",
        input_dim: int | None = None,
        hidden_dims: list[int] | None = None,
        num_relation: int | None = None,
        edge_input_dim: int | None = None,
        num_angle_bin: int | None = None,
        edge_message_passing: bool | None = None,
        batch_norm: bool = True,
        short_cut: bool = True,
        concat_hidden: bool = True,
        readout: str | None = None,
        activation: str = "relu",
        sequential_max_distance: int = 2,
        radius: float | None = None,
        knn_k: int = 10,
        min_distance: int | None = None,
        max_num_neighbors: int = 32,
        recompute_aggregation: bool | None = None,
        **kwargs,
    ):
        name = type(self).__name__
        preset = PRESETS[check_choice(name, "level", level, PRESETS)]
        if edge_message_passing is None:  # configs saved before the flag: both widths 0 meant "off"
            off = (edge_input_dim, num_angle_bin) == (0, 0)
            if not off and 0 in (edge_input_dim, num_angle_bin):
                raise ValueError(
                    f"{name}: edge_input_dim={edge_input_dim}, num_angle_bin={num_angle_bin}: set "
                    "edge_message_passing=False to turn the edge stream off"
                )
            edge_message_passing = not off
        self.edge_message_passing = check_bool(name, "edge_message_passing", edge_message_passing)
        if not self.edge_message_passing:
            preset = {**preset, "edge_input_dim": 0, "num_angle_bin": 0}
        given = dict(
            input_dim=input_dim, hidden_dims=hidden_dims, num_relation=num_relation, edge_input_dim=edge_input_dim,
            num_angle_bin=num_angle_bin, readout=readout, radius=radius, min_distance=min_distance,
        )  # fmt: skip
        given = {key: preset[key] if value is None else value for key, value in given.items()}
        edge_minimum = 1 if self.edge_message_passing else 0
        self.level = level
        self.input_dim = check_int(name, "input_dim", given["input_dim"], 1)
        self.hidden_dims = check_int_list(name, "hidden_dims", given["hidden_dims"], 1)
        self.num_relation = check_int(name, "num_relation", given["num_relation"], 1)
        self.edge_input_dim = check_int(name, "edge_input_dim", given["edge_input_dim"], edge_minimum)
        self.num_angle_bin = check_int(name, "num_angle_bin", given["num_angle_bin"], edge_minimum)
        self.batch_norm = check_bool(name, "batch_norm", batch_norm)
        self.short_cut = check_bool(name, "short_cut", short_cut)
        self.concat_hidden = check_bool(name, "concat_hidden", concat_hidden)
        self.readout = check_choice(name, "readout", given["readout"], ("sum", "mean"))
        self.activation = check_activation(name, "activation", activation)
        self.sequential_max_distance = check_int(name, "sequential_max_distance", sequential_max_distance, 0)
        self.radius = check_float(name, "radius", given["radius"], positive=True)
        self.knn_k = check_int(name, "knn_k", knn_k, 0)
        self.min_distance = check_int(name, "min_distance", given["min_distance"], 0)
        self.max_num_neighbors = check_int(name, "max_num_neighbors", max_num_neighbors, 1)
        if recompute_aggregation is None:
            recompute_aggregation = level == "atom"
        self.recompute_aggregation = check_bool(name, "recompute_aggregation", recompute_aggregation)
        set_head_options(self, kwargs)
        super().__init__(**kwargs)

    @property
    def output_dim(self) -> int:
        """Width of the node and protein embeddings."""
        return sum(self.hidden_dims) if self.concat_hidden else self.hidden_dims[-1]
