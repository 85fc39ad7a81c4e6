"""`ProteinDataCollator`: dataset rows (plain arrays) -> one packed batch with labels, for `transformers.Trainer`.

Rows follow the downstream schema of `siamdiff_hf.data` (`load_downstream`):
- one-structure rows (EC, GO, PSR, RES): ``residue_type``, ``atom_positions``, ``atom_mask``, ``chain_id`` (and
  the other `Protein` columns), ``labels`` (multi-hot list, a scalar, or per-residue ids with -100), and RES's
  ``hidden_residue_types`` (per-residue bool);
- pair rows (MSP, PIP): the same columns with suffixes ``_1`` / ``_2``, ``selection_1`` / ``selection_2``
  (residue rows of each side to pool) and a scalar ``labels``.

The batch is the processor's packed tensors (``residue_type``, ``atom_positions``, ``atom_mask``, ``batch``,
``chain_index``, optionally ``esm_input_ids``; suffixed per side for pairs) plus ``labels``,
``hidden_residue_types`` and, for pairs, ``selection_{1,2}`` (packed residue rows) with ``selection_batch_{1,2}``
(their pair index): exactly the keyword arguments of the heads in `siamdiff_hf.models.heads`.

With Trainer, set ``TrainingArguments(remove_unused_columns=False)``: Trainer otherwise drops every column that is
not a `forward` argument, ``chain_id`` among them, and the collator stops with an error saying so (without chain
ids, chain breaks would silently become sequence neighbours).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from siamdiff_hf.protein import Protein, ProteinStructureProcessor
from siamdiff_hf.protein.constants import IGNORE_INDEX

STRUCTURE_COLUMNS = ("id", "residue_type", "atom_positions", "atom_mask", "chain_id", "residue_number",
                     "insertion_code", "b_factor")  # fmt: skip
REQUIRED_COLUMNS = ("residue_type", "atom_positions", "atom_mask", "chain_id")
HIDDEN = "hidden_residue_types"


class ProteinDataCollator:
    """Collate downstream rows into the packed batch the fine-tuning heads take (a Trainer `data_collator`).

    Args:
        processor: parses and packs the structures (`ProteinStructureProcessor`; default: one with no crop). Its
            ``crop_length`` / ``random_crop`` crop one-structure rows, keeping per-residue ``labels`` and
            ``hidden_residue_types`` aligned with the window; windows always contain the labelled residues (RES:
            the target; residue labels other than -100, or hidden residues), centred on the first of them if
            they span more than ``crop_length``. Pair rows are cropped the same way around their selections (one
            shared window when both sides have the same length and selections, as for MSP's wild type and
            mutant). ``processor.chain`` must be None (select chains in the dataset).
        label_level: ``"protein"`` (one label or label vector per row), ``"residue"`` (one label per residue),
            or None to infer: an integer list as long as the protein is per-residue, anything else per row.
        generator: random crops: an int seed or numpy Generator (one stream for the collator), or None for torch's
            global RNG (seeded by Trainer, distinct in each DataLoader worker).

    Labels: multi-hot and float labels become float32, integer labels int64 (per-residue: packed (L,) with -100
    where unlabelled); pair labels (B,) by the same rule (MSP, PIP rows: float 0/1, hence float32).
    """

    def __init__(
        self,
        processor: ProteinStructureProcessor | None = None,
        label_level: str | None = None,
        generator: int | np.random.Generator | None = None,
    ):
        self.processor = processor if processor is not None else ProteinStructureProcessor()
        if getattr(self.processor, "chain", None) is not None:
            raise ValueError("processor: chain selection is not supported by the collator (per-residue labels would "
                             "misalign); select chains when building the dataset")  # fmt: skip
        if label_level not in (None, "protein", "residue"):
            raise ValueError(f"label_level must be 'protein', 'residue' or None, got {label_level!r}")
        self.label_level = label_level
        if isinstance(generator, int | np.integer) and not isinstance(generator, bool):
            generator = np.random.default_rng(int(generator))
        self.generator = generator

    # --- entry point ---
    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Return the packed batch of a list of rows (all one-structure rows, or all pair rows)."""
        rows = list(rows)
        if not rows:
            raise ValueError("rows: cannot collate an empty list")
        is_pair = ["residue_type_1" in row for row in rows]
        if any(is_pair) != all(is_pair):
            raise ValueError("rows: a batch mixes one-structure rows and pair rows (residue_type_1 / residue_type_2)")
        suffixes = ("_1", "_2") if is_pair[0] else ("",)
        sides: dict[str, list[Protein]] = {s: [] for s in suffixes}
        per_residue: dict[str, list[np.ndarray]] = {}
        selections: dict[str, list[np.ndarray]] = {s: [] for s in suffixes if s}
        labels: list[Any] = []
        for index, row in enumerate(rows):
            name = _row_name(row, index)
            proteins = [self._protein(row, suffix, index, name) for suffix in suffixes]
            residue_fields = [self._per_residue_fields(row, suffix, p.length, name) for suffix, p in
                              zip(suffixes, proteins)]  # fmt: skip
            if is_pair[0]:
                keeps = [self._selection(row, suffix, p.length, name) for suffix, p in zip(suffixes, proteins)]
            else:
                keeps = [_labelled_rows(residue_fields[0])]
            starts = self._window_starts([p.length for p in proteins], keeps)
            for suffix, protein, fields, keep, start in zip(suffixes, proteins, residue_fields, keeps, starts):
                window = slice(None) if start is None else slice(start, start + self.processor.crop_length)
                sides[suffix].append(protein if start is None else protein.take(window))
                for key, value in fields.items():
                    per_residue.setdefault(key, []).append(value[window])
                if suffix:
                    selections[suffix].append(keep - (start or 0))
            if "labels" in row and row["labels"] is not None:
                labels.append(row["labels"])
            elif labels:
                raise ValueError(f"{name}: no labels, but earlier rows of the batch have them")
        if labels and len(labels) != len(rows):
            raise ValueError(f"{_row_name(rows[0], 0)}: no labels, but later rows of the batch have them")
        return self._batch(sides, per_residue, selections, labels)

    # --- rows -> proteins ---
    def _protein(self, row: dict[str, Any], suffix: str, index: int, name: str) -> Protein:
        missing = [c + suffix for c in REQUIRED_COLUMNS if c + suffix not in row]
        if missing:
            raise ValueError(
                f"{name}: no {', '.join(map(repr, missing))} column(s); with transformers.Trainer set "
                "TrainingArguments(remove_unused_columns=False) (Trainer drops columns that are not forward arguments)"
            )
        structure = {c: row[c + suffix] for c in STRUCTURE_COLUMNS if c + suffix in row}
        structure.setdefault("id", name)
        return self.processor.to_protein(structure, index)

    def _per_residue_fields(self, row: dict[str, Any], suffix: str, length: int, name: str) -> dict[str, np.ndarray]:
        """Return the row's per-residue columns of one side: hidden flags, and per-residue labels (not for pairs)."""
        fields = {}
        if row.get(HIDDEN + suffix) is not None:
            fields[HIDDEN + suffix] = np.asarray(row[HIDDEN + suffix], dtype=bool).reshape(-1)
        if not suffix and row.get("labels") is not None and self._is_residue_label(row["labels"], length):
            fields["labels"] = np.asarray(row["labels"])
        for key, value in fields.items():
            if value.ndim == 0 or value.shape[0] != length:
                count = value.shape[0] if value.ndim else "no per-residue"
                raise ValueError(f"{name}: {key} has {count} entries for {length} residues")
        return fields

    def _is_residue_label(self, value: Any, length: int) -> bool:
        if self.label_level is not None:
            return self.label_level == "residue"
        array = np.asarray(value)
        return array.ndim == 1 and array.shape[0] == length and np.issubdtype(array.dtype, np.integer)

    def _selection(self, row: dict[str, Any], suffix: str, length: int, name: str) -> np.ndarray:
        key = "selection" + suffix
        if row.get(key) is None:
            raise ValueError(f"{name}: pair rows need a {key!r} column (the residue rows the head pools)")
        selection = np.asarray(row[key], dtype=np.int64).reshape(-1)
        if selection.size == 0:
            raise ValueError(f"{name}: {key} is empty; every pair needs at least one selected residue")
        if selection.min() < 0 or selection.max() >= length:
            raise ValueError(f"{name}: {key} has rows outside 0..{length - 1} (the side's residues)")
        return selection

    # --- cropping ---
    def _window_starts(self, lengths: list[int], keeps: list[np.ndarray]) -> list[int | None]:
        """Return each side's window start (None: no crop); sides of equal length and selection share one."""
        crop = self.processor.crop_length
        if len(lengths) == 2 and lengths[0] == lengths[1] and np.array_equal(keeps[0], keeps[1]):
            start = self._window_start(lengths[0], crop, keeps[0])
            return [start, start]
        return [self._window_start(n, crop, keep) for n, keep in zip(lengths, keeps)]

    def _window_start(self, length: int, crop: int | None, keep: np.ndarray) -> int | None:
        if crop is None or length <= crop:
            return None
        low, high = 0, length - crop
        if keep.size:
            low, high = max(0, int(keep.max()) - crop + 1), min(int(keep.min()), length - crop)
            if low > high:  # the kept residues span more than one window: centre on the first
                low = high = int(np.clip(int(keep.min()) - crop // 2, 0, length - crop))
        if not self.processor.random_crop or low == high:
            return low
        if self.generator is None:
            return low + int(torch.randint(high - low + 1, ()))
        return low + int(self.generator.integers(high - low + 1))

    # --- packing ---
    def _batch(self, sides, per_residue, selections, labels) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        for suffix, proteins in sides.items():
            packed = self.processor(proteins, return_tensors="pt")
            batch.update({key + suffix: value for key, value in packed.items()})
            if suffix:
                offsets = np.cumsum([0] + [p.length for p in proteins[:-1]])
                rows = [selection + offset for selection, offset in zip(selections[suffix], offsets)]
                batch["selection" + suffix] = torch.as_tensor(np.concatenate(rows), dtype=torch.long)
                pair = np.repeat(np.arange(len(rows)), [len(r) for r in rows])
                batch["selection_batch" + suffix] = torch.as_tensor(pair, dtype=torch.long)
        num_rows = len(next(iter(sides.values())))
        for key, values in per_residue.items():
            if key.startswith(HIDDEN) and len(values) != num_rows:
                raise ValueError(f"rows: {key} is given for some rows of the batch but not all")
            batch[key] = torch.as_tensor(np.concatenate(values))
        if "labels" in per_residue:
            if len(per_residue["labels"]) != num_rows:  # a row's per-residue labels did not match its length
                raise ValueError(
                    "rows: labels are per-residue (an integer list as long as the protein) in some rows but not in "
                    "others; with label_level='residue' the collator names the rows whose labels have the wrong length"
                )
            batch["labels"] = _label_tensor(batch["labels"])
        elif labels:
            arrays = [np.asarray(v) for v in labels]
            shapes = sorted({a.shape for a in arrays})
            if len(shapes) > 1:
                raise ValueError(f"rows: labels of the batch have different shapes {shapes}; one shape per task")
            batch["labels"] = _label_tensor(torch.as_tensor(np.stack(arrays)))
        return batch


def _row_name(row: dict[str, Any], index: int) -> str:
    """Return how errors name a row: its position and id (pair rows: both sides' ids)."""
    ids = [row.get(k) for k in ("id", "id_1", "id_2") if row.get(k)]
    return f"row {index} ({' / '.join(map(str, ids))})" if ids else f"row {index}"


def _labelled_rows(fields: dict[str, np.ndarray]) -> np.ndarray:
    """Return the residue rows a crop must keep: labelled residues and residues whose type is hidden."""
    keep = np.zeros(0, dtype=np.int64)
    if "labels" in fields:
        keep = np.flatnonzero(fields["labels"] != IGNORE_INDEX)
    if HIDDEN in fields:
        keep = np.union1d(keep, np.flatnonzero(fields[HIDDEN]))
    return keep


def _label_tensor(labels: torch.Tensor) -> torch.Tensor:
    """Return labels as the heads take them: float32 for floating and boolean (multi-hot) labels, else int64."""
    if labels.is_floating_point() or labels.dtype == torch.bool:
        return labels.float()
    return labels.long()
