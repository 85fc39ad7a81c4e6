"""Multiview contrast pre-training configuration."""

from __future__ import annotations

from transformers import PretrainedConfig

from ..pretraining_utils import PreTrainingConfig


class MultiviewContrastConfig(PreTrainingConfig):
    r"""Configuration of `MultiviewContrastForPreTraining`: an encoder plus a projection head.

    Defaults are GearNet `config/pretrain/mc_gearnet_edge.yaml` (and the paper's App. D).

    Args:
        encoder_config, level: the encoder, as for every objective (`PreTrainingConfig`).
        max_subsequence_length (`int`, defaults to 50): residues of a subsequence crop.
        subspace_radius (`float`, defaults to 15.0): least radius (Angstrom) of a subspace crop's ball.
        subspace_min_neighbors (`int`, defaults to 15): the ball grows to 1.5 x the distance of this many nearest
            nodes when that is larger than `subspace_radius`.
        edge_mask_rate (`float`, defaults to 0.15): fraction of a view's edges the random edge mask removes.
        tau (`float`, defaults to 0.07): InfoNCE temperature (TorchDrug's name; transformers reserves
            `temperature` for generation).
        num_mlp_layer (`int`, defaults to 2): linear layers of the projection head (TorchDrug's default).
    """

    model_type = "multiview_contrast"

    def __init__(
        self,
        encoder_config: PretrainedConfig | dict | None = None,
        level: str | None = None,
        max_subsequence_length: int = 50,
        subspace_radius: float = 15.0,
        subspace_min_neighbors: int = 15,
        edge_mask_rate: float = 0.15,
        tau: float = 0.07,
        num_mlp_layer: int = 2,
        **kwargs,
    ):
        if tau <= 0 or not 0 < edge_mask_rate <= 1 or max_subsequence_length < 1:
            raise ValueError("need tau > 0, edge_mask_rate in (0, 1] and max_subsequence_length >= 1")
        self.max_subsequence_length = max_subsequence_length
        self.subspace_radius, self.subspace_min_neighbors = subspace_radius, subspace_min_neighbors
        self.edge_mask_rate, self.tau, self.num_mlp_layer = edge_mask_rate, tau, num_mlp_layer
        super().__init__(encoder_config, level, **kwargs)
