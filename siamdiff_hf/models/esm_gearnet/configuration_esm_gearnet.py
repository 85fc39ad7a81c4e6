"""ESM-GearNet (series fusion) configuration."""

from __future__ import annotations

from transformers import EsmConfig, PretrainedConfig

from ..configuration_heads import set_head_options
from ..configuration_utils import check_bool, check_float, check_int
from ..gearnet import GearNetConfig

DEFAULT_ESM_NAME = "facebook/esm2_t33_650M_UR50D"

# The architecture of `facebook/esm2_t33_650M_UR50D` (its config.json on the Hub, written out so that building the
# default model needs no download): 33 layers of width 1280 with 20 heads (fair-esm `esm/pretrained.py`
# `esm2_t33_650M_UR50D`), and the values transformers' `models/esm/convert_esm.py` writes for every ESM-2.
ESM2_650M: dict = dict(
    vocab_size=33, hidden_size=1280, num_hidden_layers=33, num_attention_heads=20, intermediate_size=5120,
    hidden_act="gelu", max_position_embeddings=1026, layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0, position_embedding_type="rotary", token_dropout=True,
    emb_layer_norm_before=False, pad_token_id=1, mask_token_id=32, initializer_range=0.02,
)  # fmt: skip

# The structure half of the paper's ESM-GearNet: residue GearNet without edge message passing (ESM-GearNet
# `config/*/esm_gearnet.yaml`: `structure_model` GearNet with 7 relations, no `edge_input_dim`): [512]x6, batch
# norm, short cut, concat of all layers, sum readout.
GEARNET_DEFAULTS: dict = dict(level="residue", hidden_dims=[512] * 6, edge_message_passing=False, readout="sum")


def esm2_config(**overrides) -> EsmConfig:
    """Return an ESM-2 `EsmConfig`: the 650M architecture, with any argument overridden (e.g. a tiny test model)."""
    return EsmConfig(**{**ESM2_650M, **overrides})


class EsmGearNetConfig(PretrainedConfig):
    r"""Configuration of ESM-GearNet (Zhang et al. 2023, "series" fusion): ESM-2 residue embeddings feed a GearNet.

    `EsmGearNetConfig()` is the paper's model: ESM-2 650M (33 layers, 1280 wide) whose last hidden state (after
    the final LayerNorm) is the node input of a residue GearNet (1280 -> [512]x6, 7 relations, no edge message
    passing, sum readout). Residue embedding = concat(ESM, GearNet) (1280 + 3072 = 4352 wide); protein embedding
    = concat(mean over residues of ESM, sum over residues of GearNet).

    Args:
        esm_config (`EsmConfig` or `dict`, *optional*): the sequence model. Defaults to the architecture of
            `facebook/esm2_t33_650M_UR50D` (random weights; load real ones with
            `EsmGearNetModel.from_esm_pretrained`). A dict overrides those defaults (e.g. only the sizes of a
            smaller ESM-2). Any ESM-2 size works.
        gearnet_config (`GearNetConfig` or `dict`, *optional*): the structure model; must be residue level. Its
            `input_dim` is always set to the ESM hidden size. Defaults to [512]x6, 7 relations, no edge message
            passing (`edge_message_passing=False`), sum readout.
        freeze_sequence_model (`bool`, defaults to `True`): ESM parameters get `requires_grad=False`, ESM runs
            under `torch.no_grad()` and stays in eval mode (official pre-training: `fix_sequence_model: True`).
        esm_learning_rate_ratio (`float`, defaults to 0.1): learning rate of the ESM parameters relative to the
            rest in `EsmGearNetModel.parameter_groups` (official fine-tuning: `sequence_model_lr_ratio: 0.1`;
            0 leaves ESM out of the optimiser).
        masked_residues_as_glycine (`bool`, defaults to `True`): residues masked by SiamDiff reach ESM as 'G', as in
            the official code (residue type set to 0 = GLY); `False` gives them the ESM `<mask>` token.
        esm_window (`int`, defaults to 1022): most residues per ESM pass (ESM-2 was trained on 1022 residues plus
            `<cls>`/`<eos>`). Longer sequences run in overlapping windows of this many residues.
        esm_window_overlap (`int`, *optional*): residues shared by consecutive windows; defaults to
            ``esm_window // 4`` (255 for 1022). Each residue takes its embedding from the window whose centre is
            nearest to it, so every residue gets exactly one embedding with at least `esm_window_overlap // 2`
            residues of context on each side (where the sequence has them). Every window gets its own
            `<cls>`/`<eos>`.
        esm_split_chains (`bool`, defaults to `True`): one ESM sequence per chain (chains change wherever
            `chain_index` or `batch` changes); `False` runs the chains of a protein as one concatenated sequence
            (TorchDrug's behaviour, which has no chain boundaries).
        esm_name_or_path (`str`, defaults to `"facebook/esm2_t33_650M_UR50D"`): where the ESM weights came from
            (informative; nothing is loaded from it by the config).
        num_mlp_layer, classifier_dropout, freeze_encoder, residue_pooling, pair_pooling: options of the
            fine-tuning heads (`EsmGearNetForProteinClassification`, ...), see `models/configuration_heads.py`.
            In those heads ESM trains at `esm_learning_rate_ratio` times the learning rate (their
            `parameter_groups`); ratio 0 or `freeze_encoder` freezes it (`freeze_sequence_model` is set to match).
    """

    model_type = "esm_gearnet"
    sub_configs = {"esm_config": EsmConfig, "gearnet_config": GearNetConfig}

    def __init__(
        self,
        esm_config: EsmConfig | dict | None = None,
        gearnet_config: GearNetConfig | dict | None = None,
        freeze_sequence_model: bool = True,
        esm_learning_rate_ratio: float = 0.1,
        masked_residues_as_glycine: bool = True,
        esm_window: int = 1022,
        esm_window_overlap: int | None = None,
        esm_split_chains: bool = True,
        esm_name_or_path: str = DEFAULT_ESM_NAME,
        **kwargs,
    ):
        name = type(self).__name__
        if esm_config is None:
            esm_config = esm2_config()
        elif isinstance(esm_config, dict):
            esm_config = esm2_config(**{k: v for k, v in esm_config.items() if k != "model_type"})
        elif not isinstance(esm_config, EsmConfig):
            raise ValueError(f"{name}: esm_config must be an EsmConfig or a dict, got {type(esm_config).__name__}")
        if esm_config.position_embedding_type != "rotary" or esm_config.emb_layer_norm_before:
            raise ValueError(
                f"{name}: esm_config must describe an ESM-2 model (rotary positions, no embedding LayerNorm)"
            )
        if gearnet_config is None:
            gearnet_config = dict(GEARNET_DEFAULTS)
        if isinstance(gearnet_config, dict):
            gearnet_config = {k: v for k, v in gearnet_config.items() if k != "model_type"}
            gearnet_config = GearNetConfig(**{**gearnet_config, "input_dim": esm_config.hidden_size})
        elif not isinstance(gearnet_config, GearNetConfig):
            raise ValueError(
                f"{name}: gearnet_config must be a GearNetConfig or a dict, got {type(gearnet_config).__name__}"
            )
        if gearnet_config.level != "residue":
            raise ValueError(f"{name}: the structure model of ESM-GearNet must be residue level (gearnet_config.level)")
        gearnet_config.input_dim = esm_config.hidden_size
        longest = esm_config.max_position_embeddings - 4
        esm_window = check_int(name, "esm_window", esm_window, 1)
        if esm_window > longest:
            raise ValueError(f"{name}: esm_window must lie in [1, {longest}], got {esm_window}")
        if esm_window_overlap is None:
            esm_window_overlap = esm_window // 4
        check_int(name, "esm_window_overlap", esm_window_overlap, 0)
        if esm_window_overlap >= esm_window:
            raise ValueError(f"{name}: esm_window_overlap must lie in [0, esm_window), got {esm_window_overlap}")
        check_float(name, "esm_learning_rate_ratio", esm_learning_rate_ratio, minimum=0.0)
        check_bool(name, "freeze_sequence_model", freeze_sequence_model)
        check_bool(name, "masked_residues_as_glycine", masked_residues_as_glycine)
        check_bool(name, "esm_split_chains", esm_split_chains)
        if not isinstance(esm_name_or_path, str):
            raise ValueError(f"{name}: esm_name_or_path must be a string, got {esm_name_or_path!r}")
        self.esm_config = esm_config
        self.gearnet_config = gearnet_config
        self.freeze_sequence_model = freeze_sequence_model
        self.esm_learning_rate_ratio = esm_learning_rate_ratio
        self.masked_residues_as_glycine = masked_residues_as_glycine
        self.esm_window = esm_window
        self.esm_window_overlap = esm_window_overlap
        self.esm_split_chains = esm_split_chains
        self.esm_name_or_path = esm_name_or_path
        self.level = "residue"
        set_head_options(self, kwargs)
        super().__init__(**kwargs)

    @property
    def output_dim(self) -> int:
        """Width of the residue and protein embeddings: ESM hidden size + GearNet output width."""
        return self.esm_config.hidden_size + self.gearnet_config.output_dim
