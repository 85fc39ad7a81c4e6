"""GearNet-Edge configuration."""

from __future__ import annotations

from transformers import PretrainedConfig

# The paper's two GearNet-Edge models (reference siamdiff_torchdrug §1.1, §3.6).
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
        edge_input_dim (`int`): width of the GearNet edge features (20 + 20 + num_relation + 11 + 1). `0` turns
            edge message passing off (as in ESM-GearNet).
        num_angle_bin (`int`): angle bins of the line graph (relations of the edge stream). `0` turns edge message
            passing off.
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
        if level not in PRESETS:
            raise ValueError(f"level must be one of {sorted(PRESETS)}, got {level!r}")
        preset = PRESETS[level]
        given = dict(
            input_dim=input_dim, hidden_dims=hidden_dims, num_relation=num_relation, edge_input_dim=edge_input_dim,
            num_angle_bin=num_angle_bin, readout=readout, radius=radius, min_distance=min_distance,
        )  # fmt: skip
        for key, value in given.items():
            setattr(self, key, preset[key] if value is None else value)
        self.level = level
        self.hidden_dims = list(self.hidden_dims)
        self.batch_norm = batch_norm
        self.short_cut = short_cut
        self.concat_hidden = concat_hidden
        self.activation = activation
        self.sequential_max_distance = sequential_max_distance
        self.knn_k = knn_k
        self.max_num_neighbors = max_num_neighbors
        self.recompute_aggregation = level == "atom" if recompute_aggregation is None else recompute_aggregation
        if self.readout not in ("sum", "mean"):
            raise ValueError(f"readout must be 'sum' or 'mean', got {self.readout!r}")
        if bool(self.edge_input_dim) != bool(self.num_angle_bin):
            raise ValueError("edge message passing needs both edge_input_dim and num_angle_bin (or set both to 0)")
        super().__init__(**kwargs)

    @property
    def edge_message_passing(self) -> bool:
        """Whether the line-graph edge stream is on (GearNet-Edge) or off (plain GearNet)."""
        return bool(self.edge_input_dim) and bool(self.num_angle_bin)

    @property
    def output_dim(self) -> int:
        """Width of the node and protein embeddings."""
        return sum(self.hidden_dims) if self.concat_hidden else self.hidden_dims[-1]
