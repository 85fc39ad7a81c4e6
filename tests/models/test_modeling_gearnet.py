"""GearNet-Edge: architecture sizes, parity with the reference formulas, invariance, batching, save/load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from testing_utils import random_rotation, to64
from torchdrug_reference import reference_shapes
from transformers import AutoConfig, AutoModel

from siamdiff_hf import GearNetConfig, GearNetModel, ProteinStructureProcessor

DATA = Path(__file__).parents[1] / "data"
SMALL = dict(hidden_dims=[8, 8, 8])


def randomise_batch_norm_stats(model: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(module.weight.shape, generator=generator))
            module.bias.data.copy_(torch.randn(module.bias.shape, generator=generator))


@pytest.fixture(scope="module")
def inputs():
    processor = ProteinStructureProcessor()
    return processor([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz"], return_tensors="pt")


# --- architecture -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("level", "count"), [("residue", 20_145_635), ("atom", 834_503)])
def test_parameter_count_and_state_dict_match_torchdrug(level, count):
    config = GearNetConfig() if level == "residue" else GearNetConfig(level="atom")
    model = GearNetModel(config)
    assert sum(p.numel() for p in model.parameters()) == count
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == reference_shapes(level)
    assert len(ours) == 138
    assert model.output_dim == (3072 if level == "residue" else 768)


def test_config_presets_and_validation():
    assert GearNetConfig().readout == "sum" and GearNetConfig(level="atom").readout == "mean"
    assert GearNetConfig(level="atom").radius == 4.5 and GearNetConfig().radius == 10.0
    assert not GearNetConfig(edge_input_dim=0, num_angle_bin=0).edge_message_passing
    with pytest.raises(ValueError, match="level"):
        GearNetConfig(level="molecule")
    with pytest.raises(ValueError, match="readout"):
        GearNetConfig(readout="max")


def test_auto_classes_are_registered():
    config = AutoConfig.for_model("gearnet", **SMALL)
    assert isinstance(config, GearNetConfig)
    assert isinstance(AutoModel.from_config(config), GearNetModel)


def test_default_init_is_pytorch_default():
    model = GearNetModel(GearNetConfig(**SMALL))
    weight = model.layers[1].self_loop.weight
    bound = 1 / math.sqrt(weight.shape[1])  # kaiming_uniform(a=sqrt(5)) bound of nn.Linear
    assert weight.abs().max() <= bound and weight.abs().max() > 0.5 * bound


# --- parity with an independent, slow implementation of TorchDrug 0.2.1 `models/gearnet.py` ------------------
def dense_conv(x, edges, num_relation, conv, activation=True):
    """act(BN(linear(M) + self_loop(x))) with M summed edge by edge."""
    n, width = x.shape
    aggregated = np.zeros((n, num_relation, width))
    for u, v, r in edges:
        aggregated[v, r] += x[u]
    weights = {k: v.detach().double().numpy() for k, v in conv.state_dict().items()}
    h = aggregated.reshape(n, -1) @ weights["linear.weight"].T + weights["linear.bias"]
    h = h + x @ weights["self_loop.weight"].T + weights["self_loop.bias"]
    h = batch_norm(h, weights, "batch_norm.")
    return np.maximum(h, 0) if activation else h


def batch_norm(h, weights, prefix):
    mean, var = weights[prefix + "running_mean"], weights[prefix + "running_var"]
    return (h - mean) / np.sqrt(var + 1e-5) * weights[prefix + "weight"] + weights[prefix + "bias"]


def dense_line_graph(edges, positions, num_bins):
    """Every pair (a->b, b->c), relation = bin of the angle at b, written with loops."""
    outgoing: dict[int, list[int]] = {}
    for j, (u, _, _) in enumerate(edges):
        outgoing.setdefault(u, []).append(j)
    pairs = []
    for i, (a, b, _) in enumerate(edges):
        for j in outgoing.get(b, []):
            c = edges[j][1]
            v1, v2 = positions[c] - positions[b], positions[a] - positions[b]
            angle = math.atan2(np.linalg.norm(np.cross(v1, v2)), float(v1 @ v2))
            pairs.append((i, j, min(int(angle / math.pi * num_bins), num_bins - 1)))
    return pairs


def dense_gearnet(model, graph):
    config = model.config
    x = graph.node_features.double().numpy()
    y = graph.edge_attr.double().numpy()
    positions = graph.positions.double().numpy()
    edges = [tuple(e) for e in torch.cat([graph.edge_index, graph.edge_type[None]]).T.tolist()]
    line_edges = dense_line_graph(edges, positions, config.num_angle_bin)
    outputs = []
    for i, layer in enumerate(model.layers):
        h = dense_conv(x, edges, config.num_relation, layer)
        if h.shape == x.shape:
            h = h + x
        y = dense_conv(y, line_edges, config.num_angle_bin, model.edge_layers[i])
        update = np.zeros((x.shape[0], config.num_relation, y.shape[1]))
        for e, (_, v, r) in enumerate(edges):
            update[v, r] += y[e]
        linear = {k: v.detach().double().numpy() for k, v in layer.linear.state_dict().items()}
        h = h + np.maximum(update.reshape(x.shape[0], -1) @ linear["weight"].T + linear["bias"], 0)
        weights = {k: v.detach().double().numpy() for k, v in model.batch_norms[i].state_dict().items()}
        x = batch_norm(h, weights, "")
        outputs.append(x)
    return np.concatenate(outputs, axis=-1)


@pytest.mark.parametrize("level", ["residue", "atom"])
def test_matches_dense_reference_on_precomputed_graph(inputs, level):
    torch.manual_seed(0)
    model = GearNetModel(GearNetConfig(level=level, **SMALL)).double().eval()
    randomise_batch_norm_stats(model)
    one = {k: v[inputs["batch"] == 0] for k, v in to64(inputs).items()}
    if level == "atom":  # keep the loops short: the first 25 residues
        one = {k: v[:25] for k, v in one.items()}
    graph = model.build_graph(**one)
    assert graph.edge_attr.shape[1] == (59 if level == "residue" else 53)
    with torch.no_grad():
        out = model(**one, edge_index=graph.edge_index, edge_type=graph.edge_type, edge_attr=graph.edge_attr)
    expected = dense_gearnet(model, graph)
    np.testing.assert_allclose(out.node_embeddings.numpy(), expected, rtol=1e-9, atol=1e-9)
    readout = expected.sum(0) if level == "residue" else expected.mean(0)
    np.testing.assert_allclose(out.protein_embeddings[0].numpy(), readout, rtol=1e-9, atol=1e-8)


# --- invariance and batching --------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["residue", "atom"])
def test_embeddings_invariant_to_rotation_and_translation(inputs, level):
    torch.manual_seed(0)
    model = GearNetModel(GearNetConfig(level=level, hidden_dims=[32, 32])).double().eval()
    randomise_batch_norm_stats(model)
    batch = to64(inputs)
    generator = torch.Generator().manual_seed(1)
    moved = dict(batch)
    for _ in range(3):
        rotation = random_rotation(generator)
        shift = torch.randn(3, generator=generator, dtype=torch.float64) * 20
        moved["atom_positions"] = (batch["atom_positions"] @ rotation.T + shift) * batch["atom_mask"][..., None]
        with torch.no_grad():
            a, b = model(**batch), model(**moved)
        torch.testing.assert_close(a.residue_embeddings, b.residue_embeddings, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(a.protein_embeddings, b.protein_embeddings, rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("level", ["residue", "atom"])
def test_protein_alone_equals_protein_in_batch(inputs, level):
    torch.manual_seed(0)
    model = GearNetModel(GearNetConfig(level=level, hidden_dims=[32, 32])).eval()
    randomise_batch_norm_stats(model)
    with torch.no_grad():
        together = model(**inputs)
        for index in range(2):
            rows = inputs["batch"] == index
            alone = {k: v[rows] for k, v in inputs.items()}
            alone["batch"] = torch.zeros_like(alone["batch"])
            alone["chain_index"] = torch.zeros_like(alone["chain_index"])
            out = model(**alone)
            torch.testing.assert_close(out.residue_embeddings, together.residue_embeddings[rows], atol=1e-4, rtol=1e-5)
            torch.testing.assert_close(
                out.protein_embeddings[0], together.protein_embeddings[index], atol=1e-3, rtol=1e-5
            )


def test_output_shapes_and_hidden_states(inputs):
    model = GearNetModel(GearNetConfig(level="atom", hidden_dims=[16, 16, 16])).eval()
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    num_residues = inputs["residue_type"].shape[0]
    assert out.residue_embeddings.shape == (num_residues, 48)
    assert out.protein_embeddings.shape == (2, 48)
    assert out.node_embeddings.shape == (int(inputs["atom_mask"].sum()), 48)
    assert len(out.hidden_states) == 4 and out.hidden_states[0].shape[1] == 39
    assert torch.equal(out.batch, inputs["batch"])
    assert isinstance(model(**inputs, return_dict=False), tuple)


def test_backward_and_bf16_autocast(inputs):
    model = GearNetModel(GearNetConfig(hidden_dims=[32, 32]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inputs)
    out.protein_embeddings.float().sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_missing_inputs_and_wrong_edge_width_raise(inputs):
    model = GearNetModel(GearNetConfig(**SMALL))
    with pytest.raises(ValueError, match="residue_type"):
        model(atom_positions=inputs["atom_positions"])
    graph = model.build_graph(**inputs)
    with pytest.raises(ValueError, match="59"):
        model(**inputs, edge_index=graph.edge_index, edge_type=graph.edge_type, edge_attr=graph.edge_attr[:, :10])


# --- save / load -------------------------------------------------------------------------------------------------
def test_save_pretrained_round_trip(tmp_path, inputs):
    torch.manual_seed(0)
    model = GearNetModel(GearNetConfig(level="atom", hidden_dims=[16, 16]))
    model.train()
    with torch.no_grad():
        model(**inputs)  # move BatchNorm running statistics away from their defaults
    model.eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, GearNetModel) and not loaded.training
    with torch.no_grad():
        a, b = model(**inputs), loaded(**inputs)
    assert torch.equal(a.node_embeddings, b.node_embeddings)
    assert torch.equal(a.protein_embeddings, b.protein_embeddings)


def test_edge_message_passing_flag_and_configs_saved_before_it(tmp_path, inputs):
    plain = GearNetConfig(hidden_dims=[8], edge_message_passing=False)
    assert (plain.edge_input_dim, plain.num_angle_bin) == (0, 0) and not hasattr(GearNetModel(plain), "edge_layers")
    assert GearNetConfig().edge_message_passing and GearNetConfig(level="atom").to_dict()["edge_message_passing"]
    with pytest.raises(ValueError, match="edge_message_passing"):
        GearNetConfig(edge_input_dim=0)  # one width 0, the other not: ambiguous without the flag
    with pytest.raises(ValueError, match="num_angle_bin"):
        GearNetConfig(num_angle_bin=0, edge_message_passing=True)
    # a config.json written before the flag existed (edge_input_dim = num_angle_bin = 0 meant "off")
    torch.manual_seed(0)
    model = GearNetModel(GearNetConfig(hidden_dims=[8, 8], edge_message_passing=False)).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["edge_message_passing"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = AutoModel.from_pretrained(tmp_path)
    assert not loaded.config.edge_message_passing and loaded.state_dict().keys() == model.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).protein_embeddings, model(**inputs).protein_embeddings)


def test_recomputed_aggregation_gives_the_same_outputs_and_gradients(inputs):
    torch.manual_seed(0)
    stored = GearNetModel(GearNetConfig(level="atom", hidden_dims=[16, 16], recompute_aggregation=False)).double()
    recomputed = GearNetModel(GearNetConfig(level="atom", hidden_dims=[16, 16], recompute_aggregation=True)).double()
    recomputed.load_state_dict(stored.state_dict())
    batch = to64(inputs)
    outputs = []
    for model in (stored, recomputed):
        out = model(**batch).protein_embeddings
        out.sum().backward()
        outputs.append((out, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(outputs[0][0], outputs[1][0])
    for a, b in zip(outputs[0][1], outputs[1][1]):
        torch.testing.assert_close(a, b)
    assert GearNetConfig(level="atom").recompute_aggregation and not GearNetConfig().recompute_aggregation
