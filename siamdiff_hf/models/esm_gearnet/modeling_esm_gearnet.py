"""ESM-GearNet (Zhang et al. 2023, "series" fusion): ESM-2 residue embeddings are the node input of a GearNet.

Reads top-down: ESM windows (how sequences are cut for ESM and stitched back), pre-trained base, model,
parameter groups for fine-tuning.

Where ESM runs: in `build_graph`. The per-residue ESM embeddings become `ProteinGraph.node_features` (GearNet's
node input), so a graph carries its ESM half: `forward(graph=...)` (what SiamDiff calls, on
`graph.with_positions(noisy)`) needs no tokens and outputs ``concat(graph.node_features, GearNet(graph))``.
ESM is a function of the sequence only, so noisy coordinates never need it recomputed; when ESM is trainable the
node features keep their autograd history, so gradients reach ESM through the graph.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from transformers import EsmModel

from ...graph import Nodes, PackedResidues, ProteinGraph, scatter_rows
from ...protein.processor import esm_residue_tokens, esm_tokenizer
from ..gearnet import GearNetConfig, GearNetModel
from ..modeling_utils import ProteinPreTrainedModel
from ..outputs import ProteinEncoderOutput
from .configuration_esm_gearnet import DEFAULT_ESM_NAME, EsmGearNetConfig


@dataclass
class EsmWindows:
    """How the residues of a packed batch are cut into ESM sequences and stitched back.

    Attributes:
        start: (W,) packed index of the first residue of each window.
        length: (W,) residues in each window (at most `esm_window`).
        residue_window: (L,) the window whose embedding each residue takes.
        residue_token: (L,) the token position of each residue in that window (1 = first residue, after <cls>).
    """

    start: torch.Tensor
    length: torch.Tensor
    residue_window: torch.Tensor
    residue_token: torch.Tensor


def sequence_segments(batch: torch.Tensor, chain_index: torch.Tensor | None) -> torch.Tensor:
    """Return (S + 1,) boundaries of the runs of equal `batch` (and `chain_index`, if given): one ESM sequence each."""
    change = batch[1:] != batch[:-1]
    if chain_index is not None:
        change = change | (chain_index[1:] != chain_index[:-1])
    inner = torch.nonzero(change).flatten() + 1
    ends = batch.new_tensor([0, batch.shape[0]])
    return torch.cat([ends[:1], inner, ends[1:]])


def plan_windows(boundaries: torch.Tensor, window: int, overlap: int) -> EsmWindows:
    """Return the ESM windows of sequences given by (S + 1,) packed `boundaries`.

    A sequence of n <= `window` residues is one window. A longer one gets windows of exactly `window` residues
    starting every ``window - overlap`` residues, the last one flush with the sequence end. Each residue takes the
    embedding of the window whose centre is nearest (the earlier window on a tie): consecutive windows split their
    overlap at its middle, so no residue is dropped or counted twice and each keeps >= ``overlap // 2`` residues of
    context on both sides wherever the sequence has them.
    """
    starts, lengths, owned = [], [], []
    stride = window - overlap
    for begin, end in zip(boundaries[:-1].tolist(), boundaries[1:].tolist()):
        n = end - begin
        if n <= window:
            local = [0]
        else:
            local = [*range(0, n - window, stride), n - window]
        size = min(n, window)
        # window k owns local positions up to the midpoint of its centre and the next window's centre
        cuts = [(a + b + size - 1) // 2 + 1 for a, b in itertools.pairwise(local)]
        for lo, hi, s in zip([0, *cuts], [*cuts, n], local):
            starts.append(begin + s)
            lengths.append(size)
            owned.append(hi - lo)
    device = boundaries.device
    start = torch.tensor(starts, dtype=torch.long, device=device)
    length = torch.tensor(lengths, dtype=torch.long, device=device)
    residue_window = torch.repeat_interleave(
        torch.arange(len(starts), device=device), torch.tensor(owned, dtype=torch.long, device=device)
    )
    residue = torch.arange(residue_window.shape[0], device=device)
    return EsmWindows(start, length, residue_window, 1 + residue - start[residue_window])


def window_tokens(tokens: torch.Tensor, windows: EsmWindows) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (W, T) ESM input ids (``<cls>`` residues ``<eos>``, padded) and their (W, T) attention mask."""
    vocab = esm_tokenizer()
    num_windows = windows.start.shape[0]
    width = int(windows.length.max()) + 2 if num_windows else 2
    ids = tokens.new_full((num_windows, width), vocab.pad_token_id)
    window_of_token = torch.repeat_interleave(torch.arange(num_windows, device=tokens.device), windows.length)
    first = torch.cumsum(windows.length, 0) - windows.length
    position = torch.arange(window_of_token.shape[0], device=tokens.device) - first[window_of_token]
    ids[window_of_token, 1 + position] = tokens[windows.start[window_of_token] + position]
    ids[:, 0] = vocab.cls_token_id
    ids[torch.arange(num_windows, device=tokens.device), 1 + windows.length] = vocab.eos_token_id
    attention_mask = torch.arange(width, device=tokens.device) < (windows.length + 2).unsqueeze(-1)
    return ids, attention_mask.long()


class FrozenEsmCache:
    """The last ESM result of a frozen ESM, reused when the same token windows come again.

    SiamDiff encodes each protein twice per step (clean structure and conformer) with the same sequence, and ESM
    (650M parameters) dominates the cost of ESM-GearNet, so the second pass takes the first's output. Lifetime: one
    entry, owned by its `EsmGearNetModel` (`model.esm_cache`), replaced by the next different token batch, cleared by
    `clear()` (frees the (W, T, H) hidden states) and whenever ESM is frozen or unfrozen. An entry is valid only
    while the ESM weights are unchanged: it is keyed on every parameter's storage, dtype and in-place version
    counter (``Tensor._version``, bumped by `load_state_dict`, optimiser steps and any in-place edit).
    """

    def __init__(self) -> None:
        self.entry: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def clear(self) -> None:
        self.entry = None

    @staticmethod
    def weights_key(esm: nn.Module) -> tuple:
        return tuple((p.data_ptr(), p._version, p.dtype) for p in esm.parameters())

    def get(self, esm: nn.Module, ids: torch.Tensor) -> torch.Tensor | None:
        """Return the cached hidden states for `ids` under `esm`'s current weights, or None."""
        if self.entry is None:
            return None
        weights, cached_ids, hidden = self.entry
        same = cached_ids.shape == ids.shape and cached_ids.device == ids.device and torch.equal(cached_ids, ids)
        return hidden if same and weights == self.weights_key(esm) else None

    def put(self, esm: nn.Module, ids: torch.Tensor, hidden: torch.Tensor) -> None:
        self.entry = (self.weights_key(esm), ids, hidden)


class EsmGearNetPreTrainedModel(ProteinPreTrainedModel):
    """Weight initialisation and loading glue of ESM-GearNet (the ESM and GearNet halves keep their own init)."""

    config_class = EsmGearNetConfig
    base_model_prefix = "esm_gearnet"
    _no_split_modules = ["EsmLayer", "RelationalGraphConv"]


class EsmGearNetModel(EsmGearNetPreTrainedModel):
    """ESM-GearNet encoder: packed protein batch (+ ESM tokens) in, residue / protein embeddings out.

    Sub-modules: `esm` (transformers `EsmModel`, no pooling layer) and `gearnet` (residue `GearNetModel` over ESM
    features). Residue embedding = concat(ESM last hidden state, GearNet concat-hidden output); protein embedding
    = concat(mean of ESM over residues, GearNet readout (sum)). ESM sequences: one per chain (or per protein), cut
    into overlapping windows beyond `esm_window` residues (see `plan_windows`).

    With `freeze_sequence_model` ESM has `requires_grad=False`, runs under `torch.no_grad()`, stays in eval mode,
    and its output for the last token batch is reused while its weights are unchanged (`FrozenEsmCache`: SiamDiff
    encodes the same sequence twice per step). `set_esm_frozen(False)` makes it trainable (fine-tuning; see
    `parameter_groups`); the config keeps saying how the model is built and reloads.
    ESM's contact head is never used and never trained.
    """

    def __init__(self, config: EsmGearNetConfig):
        super().__init__(config)
        self.esm = EsmModel(config.esm_config, add_pooling_layer=False)
        self.gearnet = GearNetModel(config.gearnet_config)
        self.esm_cache = FrozenEsmCache()
        self._esm_frozen = bool(config.freeze_sequence_model)
        self.post_init()
        self.set_esm_frozen(config.freeze_sequence_model)

    @property
    def esm_frozen(self) -> bool:
        """Whether ESM is fixed: frozen by `set_esm_frozen` (initially the config's `freeze_sequence_model`), or no
        ESM parameter requires a gradient."""
        return self._esm_frozen or not any(p.requires_grad for p in self.esm.parameters())

    def set_esm_frozen(self, frozen: bool = True) -> None:
        """Freeze ESM (`requires_grad=False`, eval mode, no_grad) or make it trainable. The config is not changed:
        it describes the model as built and as `from_pretrained` rebuilds it (frozen or not)."""
        self._esm_frozen = bool(frozen)
        self.esm_cache.clear()
        self.esm.requires_grad_(not frozen)
        self.esm.contact_head.requires_grad_(False)  # never used by the encoder
        if frozen:
            self.esm.eval()

    def train(self, mode: bool = True) -> EsmGearNetModel:
        """Set train/eval mode; a frozen ESM stays in eval mode with `requires_grad=False`.

        The freeze is re-applied here because `from_pretrained` re-creates parameters (all trainable) and then calls
        `eval()`, also when this model is nested (e.g. the encoder of `SiamDiffForPreTraining`).
        """
        super().train(mode)
        if getattr(self, "esm", None) is not None:
            self.esm.contact_head.requires_grad_(False)
            if getattr(self, "_esm_frozen", self.config.freeze_sequence_model):
                self.esm.requires_grad_(False)
                self.esm.eval()
        return self

    @classmethod
    def from_esm_pretrained(
        cls, esm_name_or_path: str | Path = DEFAULT_ESM_NAME, gearnet_config: GearNetConfig | dict | None = None,
        esm_kwargs: dict | None = None, **config_kwargs,
    ) -> EsmGearNetModel:  # fmt: skip
        """Return an ESM-GearNet with pre-trained ESM-2 weights and a freshly initialised GearNet.

        Args:
            esm_name_or_path: a Hub id (default `facebook/esm2_t33_650M_UR50D`, needs the Hub or its cache) or a
                folder written by `EsmModel`/`EsmForMaskedLM.save_pretrained` or `siamdiff-hf convert-fair-esm`.
            gearnet_config: `GearNetConfig` or dict of the structure model (default: the paper's).
            esm_kwargs: extra keyword arguments of `EsmModel.from_pretrained` (`revision`, `cache_dir`, ...).
            config_kwargs: other `EsmGearNetConfig` arguments (`freeze_sequence_model`, `esm_window`, ...).
        """
        esm = EsmModel.from_pretrained(esm_name_or_path, add_pooling_layer=False, **(esm_kwargs or {}))
        config = EsmGearNetConfig(
            esm_config=esm.config.to_dict(), gearnet_config=gearnet_config, esm_name_or_path=str(esm_name_or_path),
            **config_kwargs,
        )  # fmt: skip
        model = cls(config)
        model.esm.load_state_dict(esm.state_dict(), strict=True)
        return model

    # --- ESM half -------------------------------------------------------------------------------------------------
    def esm_tokens(
        self,
        residue_type: torch.Tensor,
        masked_residues: torch.Tensor | None = None,
        esm_input_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return (L,) the ESM token of each residue: `esm_input_ids` or mapped from `residue_type`, masks applied."""
        if esm_input_ids is None:
            table = torch.as_tensor(esm_residue_tokens(), device=residue_type.device)
            tokens = table[residue_type.clamp(0, table.shape[0] - 1)]
        else:
            if esm_input_ids.shape != residue_type.shape:
                raise ValueError(
                    f"esm_input_ids must hold one token per residue, shape {tuple(residue_type.shape)}, got "
                    f"{tuple(esm_input_ids.shape)} (use ProteinStructureProcessor(include_esm_tokens=True))"
                )
            tokens = esm_input_ids.long()
        if masked_residues is not None:
            vocab = esm_tokenizer()
            hidden = vocab.convert_tokens_to_ids("G") if self.config.masked_residues_as_glycine else vocab.mask_token_id
            tokens = torch.where(masked_residues.bool(), hidden, tokens)
        return tokens

    def embed_sequences(
        self,
        residue_type: torch.Tensor,
        batch: torch.Tensor,
        chain_index: torch.Tensor | None = None,
        masked_residues: torch.Tensor | None = None,
        esm_input_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return (L, H) the ESM last hidden state (after the final LayerNorm) of every residue of a packed batch.

        Args:
            residue_type: (L,) residue ids; used for the tokens when `esm_input_ids` is None.
            batch: (L,) protein index. chain_index: (L,) chain id (one ESM sequence per chain unless
                `esm_split_chains=False`).
            masked_residues: (L,) bool, residues hidden from the model (as 'G' or `<mask>`, see the config).
            esm_input_ids: (L,) ESM token per residue, the processor's ``esm_input_ids``.
        """
        tokens = self.esm_tokens(residue_type, masked_residues, esm_input_ids)
        if tokens.shape[0] == 0:
            return self.esm.embeddings.word_embeddings.weight.new_zeros(0, self.config.esm_config.hidden_size)
        boundaries = sequence_segments(batch, chain_index if self.config.esm_split_chains else None)
        windows = plan_windows(boundaries, self.config.esm_window, self.config.esm_window_overlap)
        ids, attention_mask = window_tokens(tokens, windows)
        hidden = self._run_esm(ids, attention_mask)
        return hidden[windows.residue_window, windows.residue_token]

    def _run_esm(self, ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Return (W, T, H) ESM last hidden states; a frozen ESM reuses its last result for identical inputs."""
        if not self.esm_frozen:
            return self.esm(input_ids=ids, attention_mask=attention_mask).last_hidden_state
        hidden = self.esm_cache.get(self.esm, ids)
        if hidden is None:
            with torch.no_grad():
                hidden = self.esm(input_ids=ids, attention_mask=attention_mask).last_hidden_state
            self.esm_cache.put(self.esm, ids, hidden)
        return hidden

    # --- graph and forward ----------------------------------------------------------------------------------------
    def edges(
        self,
        residues: PackedResidues,
        nodes: Nodes,
        esm_input_ids: torch.Tensor | None = None,
        edge_index: torch.Tensor | None = None,
        edge_type: torch.Tensor | None = None,
    ) -> ProteinGraph:
        """Return GearNet's residue graph whose `node_features` are the (L, H) ESM embeddings of the residues.

        `esm_input_ids` (L,) are the processor's (optional: mapped from `residue_type` when absent); masked
        residues and residues with hidden types reach ESM as 'G' or `<mask>` (`masked_residues_as_glycine`). ESM
        runs here, with gradients only when it is trainable.
        """
        graph = self.gearnet.edges(residues, nodes, edge_index=edge_index, edge_type=edge_type)
        features = self.embed_sequences(
            residues.residue_type, residues.batch, residues.chain_index, residues.type_hidden, esm_input_ids
        )
        return replace(graph, node_features=features)

    def forward(
        self,
        residue_type: torch.Tensor | None = None,
        atom_positions: torch.Tensor | None = None,
        atom_mask: torch.Tensor | None = None,
        batch: torch.Tensor | None = None,
        residue_index: torch.Tensor | None = None,
        chain_index: torch.Tensor | None = None,
        esm_input_ids: torch.Tensor | None = None,
        edge_index: torch.Tensor | None = None,
        edge_type: torch.Tensor | None = None,
        graph: ProteinGraph | None = None,
        hidden_residue_types: torch.Tensor | None = None,
        pooling: str | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ProteinEncoderOutput | tuple:
        """Encode a packed batch (the processor's outputs) or a `ProteinGraph` from `build_graph`.

        Returns `ProteinEncoderOutput`: `node_embeddings` = `residue_embeddings` (L, H + G) = concat(ESM, GearNet),
        `protein_embeddings` (B, H + G) (see `readout`), `batch` (L,), `node_batch` (L,), `node_residue` (L,), and
        `hidden_states` (ESM embeddings, then each GearNet layer) when asked. `hidden_residue_types` (L,) bool hides
        those residues' types from ESM and GearNet (see `build_graph`).
        """
        graph = self.graph_from_inputs(
            graph, residue_type, atom_positions, atom_mask, batch, residue_index, chain_index,
            hidden_residue_types=hidden_residue_types, esm_input_ids=esm_input_ids, edge_index=edge_index,
            edge_type=edge_type,
        )  # fmt: skip
        hidden_states = self.gearnet.encode(graph)
        structure = self.gearnet.node_embeddings(hidden_states)
        node_embeddings = torch.cat([graph.node_features.to(structure.dtype), structure], dim=-1)
        return self.encoder_output(
            graph, node_embeddings, hidden_states, batch=batch, pooling=pooling,
            output_hidden_states=output_hidden_states, return_dict=return_dict,
        )  # fmt: skip

    def readout(self, graph: ProteinGraph, node_embeddings: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        """Return (B, H + G) protein embeddings.

        Default: concat(mean of the ESM half over residues, GearNet's readout (sum) of the structure half): the
        official series fusion concatenates both models' graph features (ESM-GearNet `gearnet/model.py`
        `FusionNetwork`), ESM's readout defaulting to mean (TorchDrug 0.2.1 `torchdrug/models/esm.py`). With
        `pooling` ``"sum"`` or ``"mean"``, that one reduction over the whole residue embedding.
        """
        if pooling is not None:
            return super().readout(graph, node_embeddings, pooling)
        esm_width = self.config.esm_config.hidden_size
        return torch.cat(
            [
                scatter_rows(node_embeddings[:, :esm_width], graph.node_batch, graph.num_graphs, "mean"),
                self.gearnet.readout(graph, node_embeddings[:, esm_width:]),
            ],
            dim=-1,
        )

    def parameter_groups(self, learning_rate: float, esm_learning_rate_ratio: float | None = None) -> list[dict]:
        """Return optimiser parameter groups: ESM at ``learning_rate * esm_learning_rate_ratio``, the rest at
        ``learning_rate`` (see `esm_parameter_groups`)."""
        return esm_parameter_groups(self, learning_rate, esm_learning_rate_ratio)


def esm_parameter_groups(
    model: nn.Module, learning_rate: float, esm_learning_rate_ratio: float | None = None
) -> list[dict]:
    """Return optimiser parameter groups of any model holding ESM-GearNet encoders (e.g. a task head model).

    Trainable parameters only (frozen ESM never reaches the optimiser). ESM parameters of every `EsmGearNetModel`
    inside `model` get ``learning_rate * ratio`` (ratio: the argument, else the encoder's
    `esm_learning_rate_ratio`, official fine-tuning 0.1); ratio 0 leaves them out. Empty groups are dropped.
    Use as ``torch.optim.Adam(esm_parameter_groups(model, 1e-4))``.
    """
    esm_params: dict[int, float] = {}
    for module in model.modules():
        if isinstance(module, EsmGearNetModel):
            ratio = esm_learning_rate_ratio
            if ratio is None:
                ratio = module.config.esm_learning_rate_ratio
            esm_params.update({id(p): ratio for p in module.esm.parameters()})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in esm_params]
    by_ratio: dict[float, list[nn.Parameter]] = {}
    for p in model.parameters():
        if p.requires_grad and id(p) in esm_params and esm_params[id(p)] > 0:
            by_ratio.setdefault(esm_params[id(p)], []).append(p)
    groups = [{"params": rest, "lr": learning_rate}] if rest else []
    groups += [{"params": params, "lr": learning_rate * ratio} for ratio, params in by_ratio.items()]
    return groups


# --- fine-tuning heads (written once in models/heads.py; thin subclasses here) ----------------------------------
from ..heads import (  # noqa: E402
    PairClassificationModel,
    ProteinClassificationModel,
    ProteinTaskModel,
    ResidueClassificationModel,
)


class EsmGearNetTaskModel(ProteinTaskModel):
    """ESM-GearNet specifics of the heads: ESM trains at `esm_learning_rate_ratio` (official fine-tuning 0.1).

    ESM is frozen when the ratio is 0 (ESM-GearNet's `_freeze` configs) or with `freeze_encoder`, trainable
    otherwise; `freeze_sequence_model` is set to match, so an encoder exported from pre-training (where ESM is
    frozen) fine-tunes as the official code does. `parameter_groups` gives ESM its learning rate.
    """

    def __init__(self, config: EsmGearNetConfig):
        config.freeze_sequence_model = bool(config.freeze_encoder or config.esm_learning_rate_ratio == 0)
        super().__init__(config)

    def parameter_groups(self, learning_rate: float) -> list[dict]:
        """Return parameter groups: ESM at ``learning_rate * esm_learning_rate_ratio``, the rest at `learning_rate`."""
        return esm_parameter_groups(self, learning_rate)


class EsmGearNetForProteinClassification(EsmGearNetTaskModel, ProteinClassificationModel, EsmGearNetPreTrainedModel):
    """ESM-GearNet with an MLP on the protein embedding (EC, GO, PSR); `AutoModelForSequenceClassification`."""

    encoder_class = EsmGearNetModel


class EsmGearNetForResidueClassification(EsmGearNetTaskModel, ResidueClassificationModel, EsmGearNetPreTrainedModel):
    """ESM-GearNet with an MLP on each residue embedding (RES); `AutoModelForTokenClassification`."""

    encoder_class = EsmGearNetModel


class EsmGearNetForPairClassification(EsmGearNetTaskModel, PairClassificationModel, EsmGearNetPreTrainedModel):
    """ESM-GearNet on two structures, pooled over selected residues, then an MLP (MSP)."""

    encoder_class = EsmGearNetModel
