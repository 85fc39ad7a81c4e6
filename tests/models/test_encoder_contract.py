"""The contract every structure encoder keeps: hidden residue types, pooling, and configs that validate their fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig

from siamdiff_hf import ProteinStructureProcessor
from siamdiff_hf.graph import scatter_rows
from siamdiff_hf.models import EsmGearNetConfig, EsmGearNetModel, GearNetConfig, GearNetModel, GVPConfig, GVPModel
from siamdiff_hf.models.esm_gearnet import esm2_config
from siamdiff_hf.protein.constants import NUM_RESIDUE_FEATURES, NUM_RESIDUE_TYPES

DATA = Path(__file__).parents[1] / "data"
TINY_ESM = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
ENCODERS = {
    "gearnet-residue": lambda: GearNetModel(GearNetConfig(hidden_dims=[16, 16])),
    "gearnet-atom": lambda: GearNetModel(GearNetConfig(level="atom", hidden_dims=[16, 16])),
    "gvp": lambda: GVPModel(GVPConfig(num_layers=2)),
    "esm-gearnet": lambda: EsmGearNetModel(
        EsmGearNetConfig(esm_config=esm2_config(**TINY_ESM), gearnet_config=dict(hidden_dims=[16, 16]))
    ),
}


def make(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ENCODERS[name]().eval()
    with torch.no_grad():  # batch-norm statistics away from (0, 1) so that eval outputs depend on every layer
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def inputs():
    return dict(ProteinStructureProcessor()([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz"]))


def with_types(inputs: dict, rows: torch.Tensor, shift: int) -> dict:
    """Return the inputs with the residue type of `rows` moved `shift` places (still a standard amino acid)."""
    residue_type = inputs["residue_type"].clone()
    residue_type[rows] = (residue_type[rows] + shift) % NUM_RESIDUE_TYPES
    return {**inputs, "residue_type": residue_type}


# --- hidden residue types (official RES) -------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ENCODERS))
def test_hidden_residue_types_are_invisible_while_their_atoms_count(name, inputs):
    model = make(name)
    rows = torch.arange(3, inputs["residue_type"].shape[0], 11)
    hidden = torch.zeros_like(inputs["batch"], dtype=torch.bool)
    hidden[rows] = True
    with torch.no_grad():
        seen = model(**inputs, hidden_residue_types=hidden)
        other_types = model(**with_types(inputs, rows, 5), hidden_residue_types=hidden)
        visible = model(**inputs)
        visible_other_types = model(**with_types(inputs, rows, 5))
    # the types of hidden residues change nothing; without hiding they do
    assert torch.equal(seen.node_embeddings, other_types.node_embeddings)
    assert torch.equal(seen.protein_embeddings, other_types.protein_embeddings)
    assert not torch.allclose(visible.protein_embeddings, visible_other_types.protein_embeddings)
    assert not torch.allclose(seen.protein_embeddings, visible.protein_embeddings)
    # every atom stays (unlike SiamDiff masking, which keeps N, CA, C): same nodes, and moving a side-chain atom of
    # a hidden residue moves the output
    graph = model.build_graph(**inputs, hidden_residue_types=hidden)
    masked = model.build_graph(**inputs, masked_residues=hidden)
    assert graph.num_nodes == model.build_graph(**inputs).num_nodes
    if model.config.level == "atom":
        assert masked.num_nodes < graph.num_nodes
        node_of_hidden = hidden[graph.node_residue]
        assert (graph.node_features[node_of_hidden, -NUM_RESIDUE_FEATURES:] == 0).all()
        assert (graph.node_features[~node_of_hidden, -NUM_RESIDUE_FEATURES:].sum(-1) == 1).all()
        moved = {**inputs, "atom_positions": inputs["atom_positions"].clone()}
        side_chain = inputs["atom_mask"][rows[0]].nonzero().flatten()[-1]  # last present atom37 slot
        assert side_chain > 4  # beyond N, CA, C, CB, O
        moved["atom_positions"][rows[0], side_chain] += 0.7
        with torch.no_grad():
            assert not torch.allclose(model(**moved, hidden_residue_types=hidden).node_embeddings, seen.node_embeddings)
    if graph.edge_attr is not None:  # GearNet edge features: hidden residues count as GLY (id 0)
        source_hidden = hidden[graph.node_residue[graph.edge_index[0]]]
        assert (graph.edge_attr[source_hidden, 0] == 1).all()


def test_hidden_residue_types_with_a_ready_graph_is_an_error(inputs):
    model = make("gearnet-residue")
    graph = model.build_graph(**inputs)
    with pytest.raises(ValueError, match="hidden_residue_types"):
        model(graph=graph, hidden_residue_types=torch.zeros_like(inputs["batch"], dtype=torch.bool))
    with pytest.raises(ValueError, match="hidden_residue_types"):
        model.build_graph(**inputs, hidden_residue_types=torch.zeros(3, dtype=torch.bool))


# --- pooling -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ENCODERS))
def test_pooling_sum_and_mean_on_request_default_unchanged(name, inputs):
    model = make(name)
    with torch.no_grad():
        default = model(**inputs)
        summed = model(**inputs, pooling="sum")
        mean = model(**inputs, pooling="mean")
    nodes, node_batch = default.node_embeddings, default.node_batch
    num_proteins = int(inputs["batch"].max()) + 1
    counts = torch.bincount(node_batch, minlength=num_proteins).unsqueeze(-1).to(nodes.dtype)
    manual_sum = torch.zeros(num_proteins, nodes.shape[1]).index_add_(0, node_batch, nodes)
    torch.testing.assert_close(summed.protein_embeddings, manual_sum)
    torch.testing.assert_close(mean.protein_embeddings, manual_sum / counts)  # mean = sum / nodes of the protein
    assert torch.equal(summed.node_embeddings, default.node_embeddings)
    if name == "esm-gearnet":  # default: mean of the ESM half, sum (GearNet readout) of the structure half
        width = model.config.esm_config.hidden_size
        expected = torch.cat([mean.protein_embeddings[:, :width], summed.protein_embeddings[:, width:]], dim=-1)
    else:
        expected = {"sum": summed, "mean": mean}[model.config.readout].protein_embeddings
    assert torch.equal(default.protein_embeddings, expected)
    with pytest.raises(ValueError, match="pooling"):
        model(**inputs, pooling="max")


def test_mean_pooling_does_not_grow_with_length(inputs):
    """Residue GearNet-Edge's official sum readout scales with length; the mean stays on the scale of one residue."""
    model = make("gearnet-residue")
    with torch.no_grad():
        mean, summed = model(**inputs, pooling="mean"), model(**inputs)
    lengths = torch.bincount(inputs["batch"]).to(torch.float32)
    residue_norm = scatter_rows(mean.residue_embeddings.norm(dim=-1), inputs["batch"], 2, "mean")
    assert (mean.protein_embeddings.norm(dim=-1) <= residue_norm + 1e-4).all()  # no longer than its rows
    torch.testing.assert_close(summed.protein_embeddings, mean.protein_embeddings * lengths.unsqueeze(-1))


# --- configs validate their fields -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("model_type", "field", "value"),
    [
        ("gearnet", "hidden_dims", "sixty-four"),
        ("gearnet", "batch_norm", "yes"),
        ("gearnet", "radius", -1.0),
        ("gearnet", "activation", "swoosh"),
        ("gearnet", "edge_message_passing", "off"),
        ("gvp", "node_h_dim", [100]),
        ("gvp", "drop_rate", 1.5),
        ("gvp", "num_layers", "five"),
        ("esm_gearnet", "esm_window", "big"),
        ("esm_gearnet", "freeze_sequence_model", "no"),
        ("esm_gearnet", "esm_learning_rate_ratio", -0.1),
    ],
)
def test_a_bad_field_fails_in_the_config_with_one_line_naming_it(tmp_path, model_type, field, value):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type, field: value}))
    with pytest.raises(ValueError, match=field) as error:
        AutoConfig.from_pretrained(tmp_path)
    message = str(error.value)
    assert "\n" not in message and repr(value) in message
