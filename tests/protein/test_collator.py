"""ProteinDataCollator: downstream rows -> packed head inputs; aligned crops; errors; a few real Trainer steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from siamdiff_hf import (
    GearNetConfig,
    GearNetForPairClassification,
    GearNetForProteinClassification,
    GearNetForResidueClassification,
    ProteinDataCollator,
    ProteinStructureProcessor,
    parse_structure,
)
from siamdiff_hf.metrics import compute_metrics_for_task

DATA = Path(__file__).parents[1] / "data"
FILES = sorted(DATA.glob("*.pdb.gz"))


def structure_row(protein, suffix: str = "") -> dict:
    """The structure columns of the downstream row schema (plain lists, as Arrow returns them)."""
    row = {key + suffix: (value.tolist() if hasattr(value, "tolist") else value) for key, value in
           protein.to_dict().items()}  # fmt: skip
    row["length" + suffix] = protein.length
    return row


@pytest.fixture(scope="module")
def proteins():
    return [parse_structure(path) for path in FILES]


def ec_rows(proteins, num_labels: int = 6) -> list[dict]:
    rows = []
    for i, protein in enumerate(proteins):
        labels = np.zeros(num_labels, dtype=np.float32)
        labels[[i % num_labels, (3 * i + 1) % num_labels]] = 1
        rows.append({**structure_row(protein), "labels": labels.tolist()})
    return rows


def res_rows(proteins, targets) -> list[dict]:
    rows = []
    for protein, target in zip(proteins, targets):
        labels = np.full(protein.length, -100, dtype=np.int64)
        labels[target] = protein.residue_type[target]
        hidden = np.zeros(protein.length, dtype=bool)
        hidden[target] = True
        rows.append({**structure_row(protein), "labels": labels.tolist(), "hidden_residue_types": hidden.tolist()})
    return rows


def pair_rows(proteins, selections, labels) -> list[dict]:
    """MSP-like pairs: a protein and a 'mutant' (same residues, one type changed) with the same selection."""
    rows = []
    for protein, selection, label in zip(proteins, selections, labels):
        mutant = structure_row(protein, "_2")
        mutant["residue_type_2"] = list(mutant["residue_type_2"])
        for row in selection:
            mutant["residue_type_2"][row] = (mutant["residue_type_2"][row] + 1) % 20
        rows.append({**structure_row(protein, "_1"), **mutant, "selection_1": selection, "selection_2": selection,
                     "labels": float(label), "id": f"{protein.id}-mut"})  # fmt: skip
    return rows


# --- packing ------------------------------------------------------------------------------------------------------
def test_one_structure_rows_pack_like_the_processor(proteins):
    rows = ec_rows(proteins[:3])
    batch = ProteinDataCollator()(rows)
    expected = ProteinStructureProcessor()(FILES[:3], return_tensors="pt")
    for key, value in expected.items():
        assert torch.equal(batch[key], value), key
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (3, 6)
    assert torch.equal(batch["labels"], torch.tensor([r["labels"] for r in rows]))
    assert set(batch) == {*expected, "labels"}
    psr = [{**structure_row(p), "labels": 0.25 * i} for i, p in enumerate(proteins[:2])]
    labels = ProteinDataCollator()(psr)["labels"]
    assert labels.dtype == torch.float32 and torch.equal(labels, torch.tensor([0.0, 0.25]))
    esm = ProteinDataCollator(ProteinStructureProcessor(include_esm_tokens=True))(rows)
    assert esm["esm_input_ids"].shape == batch["residue_type"].shape


def test_residue_rows_pack_labels_and_hidden_flags(proteins):
    targets = [10, 40]
    batch = ProteinDataCollator()(res_rows(proteins[:2], targets))
    offset = proteins[0].length
    assert batch["labels"].dtype == torch.long and batch["labels"].shape == batch["residue_type"].shape
    assert torch.equal(torch.nonzero(batch["labels"] != -100).flatten(), torch.tensor([10, offset + 40]))
    assert torch.equal(torch.nonzero(batch["hidden_residue_types"]).flatten(), torch.tensor([10, offset + 40]))
    assert torch.equal(batch["labels"][[10, offset + 40]], batch["residue_type"][[10, offset + 40]])


def test_random_crops_keep_residue_labels_aligned_and_the_target_inside(proteins):
    protein = proteins[0]
    collator = ProteinDataCollator(ProteinStructureProcessor(crop_length=20, random_crop=True), generator=0)
    starts = set()
    for target in (0, 5, 60, protein.length - 1):
        row = res_rows([protein], [target])[0]
        for _ in range(15):
            batch = collator([row])
            assert batch["residue_type"].shape == (20,)
            (where,) = torch.nonzero(batch["labels"] != -100).flatten().tolist()
            start = target - where
            starts.add(start)
            # the window is the contiguous slice [start, start + 20) of the protein, labels and flags included
            assert torch.equal(batch["atom_positions"], torch.as_tensor(protein.atom_positions[start : start + 20]))
            assert torch.equal(torch.nonzero(batch["hidden_residue_types"]).flatten(), torch.tensor([where]))
            assert int(batch["labels"][where]) == protein.residue_type[target]
    assert len(starts) > 10  # the window moves
    # EC rows are cropped too, their protein-level labels untouched
    batch = collator(ec_rows(proteins[:2]))
    assert batch["residue_type"].shape == (40,) and batch["labels"].shape == (2, 6)
    first = ProteinDataCollator(ProteinStructureProcessor(crop_length=20))([res_rows([protein], [60])[0]])
    assert int(torch.nonzero(first["labels"] != -100)) == 19  # deterministic: the first window holding the target


def test_pair_rows_pack_both_sides_and_their_selections(proteins):
    rows = pair_rows(proteins[:3], [[4], [7, 8], [30]], [1, 0, 1])
    batch = ProteinDataCollator()(rows)
    offsets = np.cumsum([0] + [p.length for p in proteins[:2]])
    expected = torch.tensor([4 + offsets[0], 7 + offsets[1], 8 + offsets[1], 30 + offsets[2]])
    for side in ("_1", "_2"):
        assert torch.equal(batch["selection" + side], expected)
        assert torch.equal(batch["selection_batch" + side], torch.tensor([0, 1, 1, 2]))
    assert bool((batch["residue_type_1"][expected] != batch["residue_type_2"][expected]).all())
    assert torch.equal(batch["labels"], torch.tensor([1.0, 0.0, 1.0]))
    # cropped: one shared window around the selection, on both sides
    collator = ProteinDataCollator(ProteinStructureProcessor(crop_length=16, random_crop=True), generator=1)
    cropped = collator(rows)
    assert cropped["residue_type_1"].shape == (48,)
    assert torch.equal(cropped["atom_positions_1"], cropped["atom_positions_2"])
    changed = torch.nonzero(cropped["residue_type_1"] != cropped["residue_type_2"]).flatten()
    assert torch.equal(changed, cropped["selection_1"]) and torch.equal(changed, cropped["selection_2"])
    model = GearNetForPairClassification(
        GearNetConfig(hidden_dims=[8], num_labels=1, problem_type="multi_label_classification")
    )
    out = model(**cropped)
    assert out.logits.shape == (3, 1) and torch.isfinite(out.loss)


def test_pair_sides_of_different_proteins_get_their_own_windows(proteins):
    """PIP-like pairs: two different proteins, one selected residue each; each window holds its own selection."""
    collator = ProteinDataCollator(ProteinStructureProcessor(crop_length=16, random_crop=True), generator=2)
    a, b = proteins[0], proteins[4]
    row = {**structure_row(a, "_1"), **structure_row(b, "_2"), "selection_1": [70], "selection_2": [3], "labels": 1.0}
    for _ in range(10):
        batch = collator([row])
        for side, protein, target in (("_1", a, 70), ("_2", b, 3)):
            (where,) = batch["selection" + side].tolist()
            start = target - where
            assert 0 <= where < 16
            assert torch.equal(batch["atom_positions" + side],
                               torch.as_tensor(protein.atom_positions[start : start + 16]))  # fmt: skip


def test_bad_rows_give_one_line_errors(proteins):
    collator = ProteinDataCollator()
    rows = pair_rows(proteins[:2], [[4], [7]], [1, 0])
    rows[1]["selection_2"] = []
    with pytest.raises(ValueError, match=r"row 1 \(.*\): selection_2 is empty"):
        collator(rows)
    rows[1]["selection_2"] = [10_000]
    with pytest.raises(ValueError, match=r"selection_2 has rows outside"):
        collator(rows)
    row = ec_rows(proteins[:1])[0]
    del row["chain_id"]
    with pytest.raises(ValueError, match=r"no 'chain_id' column.*remove_unused_columns=False"):
        collator([row])
    with pytest.raises(ValueError, match="mixes one-structure rows and pair rows"):
        collator([ec_rows(proteins[:1])[0], pair_rows(proteins[:1], [[1]], [0])[0]])
    bad = res_rows(proteins[:1], [3])[0]
    bad["hidden_residue_types"] = bad["hidden_residue_types"][:-1]
    with pytest.raises(ValueError, match="hidden_residue_types has"):
        collator([bad])
    scalar = {**ec_rows(proteins[:1])[0], "labels": 3}
    with pytest.raises(ValueError, match="labels has no per-residue entries"):
        ProteinDataCollator(label_level="residue")([scalar])
    with pytest.raises(ValueError, match="label_level"):
        ProteinDataCollator(label_level="atom")
    short = res_rows(proteins[:2], [3, 5])  # one row's residue labels one short: never silently dropped
    short[1]["labels"] = short[1]["labels"][:-1]
    with pytest.raises(ValueError, match=r"labels are per-residue .* in some rows but not in others"):
        collator(short)
    with pytest.raises(ValueError, match=r"row 1 \(.*\): labels has \d+ entries for \d+ residues"):
        ProteinDataCollator(label_level="residue")(short)
    uneven = ec_rows(proteins[:2])
    uneven[1]["labels"] = uneven[1]["labels"][:-1]
    with pytest.raises(ValueError, match=r"labels of the batch have different shapes \[\(5,\), \(6,\)\]"):
        collator(uneven)
    with pytest.raises(ValueError, match="processor: chain selection"):
        ProteinDataCollator(ProteinStructureProcessor(chain="A"))


# --- transformers.Trainer -----------------------------------------------------------------------------------------
def training_arguments(path: Path, **kwargs) -> TrainingArguments:
    defaults = dict(
        output_dir=str(path), per_device_train_batch_size=3, per_device_eval_batch_size=3, learning_rate=3e-3,
        max_steps=10, report_to="none", use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True,
        remove_unused_columns=False, seed=0, dataloader_num_workers=0,
    )  # fmt: skip
    return TrainingArguments(**{**defaults, **kwargs})


def train_and_evaluate(model, dataset, collator, task: str, path: Path, **kwargs) -> tuple[Trainer, dict, dict]:
    """Return the Trainer and its evaluation (on the training rows) before and after training."""
    trainer = Trainer(
        model=model, args=training_arguments(path, **kwargs), train_dataset=dataset, eval_dataset=dataset,
        data_collator=collator, compute_metrics=compute_metrics_for_task(task),
    )  # fmt: skip
    before = trainer.evaluate()
    trainer.train()
    return trainer, before, trainer.evaluate()


@pytest.mark.slow
def test_trainer_steps_lower_the_loss_on_the_bundled_structures(proteins, tmp_path):
    dataset = Dataset.from_list(ec_rows(proteins))
    torch.manual_seed(0)
    model = GearNetForProteinClassification(GearNetConfig(hidden_dims=[16, 16], num_labels=6))
    collator = ProteinDataCollator(ProteinStructureProcessor(crop_length=60))
    trainer, before, after = train_and_evaluate(model, dataset, collator, "ec", tmp_path)
    assert after["eval_loss"] < 0.8 * before["eval_loss"]
    assert 0 <= after["eval_f1_max"] <= 1 and 0 <= after["eval_auprc_micro"] <= 1
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 10 and np.mean(losses[-3:]) < np.mean(losses[:3])


@pytest.mark.slow
def test_trainer_residue_task_evaluates_packed_residue_logits(proteins, tmp_path):
    targets = [5, 17, 30, 41, 9, 12]
    dataset = Dataset.from_list(res_rows(proteins, targets))
    torch.manual_seed(0)
    model = GearNetForResidueClassification(GearNetConfig(hidden_dims=[16], num_labels=20))
    collator = ProteinDataCollator(ProteinStructureProcessor(crop_length=40))
    _, before, after = train_and_evaluate(model, dataset, collator, "res", tmp_path, max_steps=6, learning_rate=1e-2)
    assert after["eval_loss"] < before["eval_loss"]
    assert after["eval_accuracy"] in [k / 6 for k in range(7)]  # scored on the 6 targets only, -100 masked


@pytest.mark.slow
def test_trainer_pair_task_trains_and_reports_auroc(proteins, tmp_path):
    rows = pair_rows(proteins, [[4], [7, 8], [30], [12], [50], [21]], [1, 0, 1, 0, 1, 0])
    dataset = Dataset.from_list(rows)
    torch.manual_seed(0)
    config = GearNetConfig(hidden_dims=[16], num_labels=1, problem_type="multi_label_classification")
    model = GearNetForPairClassification(config)
    _, before, after = train_and_evaluate(model, dataset, ProteinDataCollator(), "msp", tmp_path, max_steps=6)
    assert after["eval_loss"] < before["eval_loss"]
    assert 0 <= after["eval_auroc"] <= 1 and 0 <= after["eval_auprc"] <= 1


def test_trainer_default_remove_unused_columns_is_named_in_the_error(proteins, tmp_path):
    dataset = Dataset.from_list(ec_rows(proteins[:3]))
    model = GearNetForProteinClassification(GearNetConfig(hidden_dims=[8], num_labels=6))
    args = training_arguments(tmp_path, max_steps=1, remove_unused_columns=True)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=ProteinDataCollator())
    with pytest.raises(ValueError, match=r"remove_unused_columns=False"):
        trainer.train()


# --- rows as `load_downstream` writes them ------------------------------------------------------------------------
def _downstream_fixtures():
    """tests/data/_downstream_fixtures.py (the released-format builders), imported by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_downstream_fixtures", DATA / "_downstream_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_downstream_rows_collate_into_the_heads(tmp_path):
    from siamdiff_hf.data.downstream import TASKS, load_downstream
    from siamdiff_hf.protein import constants as C

    fx = _downstream_fixtures()
    splits = {"train": {"2XDG-A": "2xdgA.pdb.gz", "2XCJ-A": "2xcjA.pdb.gz"}, "valid": {}, "test": {}}
    root = fx.write_deepfri(tmp_path / "ec", "ec", splits, {"2XDG-A": "1.1.1.1", "2XCJ-A": "2.7.11.1,1.1.1.1"},
                            ["1.1.1.1", "2.7.11.1", "3.4.21.-"], {})  # fmt: skip
    ec = load_downstream("ec", root, "train", cache_dir=tmp_path / "cache")
    for rows in (list(ec), list(ec.with_format("numpy"))):
        batch = ProteinDataCollator()(rows)
        assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (2, 3)
        model = GearNetForProteinClassification(
            GearNetConfig(hidden_dims=[8], num_labels=3, problem_type=TASKS["ec"].problem_type)
        )
        assert torch.isfinite(model(**batch).loss)
    # MSP: VAL -> THR at one residue, the wild type and the mutant as ATOM3D stores them
    atoms = fx.atom_rows(DATA / "2xdgA.pdb.gz")
    reference = parse_structure(DATA / "2xdgA.pdb.gz")
    k = int(np.flatnonzero(reference.residue_type == C.RESIDUE_ID["VAL"])[0])
    mutant = [list(r) for r in atoms]
    for r in mutant:
        if r[fx.col("residue")] == reference.residue_number[k]:
            r[fx.col("resname")] = "THR"
            if r[fx.col("name")] == "CG1":
                r[fx.col("name")], r[fx.col("element")] = "OG1", "O"
    items = [{"original_atoms": fx.frame(atoms), "mutated_atoms": fx.frame(mutant), "id": f"m{i}", "label": str(i)}
             for i in (0, 1)]  # fmt: skip
    fx.write_atom3d_lmdb(tmp_path / "msp" / "train", items)
    msp = load_downstream("msp", tmp_path / "msp", "train", cache_dir=tmp_path / "cache")
    batch = ProteinDataCollator()(list(msp.with_format("numpy")))
    assert torch.equal(batch["selection_1"], torch.tensor([k, reference.length + k]))
    assert torch.equal(batch["labels"], torch.tensor([0.0, 1.0]))
    model = GearNetForPairClassification(
        GearNetConfig(level="atom", hidden_dims=[8], num_labels=1, problem_type=TASKS["msp"].problem_type)
    )
    assert model(**batch).logits.shape == (2, 1)
