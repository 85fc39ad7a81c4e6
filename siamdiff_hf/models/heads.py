"""Fine-tuning heads, written once for every encoder: protein-, residue- and pair-level prediction.

The official downstream tasks (SiamDiff `siamdiff/task.py`, TorchDrug 0.2.1 `torchdrug/tasks/property_prediction.py`)
put one `MultiLayerPerceptron` (TorchDrug `torchdrug/layers/common.py`) on an encoder output:
- protein level (EC, GO, PSR): the encoder's protein embedding (its own readout);
- residue level (RES): each residue's node (atom level: the node at its CA atom);
- pair level (MSP, PIP): the same encoder on both structures; each side pooled over selected residues (MSP: mean
  over the nodes of the mutated residues; PIP: the node at the chosen residue's CA atom), concatenated, then MLP.

Losses follow transformers' `problem_type` semantics (`EsmForSequenceClassification`): `regression` (MSE),
`single_label_classification` (cross-entropy), `multi_label_classification` (BCE with logits), inferred from
`num_labels` and the label dtype when unset. Residue labels of -100 are ignored. Each encoder gets thin
subclasses (`GearNetForProteinClassification`, ...) at the end of its modeling file; the encoder sits under the
encoder's `base_model_prefix`, so `from_pretrained(encoder_dir, num_labels=...)` loads every encoder weight and
initialises only the MLP.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput
from transformers.utils import ModelOutput

from ..graph import scatter_rows
from ..protein.constants import CA_INDEX, IGNORE_INDEX
from .configuration_heads import PROBLEM_TYPES
from .modeling_utils import ProteinPreTrainedModel


class MultiLayerPerceptron(nn.Module):
    """TorchDrug's `MultiLayerPerceptron` as the downstream tasks build it: Linear layers with ReLU in between.

    No batch norm, no short cut; dropout (default off) after each hidden activation, as TorchDrug places it. Module
    names (`layers.{i}`) match TorchDrug's, so an official task's ``mlp.*`` weights map 1:1.
    """

    def __init__(self, input_dim: int, dims: list[int], dropout: float = 0.0):
        super().__init__()
        widths = [input_dim, *dims]
        self.layers = nn.ModuleList(nn.Linear(widths[i], widths[i + 1]) for i in range(len(dims)))
        self.dropout = nn.Dropout(dropout) if dropout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (..., input_dim) to (..., dims[-1])."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
                if self.dropout is not None:
                    x = self.dropout(x)
        return x


def ca_nodes(atom_mask: torch.Tensor, level: str, num_nodes: int) -> torch.Tensor:
    """Return (L,) the node of each residue's CA atom: the residue itself at residue level, else its atom node.

    Atom-level nodes are the present atoms in ``atom_mask.nonzero()`` order (every encoder's convention), so the CA
    node of residue r is the number of present atoms before (r, CA).
    """
    if level == "residue":
        return torch.arange(atom_mask.shape[0], device=atom_mask.device)
    if int(atom_mask.sum()) != num_nodes:
        raise ValueError(f"atom_mask has {int(atom_mask.sum())} atoms but the encoder returned {num_nodes} nodes")
    before = torch.cumsum(atom_mask.reshape(-1).long(), 0) - 1
    return before.view(atom_mask.shape)[:, CA_INDEX]


def _check_labels(labels: torch.Tensor, problem_type: str, num_rows: int, num_labels: int, what: str) -> torch.Tensor:
    """Return `labels` reshaped for the loss of `problem_type`, or raise a one-line error naming `labels`."""
    floating = labels.is_floating_point()
    if problem_type == "single_label_classification":
        if floating or labels.dtype == torch.bool or labels.is_complex():
            raise ValueError(
                f"labels must be integer class ids for problem_type='single_label_classification', got {labels.dtype}"
            )
        if labels.numel() != num_rows:
            raise ValueError(f"labels must hold one class id per {what} ({num_rows}), got shape {tuple(labels.shape)}")
        labels = labels.reshape(num_rows).long()
        valid = labels != IGNORE_INDEX
        if valid.any() and (int(labels[valid].min()) < 0 or int(labels[valid].max()) >= num_labels):
            raise ValueError(f"labels must lie in [0, {num_labels}) (num_labels) or be -100, got values outside")
        return labels
    if not floating:
        raise ValueError(f"labels must be floating point for problem_type={problem_type!r}, got {labels.dtype}")
    if labels.numel() != num_rows * num_labels or (num_labels > 1 and labels.shape[-1] != num_labels):
        raise ValueError(
            f"labels must have shape ({num_rows}, {num_labels}) ({what}s x num_labels) for problem_type="
            f"{problem_type!r}, got {tuple(labels.shape)}"
        )
    return labels.reshape(num_rows, num_labels)


class ProteinTaskModel(ProteinPreTrainedModel):
    """What the three head kinds share: the encoder under `base_model_prefix`, the MLP, losses, freezing.

    Subclasses set `encoder_class` (and inherit `config_class` / `base_model_prefix` from the encoder's
    pre-trained base class).
    """

    encoder_class: ClassVar[type[nn.Module]]
    #: the transformers output class, and what one row of logits (and of labels) is: "protein", "residue" or "pair"
    output_class: ClassVar[type[ModelOutput]]
    label_unit: ClassVar[str]
    #: input width of the MLP in multiples of the encoder width (2 for pairs: both sides concatenated)
    head_input_factor: ClassVar[int] = 1

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        setattr(self, self.base_model_prefix, self.encoder_class(config))
        width = config.output_dim
        dims = [width] * (config.num_mlp_layer - 1) + [config.num_labels]
        self.mlp = MultiLayerPerceptron(self.head_input_factor * width, dims, config.classifier_dropout)
        self.post_init()
        self.train(self.training)  # applies `freeze_encoder`

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load as transformers does; a `num_labels` that contradicts a saved head fails at once, naming it."""
        config = kwargs.get("config")
        num_labels = kwargs.get("num_labels", config.num_labels if isinstance(config, PretrainedConfig) else None)
        if num_labels is not None and not kwargs.get("ignore_mismatched_sizes"):
            hub = ("cache_dir", "revision", "token", "local_files_only", "subfolder", "force_download", "proxies")
            saved, _ = PretrainedConfig.get_config_dict(
                pretrained_model_name_or_path, **{k: kwargs[k] for k in hub if k in kwargs}
            )
            is_head = any(str(a).endswith("Classification") for a in saved.get("architectures") or [])
            saved_labels = len(saved["id2label"]) if saved.get("id2label") else saved.get("num_labels")
            if is_head and saved_labels is not None and saved_labels != num_labels:
                raise ValueError(
                    f"num_labels={num_labels} does not match the checkpoint {pretrained_model_name_or_path}, whose "
                    f"head predicts {saved_labels} labels: pass num_labels={saved_labels}, or "
                    "ignore_mismatched_sizes=True to re-initialise the head's last layer"
                )
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    # --- freezing and optimiser groups ---
    def train(self, mode: bool = True) -> ProteinTaskModel:
        """Set train/eval mode; a frozen encoder (`freeze_encoder`) stays in eval mode with `requires_grad=False`.

        Re-applied here because `from_pretrained` re-creates parameters (trainable) and then calls `eval()`.
        """
        super().train(mode)
        encoder = getattr(self, self.base_model_prefix, None)
        if encoder is not None and self.config.freeze_encoder:
            encoder.requires_grad_(False)
            encoder.eval()
        return self

    def parameter_groups(self, learning_rate: float) -> list[dict]:
        """Return optimiser parameter groups (trainable parameters at `learning_rate`); ESM-GearNet adds its ratio.

        Use with Trainer as ``optimizers=(torch.optim.Adam(model.parameter_groups(1e-4)), None)``.
        """
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": learning_rate}]

    # --- encoder ---
    @functools.cached_property
    def _encoder_arguments(self) -> frozenset[str]:
        return frozenset(inspect.signature(self.base_model.forward).parameters)

    def run_encoder(
        self,
        residue_type: torch.Tensor | None,
        atom_positions: torch.Tensor | None,
        atom_mask: torch.Tensor | None,
        batch: torch.Tensor | None,
        chain_index: torch.Tensor | None = None,
        residue_index: torch.Tensor | None = None,
        esm_input_ids: torch.Tensor | None = None,
        hidden_residue_types: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        suffix: str = "",
    ):
        """Return the encoder's output on one packed batch; `None` optional inputs are left out, inputs the
        encoder does not take are named (with `suffix`, a pair side's) in an error, as are missing required ones."""
        optional = dict(chain_index=chain_index, residue_index=residue_index, esm_input_ids=esm_input_ids,
                        hidden_residue_types=hidden_residue_types)  # fmt: skip
        inputs = {k: v for k, v in optional.items() if v is not None}
        unknown = sorted(set(inputs) - self._encoder_arguments)
        if unknown:
            names = ", ".join(f"{k}{suffix}" for k in unknown)
            raise ValueError(f"{names}: not an input of {type(self.base_model).__name__}")
        for name, value in (("residue_type", residue_type), ("atom_positions", atom_positions),
                            ("atom_mask", atom_mask), ("batch", batch)):  # fmt: skip
            if value is None:
                raise ValueError(f"{name}{suffix} is required (the processor's / collator's packed tensors)")
        context = torch.no_grad() if self.config.freeze_encoder else contextlib.nullcontext()
        with context:
            return self.base_model(
                residue_type=residue_type, atom_positions=atom_positions, atom_mask=atom_mask, batch=batch,
                output_hidden_states=output_hidden_states, return_dict=True, **inputs,
            )  # fmt: skip

    # --- loss ---
    def problem_type_for(self, labels: torch.Tensor) -> str:
        """Return `config.problem_type`, inferring (and storing) it as transformers does when unset."""
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif self.num_labels > 1 and labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        elif self.config.problem_type not in PROBLEM_TYPES:  # set on the config after it was built
            raise ValueError(f"problem_type must be one of {PROBLEM_TYPES} or None, got {self.config.problem_type!r}")
        return self.config.problem_type

    def _regression_scale(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Return (mean, std) of the configured target standardisation as tensors, or None."""
        if self.config.regression_mean is None:
            return None
        mean = torch.as_tensor(self.config.regression_mean, dtype=like.dtype, device=like.device)
        std = torch.as_tensor(self.config.regression_std, dtype=like.dtype, device=like.device)
        return mean, std

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Return the MLP's logits, de-standardised (``* std + mean``) when `regression_mean`/`_std` are set."""
        logits = self.mlp(features)
        scale = self._regression_scale(logits)
        if scale is not None:
            if self.config.problem_type not in (None, "regression"):
                raise ValueError(f"regression_mean/regression_std need problem_type='regression', got "
                                 f"{self.config.problem_type!r}")  # fmt: skip
            logits = logits * scale[1] + scale[0]
        return logits

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, what: str) -> torch.Tensor:
        """Return the loss of (N, num_labels) `logits` for `labels`; residue rows labelled -100 are ignored."""
        if not isinstance(labels, torch.Tensor):
            raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        problem_type = self.problem_type_for(labels)
        labels = _check_labels(labels.to(logits.device), problem_type, logits.shape[0], self.num_labels, what)
        if problem_type == "single_label_classification":
            return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        if what == "residue":
            keep = (labels != IGNORE_INDEX).all(-1)
            logits, labels = logits[keep], labels[keep]
        labels = labels.to(logits.dtype)
        if problem_type == "regression":
            scale = self._regression_scale(logits)
            if scale is not None:  # official PSR: MSE between standardised prediction and target
                return F.mse_loss((logits - scale[0]) / scale[1], (labels - scale[0]) / scale[1])
            return F.mse_loss(logits, labels)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def head_output(self, features: torch.Tensor, labels: torch.Tensor | None, return_dict: bool | None,
                    hidden_states: tuple | None = None) -> ModelOutput | tuple:  # fmt: skip
        """Return the head's output for MLP inputs `features` (rows = `label_unit`s): logits, and the loss first
        when `labels` are given; a tuple unless `return_dict` (default: the config's)."""
        logits = self.predict(features)
        loss = self.loss(logits, labels, self.label_unit) if labels is not None else None
        output = self.output_class(loss=loss, logits=logits, hidden_states=hidden_states)
        use_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if use_dict else output.to_tuple()


class ProteinClassificationModel(ProteinTaskModel):
    """Protein-level head (EC, GO: multi-label; PSR: regression): MLP on the encoder's protein embedding.

    Registered with `AutoModelForSequenceClassification`. Returns `SequenceClassifierOutput` with `logits`
    (B, num_labels) and, given `labels` ((B, num_labels) float for multi-label / regression, (B,) also for one
    label; (B,) integer for single-label), `loss` first.
    """

    output_class = SequenceClassifierOutput
    label_unit = "protein"

    def forward(
        self,
        residue_type: torch.Tensor | None = None,
        atom_positions: torch.Tensor | None = None,
        atom_mask: torch.Tensor | None = None,
        batch: torch.Tensor | None = None,
        chain_index: torch.Tensor | None = None,
        residue_index: torch.Tensor | None = None,
        esm_input_ids: torch.Tensor | None = None,
        hidden_residue_types: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        """Predict one row of logits per protein of a packed batch (the processor's or collator's tensors)."""
        encoded = self.run_encoder(residue_type, atom_positions, atom_mask, batch, chain_index, residue_index,
                                   esm_input_ids, hidden_residue_types, output_hidden_states)  # fmt: skip
        return self.head_output(encoded.protein_embeddings, labels, return_dict, encoded.hidden_states)


class ResidueClassificationModel(ProteinTaskModel):
    """Residue-level head (RES): MLP on each residue's node (`residue_pooling`: CA node, or mean of its nodes).

    Registered with `AutoModelForTokenClassification`. Returns `TokenClassifierOutput` with packed `logits`
    (L, num_labels), one row per residue of the batch, and `loss` given `labels` (L,) (-100 = not scored).
    """

    output_class = TokenClassifierOutput
    label_unit = "residue"

    def forward(
        self,
        residue_type: torch.Tensor | None = None,
        atom_positions: torch.Tensor | None = None,
        atom_mask: torch.Tensor | None = None,
        batch: torch.Tensor | None = None,
        chain_index: torch.Tensor | None = None,
        residue_index: torch.Tensor | None = None,
        esm_input_ids: torch.Tensor | None = None,
        hidden_residue_types: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> TokenClassifierOutput | tuple:
        """Predict one row of logits per residue of a packed batch."""
        encoded = self.run_encoder(residue_type, atom_positions, atom_mask, batch, chain_index, residue_index,
                                   esm_input_ids, hidden_residue_types, output_hidden_states)  # fmt: skip
        if self.config.residue_pooling == "ca":
            nodes = ca_nodes(atom_mask, self.config.level, encoded.node_embeddings.shape[0])
            features = encoded.node_embeddings[nodes]
        else:
            features = encoded.residue_embeddings
        return self.head_output(features, labels, return_dict, encoded.hidden_states)


class PairClassificationModel(ProteinTaskModel):
    """Pair-level head (MSP, PIP): one encoder on both structures, each pooled over its selected residues.

    Inputs: each side's packed tensors with suffix `_1` / `_2` (the collator's pair batches), plus
    `selection_{1,2}` (S,) packed residue rows to pool and `selection_batch_{1,2}` (S,) their pair index (optional:
    read off `batch`). `pair_pooling`: `"mean"` over the nodes of the selected residues (MSP, as SiamDiff's `MSP`),
    `"ca"` the selected residues' CA nodes (PIP). MLP input = concat(side 1, side 2). The official tasks run the
    shared encoder once per side (so batch norm sees each side's batch alone); so does this head.

    Binary tasks: ``num_labels=1, problem_type="multi_label_classification"`` with (B,) float 0/1 labels. Returns
    `SequenceClassifierOutput` with `logits` (B, num_labels) (no `hidden_states`).
    """

    output_class = SequenceClassifierOutput
    label_unit = "pair"
    head_input_factor = 2
    main_input_name = "residue_type_1"

    def forward(
        self,
        residue_type_1: torch.Tensor | None = None,
        atom_positions_1: torch.Tensor | None = None,
        atom_mask_1: torch.Tensor | None = None,
        batch_1: torch.Tensor | None = None,
        selection_1: torch.Tensor | None = None,
        residue_type_2: torch.Tensor | None = None,
        atom_positions_2: torch.Tensor | None = None,
        atom_mask_2: torch.Tensor | None = None,
        batch_2: torch.Tensor | None = None,
        selection_2: torch.Tensor | None = None,
        selection_batch_1: torch.Tensor | None = None,
        selection_batch_2: torch.Tensor | None = None,
        chain_index_1: torch.Tensor | None = None,
        chain_index_2: torch.Tensor | None = None,
        residue_index_1: torch.Tensor | None = None,
        residue_index_2: torch.Tensor | None = None,
        esm_input_ids_1: torch.Tensor | None = None,
        esm_input_ids_2: torch.Tensor | None = None,
        hidden_residue_types_1: torch.Tensor | None = None,
        hidden_residue_types_2: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        """Predict one row of logits per pair (side 1, side 2)."""
        sides = (  # (suffix, the encoder's inputs in `run_encoder` order, the residues to pool)
            ("_1", (residue_type_1, atom_positions_1, atom_mask_1, batch_1, chain_index_1, residue_index_1,
                    esm_input_ids_1, hidden_residue_types_1), selection_1, selection_batch_1),
            ("_2", (residue_type_2, atom_positions_2, atom_mask_2, batch_2, chain_index_2, residue_index_2,
                    esm_input_ids_2, hidden_residue_types_2), selection_2, selection_batch_2),
        )  # fmt: skip
        num_pairs = [None if b is None else (int(b.max()) + 1 if b.numel() else 0) for b in (batch_1, batch_2)]
        if num_pairs[0] != num_pairs[1]:
            raise ValueError(f"batch_1 holds {num_pairs[0]} structures but batch_2 {num_pairs[1]}: one pair each")
        pooled = []
        for suffix, side, selection, selection_batch in sides:
            encoded = self.run_encoder(*side, suffix=suffix)
            pooled.append(self.pool(encoded, side[2], side[3], selection, selection_batch, num_pairs[0], suffix))
        return self.head_output(torch.cat(pooled, dim=-1), labels, return_dict)

    def pool(self, encoded, atom_mask, batch, selection, selection_batch, num_pairs: int, suffix: str) -> torch.Tensor:
        """Return (B, D) each pair's embedding on one side: its selected residues pooled by `pair_pooling`."""
        if selection is None:
            raise ValueError(f"selection{suffix} is required: the residue rows each pair pools (packed)")
        selection = selection.long().reshape(-1)
        num_residues = batch.shape[0]
        if selection.numel() and (int(selection.min()) < 0 or int(selection.max()) >= num_residues):
            raise ValueError(f"selection{suffix} must index the {num_residues} packed residues of batch{suffix}")
        if selection_batch is None:
            selection_batch = batch[selection]
        elif selection_batch.shape != selection.shape or not torch.equal(selection_batch.long(), batch[selection]):
            raise ValueError(f"selection_batch{suffix} disagrees with batch{suffix}[selection{suffix}]")
        counts = torch.bincount(selection_batch.long(), minlength=num_pairs)
        if bool((counts == 0).any()):
            empty = int(torch.nonzero(counts == 0)[0])
            raise ValueError(f"selection{suffix} selects no residue of pair {empty}: every pair needs one or more")
        nodes = encoded.node_embeddings
        if self.config.pair_pooling == "ca":
            ca = ca_nodes(atom_mask, self.config.level, nodes.shape[0])[selection]
            return scatter_rows(nodes[ca], selection_batch.long(), num_pairs, "mean")
        selected = torch.zeros(num_residues, dtype=torch.bool, device=nodes.device)
        selected[selection] = True
        chosen = selected[encoded.node_residue]
        return scatter_rows(nodes[chosen], encoded.node_batch[chosen], num_pairs, "mean")
