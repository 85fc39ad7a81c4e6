"""Fine-tuning heads on the bundled structures: loading encoders, losses, pooling, invariance, batching, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from testing_utils import random_rotation, to64
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

from siamdiff_hf import (
    EsmGearNetConfig,
    EsmGearNetForPairClassification,
    EsmGearNetForProteinClassification,
    EsmGearNetForResidueClassification,
    EsmGearNetModel,
    GearNetConfig,
    GearNetForPairClassification,
    GearNetForProteinClassification,
    GearNetForResidueClassification,
    GearNetModel,
    GVPConfig,
    GVPForPairClassification,
    GVPForProteinClassification,
    GVPForResidueClassification,
    GVPModel,
    ProteinStructureProcessor,
)
from siamdiff_hf.models.esm_gearnet import esm2_config
from siamdiff_hf.protein.constants import CA_INDEX

DATA = Path(__file__).parents[1] / "data"
FILES = [DATA / "2xcjA.pdb.gz", DATA / "2xdgA.pdb.gz", DATA / "1mr1D.pdb.gz"]


def tiny_config(name: str, **head):
    if name == "gearnet-residue":
        return GearNetConfig(hidden_dims=[8, 8], **head)
    if name == "gearnet-atom":
        return GearNetConfig(level="atom", hidden_dims=[8, 8], **head)
    if name == "gvp":
        return GVPConfig(node_h_dim=(8, 4), edge_h_dim=(8, 1), num_layers=2, **head)
    esm = esm2_config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    return EsmGearNetConfig(esm_config=esm, gearnet_config=dict(hidden_dims=[8, 8]), **head)


ENCODERS = {
    "gearnet-residue": (GearNetModel, GearNetForProteinClassification, GearNetForResidueClassification,
                        GearNetForPairClassification),
    "gearnet-atom": (GearNetModel, GearNetForProteinClassification, GearNetForResidueClassification,
                     GearNetForPairClassification),
    "gvp": (GVPModel, GVPForProteinClassification, GVPForResidueClassification, GVPForPairClassification),
    "esm-gearnet": (EsmGearNetModel, EsmGearNetForProteinClassification, EsmGearNetForResidueClassification,
                    EsmGearNetForPairClassification),
}  # fmt: skip


def randomise_batch_norm(model: torch.nn.Module, seed: int = 0) -> None:
    """Give batch norms non-trivial statistics so that eval-mode tests see them."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)


@pytest.fixture(scope="module")
def inputs():
    return ProteinStructureProcessor(crop_length=50)(FILES[:2], return_tensors="pt")


@pytest.fixture(scope="module")
def single():
    return ProteinStructureProcessor(crop_length=50)(FILES[:1], return_tensors="pt")


def build(name: str, kind: int, seed: int = 0, **head):
    torch.manual_seed(seed)
    model = ENCODERS[name][kind](tiny_config(name, **head))
    randomise_batch_norm(model, seed)
    return model.eval()


# --- loading encoder checkpoints ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ENCODERS))
def test_encoder_checkpoint_loads_into_every_head(name, tmp_path, inputs):
    encoder_class, protein_head, residue_head, pair_head = ENCODERS[name]
    torch.manual_seed(1)
    encoder = encoder_class(tiny_config(name))
    randomise_batch_norm(encoder, 1)
    encoder.save_pretrained(tmp_path)
    encoder_state = encoder.state_dict()
    loaders = [
        (AutoModelForSequenceClassification, protein_head),
        (AutoModelForTokenClassification, residue_head),
        (pair_head, pair_head),
    ]
    for loader, expected in loaders:
        with CaptureLogger(logging.get_logger("transformers.modeling_utils")) as log:
            model, info = loader.from_pretrained(tmp_path, num_labels=3, output_loading_info=True)
        assert type(model) is expected
        assert info["unexpected_keys"] == set() and info["mismatched_keys"] == set()
        assert info["missing_keys"] and all(k.startswith("mlp.") for k in info["missing_keys"])
        assert "MISSING" in log.out and "newly initialized" in log.out
        prefix = model.base_model_prefix
        loaded = model.state_dict()
        for key, value in encoder_state.items():
            assert torch.equal(loaded[f"{prefix}.{key}"], value), key
    # and the encoder still comes back out of a saved head
    out = GearNetForProteinClassification if name.startswith("gearnet") else None
    if out is not None:
        head = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
        head.save_pretrained(tmp_path / "head")
        again = encoder_class.from_pretrained(tmp_path / "head").eval()
        expected = encoder.eval()(**inputs).protein_embeddings
        assert torch.equal(again(**inputs).protein_embeddings, expected)


@pytest.mark.parametrize("name", ["gearnet-residue", "gvp", "esm-gearnet"])
def test_round_trip_reproduces_logits_exactly(name, tmp_path, inputs):
    model = build(name, 1, num_mlp_layer=2)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(model) and reloaded.config.num_mlp_layer == 2
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, model(**inputs).logits)


def test_num_labels_mismatch_with_a_saved_head_names_the_argument(tmp_path):
    build("gearnet-residue", 1, num_labels=5).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"num_labels=3 does not match .* predicts 5 labels"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3, ignore_mismatched_sizes=True)
    assert model.mlp.layers[-1].out_features == 3


# --- the MLP and the losses ---------------------------------------------------------------------------------------
def test_mlp_is_torchdrug_multilayer_perceptron():
    model = build("gearnet-atom", 1, num_labels=7)
    widths = [(layer.in_features, layer.out_features) for layer in model.mlp.layers]
    assert widths == [(16, 16), (16, 16), (16, 7)]  # num_mlp_layer=3, hidden = encoder output width
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.Dropout)) for m in model.mlp.modules())
    x = torch.randn(4, 16)
    expected = model.mlp.layers[2](F.relu(model.mlp.layers[1](F.relu(model.mlp.layers[0](x)))))
    assert torch.equal(model.mlp(x), expected)
    pair = build("gearnet-atom", 3, num_labels=1)
    assert pair.mlp.layers[0].in_features == 32 and pair.mlp.layers[0].out_features == 16


@pytest.mark.parametrize("name", list(ENCODERS))
def test_protein_head_losses_follow_transformers_problem_types(name, inputs):
    for num_labels, labels, problem_type in [
        (4, torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]]), "multi_label_classification"),
        (1, torch.tensor([0.3, 0.7]), "regression"),
        (4, torch.tensor([2, 0]), "single_label_classification"),
    ]:
        model = build(name, 1, num_labels=num_labels)
        out = model(**inputs, labels=labels)
        assert isinstance(out, SequenceClassifierOutput) and next(iter(out.keys())) == "loss"
        assert model.config.problem_type == problem_type  # inferred as transformers infers it
        logits = out.logits
        assert logits.shape == (2, num_labels)
        if problem_type == "multi_label_classification":
            expected = F.binary_cross_entropy_with_logits(logits, labels)
        elif problem_type == "regression":
            expected = F.mse_loss(logits.squeeze(), labels)
        else:
            expected = F.cross_entropy(logits, labels)
        assert torch.allclose(out.loss, expected)
        loss = model(**inputs, labels=labels, return_dict=False)[0]
        assert torch.allclose(loss, expected)


def test_residue_head_ignores_minus_100_and_uses_the_ca_node(inputs):
    model = build("gearnet-atom", 2, num_labels=20)
    num_residues = inputs["residue_type"].shape[0]
    labels = torch.full((num_residues,), -100)
    labels[[5, 60, 90]] = torch.tensor([3, 11, 0])
    out = model(**inputs, labels=labels)
    assert isinstance(out, TokenClassifierOutput) and out.logits.shape == (num_residues, 20)
    keep = labels != -100
    assert torch.allclose(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))
    # "ca": each residue's logits come from the node sitting at its CA atom
    encoder = model.base_model
    encoded = encoder(**inputs)
    graph = encoder.build_graph(inputs["residue_type"], inputs["atom_positions"], inputs["atom_mask"], inputs["batch"])
    from siamdiff_hf.models.heads import ca_nodes

    nodes = ca_nodes(inputs["atom_mask"], "atom", graph.num_nodes)
    assert torch.equal(graph.positions[nodes], inputs["atom_positions"][:, CA_INDEX])
    assert torch.equal(encoded.node_residue[nodes], torch.arange(num_residues))
    assert torch.allclose(out.logits, model.mlp(encoded.node_embeddings[nodes]))
    mean_model = build("gearnet-atom", 2, num_labels=20, residue_pooling="mean")
    assert torch.allclose(
        mean_model(**inputs).logits, mean_model.mlp(mean_model.base_model(**inputs).residue_embeddings)
    )


@pytest.mark.parametrize(("num_labels", "problem_type"), [(1, "regression"), (3, "multi_label_classification")])
def test_residue_head_float_labels_skip_rows_marked_minus_100(num_labels, problem_type, inputs):
    model = build("gearnet-residue", 2, num_labels=num_labels, problem_type=problem_type)
    num_residues = inputs["residue_type"].shape[0]
    labels = torch.rand(num_residues, num_labels)
    labels[::3] = -100
    keep = labels[:, 0] != -100
    out = model(**inputs, labels=labels.squeeze(-1) if num_labels == 1 else labels)
    loss = F.mse_loss if problem_type == "regression" else F.binary_cross_entropy_with_logits
    assert torch.allclose(out.loss, loss(out.logits[keep], labels[keep]))


def pair_inputs(inputs, selection_1, selection_2):
    """Pairs (protein i of `inputs`, protein i of `inputs` with coordinates shifted): the collator's layout."""
    batch = {f"{k}_1": v for k, v in inputs.items()}
    batch.update({f"{k}_2": v.clone() for k, v in inputs.items()})
    batch["atom_positions_2"] = batch["atom_positions_2"] + 0.3 * torch.randn_like(batch["atom_positions_2"])
    batch["selection_1"], batch["selection_2"] = torch.tensor(selection_1), torch.tensor(selection_2)
    num_residues = inputs["batch"].shape[0]
    batch["selection_batch_1"] = inputs["batch"][batch["selection_1"].clamp(max=num_residues - 1)]
    batch["selection_batch_2"] = inputs["batch"][batch["selection_2"].clamp(max=num_residues - 1)]
    return batch


@pytest.mark.parametrize("pooling", ["mean", "ca"])
def test_pair_head_pools_the_selected_residues(pooling, inputs):
    model = build("gearnet-atom", 3, num_labels=1, problem_type="multi_label_classification", pair_pooling=pooling)
    first = int((inputs["batch"] == 0).sum())
    batch = pair_inputs(inputs, [3, 4, first + 10], [7, first + 2])
    labels = torch.tensor([1.0, 0.0])
    out = model(**batch, labels=labels)
    assert out.logits.shape == (2, 1)
    assert torch.allclose(out.loss, F.binary_cross_entropy_with_logits(out.logits[:, 0], labels))
    sides = []
    for suffix, residues in (("_1", [[3, 4], [first + 10]]), ("_2", [[7], [first + 2]])):
        side = {k[: -len(suffix)]: v for k, v in batch.items() if k.endswith(suffix) and "selection" not in k}
        encoded = model.base_model(**side)
        nodes = encoded.node_embeddings
        pooled = []
        for rows in residues:
            if pooling == "mean":  # official MSP: mean over every node of the selected residues
                pooled.append(nodes[torch.isin(encoded.node_residue, torch.tensor(rows))].mean(0))
            else:  # official PIP: the node at the residue's CA atom
                positions = side["atom_positions"][rows, CA_INDEX]
                graph = model.base_model.build_graph(side["residue_type"], side["atom_positions"],
                                                     side["atom_mask"], side["batch"])  # fmt: skip
                match = (graph.positions[None] == positions[:, None]).all(-1).float().argmax(-1)
                pooled.append(nodes[match].mean(0))
        sides.append(torch.stack(pooled))
    assert torch.allclose(out.logits, model.mlp(torch.cat(sides, -1)), atol=1e-6)


def test_pair_head_bad_selections_name_the_argument(inputs):
    model = build("gearnet-residue", 3, num_labels=1, problem_type="multi_label_classification")
    first = int((inputs["batch"] == 0).sum())
    with pytest.raises(ValueError, match=r"selection_2 selects no residue of pair 1"):
        model(**pair_inputs(inputs, [1, first + 1], [1]))
    with pytest.raises(ValueError, match=r"selection_1 must index"):
        model(**pair_inputs(inputs, [1, 10_000], [1, first]))
    batch = pair_inputs(inputs, [1, first + 1], [1, first])
    batch["selection_batch_1"] = torch.tensor([0, 0])
    with pytest.raises(ValueError, match=r"selection_batch_1 disagrees"):
        model(**batch)
    batch = pair_inputs(inputs, [1, first + 1], [1, first])
    del batch["selection_1"]
    with pytest.raises(ValueError, match=r"selection_1 is required"):
        model(**batch)


def test_bad_labels_give_one_line_errors_naming_labels(inputs):
    multi = build("gearnet-residue", 1, num_labels=4, problem_type="multi_label_classification")
    with pytest.raises(ValueError, match=r"labels must be floating point .*multi_label"):
        multi(**inputs, labels=torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0]]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 4\)"):
        multi(**inputs, labels=torch.rand(2, 3))
    single = build("gearnet-residue", 1, num_labels=4, problem_type="single_label_classification")
    with pytest.raises(ValueError, match="labels must be integer class ids"):
        single(**inputs, labels=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        single(**inputs, labels=torch.tensor([1, 4]))
    residue = build("gearnet-residue", 2, num_labels=20)
    with pytest.raises(ValueError, match="labels must hold one class id per residue"):
        residue(**inputs, labels=torch.tensor([1, 2]))
    regression = build("gearnet-residue", 1, num_labels=1)
    with pytest.raises(ValueError, match="labels must be floating point for problem_type='regression'"):
        regression(**inputs, labels=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="esm_input_ids: not an input of GearNetModel"):
        regression(**inputs, esm_input_ids=inputs["residue_type"])


# --- invariance and batching --------------------------------------------------------------------------------------
# every head level (1 protein, 2 residue, 3 pair with MSP's mean or PIP's CA pooling) of every encoder
@pytest.mark.parametrize("name", list(ENCODERS))
@pytest.mark.parametrize(("kind", "pooling"), [(1, "ca"), (2, "ca"), (2, "mean"), (3, "mean"), (3, "ca")])
def test_logits_invariant_to_rotation_and_translation(name, kind, pooling, inputs):
    model = build(name, kind, num_labels=3, pair_pooling=pooling, residue_pooling=pooling).double()
    batch = to64(inputs)
    if kind == 3:
        batch = pair_inputs(batch, [2, 80], [5, 90])
    generator = torch.Generator().manual_seed(3)
    moved = dict(batch)
    for key in [k for k in batch if k.startswith("atom_positions")]:
        rotation = random_rotation(generator)
        shift = 10 * torch.randn(3, generator=generator, dtype=torch.float64)
        moved[key] = batch[key] @ rotation.T + shift
    with torch.no_grad():
        logits, moved_logits = model(**batch).logits, model(**moved).logits
    assert torch.allclose(logits, moved_logits, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize(("name", "kind"), [("gearnet-residue", 1), ("gearnet-atom", 2), ("gvp", 1), ("gvp", 2),
                                            ("esm-gearnet", 1), ("gearnet-residue", 3)])  # fmt: skip
def test_protein_alone_or_in_a_batch_gives_the_same_logits(name, kind, inputs, single):
    model = build(name, kind, num_labels=3).double()
    alone_inputs, batch_inputs = to64(single), to64(inputs)
    if kind == 3:  # pairs: (protein, itself) alone, and in a batch with the second protein's pair
        alone_inputs = pair_inputs(alone_inputs, [2, 9], [5])
        batch_inputs = pair_inputs(batch_inputs, [2, 9, int(single["batch"].shape[0]) + 4], [5, 95])
        batch_inputs["atom_positions_2"][: single["batch"].shape[0]] = alone_inputs["atom_positions_2"]
    with torch.no_grad():
        alone = model(**alone_inputs).logits
        together = model(**batch_inputs).logits
    assert torch.allclose(together[: alone.shape[0]], alone, atol=1e-10)


# --- freezing and optimiser groups --------------------------------------------------------------------------------
def test_freeze_encoder_trains_only_the_head(tmp_path, inputs):
    build("gearnet-residue", 0).save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2, freeze_encoder=True)
    model.train()
    assert not model.base_model.training and model.mlp.training
    assert all(not p.requires_grad for p in model.base_model.parameters())
    before = {k: v.clone() for k, v in model.base_model.state_dict().items()}
    model(**inputs, labels=torch.rand(2, 2)).loss.backward()
    assert all(p.grad is not None for p in model.mlp.parameters())
    assert all(torch.equal(v, model.base_model.state_dict()[k]) for k, v in before.items())  # BN stats fixed
    groups = model.parameter_groups(1e-3)
    assert len(groups) == 1 and {id(p) for p in groups[0]["params"]} == {id(p) for p in model.mlp.parameters()}


@pytest.mark.parametrize(("ratio", "esm_trains"), [(0.1, True), (0.0, False)])
def test_esm_gearnet_heads_give_esm_its_learning_rate_ratio(ratio, esm_trains, tmp_path):
    # an encoder exported from pre-training has ESM frozen; fine-tuning trains it at the ratio (official 0.1)
    EsmGearNetModel(tiny_config("esm-gearnet", freeze_sequence_model=True)).save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2, esm_learning_rate_ratio=ratio)
    model.train()
    esm = model.base_model.esm
    assert any(p.requires_grad for p in esm.parameters()) is esm_trains and esm.training is esm_trains
    groups = model.parameter_groups(1e-4)
    esm_ids = {id(p) for p in esm.parameters()}
    rates = sorted({g["lr"] for g in groups for p in g["params"] if id(p) in esm_ids})
    assert rates == ([pytest.approx(1e-5)] if esm_trains else [])
    assert any(g["lr"] == 1e-4 and any(p is model.mlp.layers[0].weight for p in g["params"]) for g in groups)


def test_regression_standardisation_as_the_official_psr_task(tmp_path, inputs):
    model = build("gearnet-residue", 1, num_labels=1, regression_mean=0.5, regression_std=0.2)
    labels = torch.tensor([0.3, 0.9])
    out = model(**inputs, labels=labels)
    raw = model.mlp(model.base_model(**inputs).protein_embeddings)
    assert torch.allclose(out.logits, raw * 0.2 + 0.5)  # TorchDrug: pred * std + mean
    assert torch.allclose(out.loss, F.mse_loss(raw[:, 0], (labels - 0.5) / 0.2))  # MSE on standardised targets
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.regression_std == 0.2
    assert torch.equal(reloaded(**inputs).logits, model(**inputs).logits)
    with pytest.raises(ValueError, match="regression_mean and regression_std"):
        GearNetConfig(regression_mean=0.5)
    # the frozen-encoder cached path of `finetune` (a probe on the MLP's inputs) scores as the model does
    from siamdiff_hf.training.finetuning import HeadProbe

    probe = HeadProbe(model, "protein")(model.base_model(**inputs).protein_embeddings, labels)
    assert torch.allclose(probe.logits, out.logits) and torch.allclose(probe.loss, out.loss)


def test_head_options_are_validated_by_name(inputs):
    with pytest.raises(ValueError, match="problem_type must be one of"):
        GearNetConfig(problem_type="multilabel_classification")
    misspelt = build("gearnet-residue", 1, num_labels=3)
    misspelt.config.problem_type = "multi_label"  # set after the config was built: caught before any loss
    with pytest.raises(ValueError, match="problem_type must be one of"):
        misspelt(**inputs, labels=torch.rand(2, 3))
    with pytest.raises(ValueError, match="num_mlp_layer"):
        GearNetConfig(num_mlp_layer=0)
    with pytest.raises(ValueError, match="pair_pooling"):
        GVPConfig(pair_pooling="max")
    with pytest.raises(ValueError, match="classifier_dropout"):
        tiny_config("esm-gearnet", classifier_dropout=1.5)
    model = build("gearnet-residue", 1, num_labels=3, classifier_dropout=0.3)
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.mlp.modules()) == 1


@pytest.mark.parametrize("name", ["gearnet-atom", "gvp", "esm-gearnet"])
def test_hidden_residue_types_reach_the_encoder_and_keep_the_atoms(name, inputs):
    model = build(name, 2, num_labels=20)
    hidden = torch.zeros_like(inputs["batch"], dtype=torch.bool)
    hidden[7] = True
    with torch.no_grad():
        plain = model(**inputs).logits
        masked = model(**inputs, hidden_residue_types=hidden).logits
        nodes = model.base_model(**inputs, hidden_residue_types=hidden).node_embeddings.shape[0]
    assert not torch.allclose(plain[7], masked[7])
    assert nodes == model.base_model(**inputs).node_embeddings.shape[0]  # the target keeps its atoms (official RES)
