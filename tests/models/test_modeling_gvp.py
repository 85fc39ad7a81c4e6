"""GVP-GNN: SiamDiff's architecture sizes, parity with the reference formulas, equivariance, batching, save/load,
SiamDiff pre-training with GVP, and conversion of SiamDiff-format state dicts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from testing_utils import random_rotation, to64
from transformers import AutoConfig, AutoModel

from siamdiff_hf import ProteinStructureProcessor, SiamDiffConfig, SiamDiffForPreTraining
from siamdiff_hf.convert.gvp import convert_gvp_state_dict
from siamdiff_hf.convert.torchdrug import CheckpointError
from siamdiff_hf.graph import ProteinGraph
from siamdiff_hf.models.gvp import GVPConfig, GVPModel
from siamdiff_hf.models.gvp.modeling_gvp import VectorDropout

DATA = Path(__file__).parents[1] / "data"
SMALL = dict(node_h_dim=(16, 4), edge_h_dim=(8, 1), num_layers=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Small graphs: on shared CPUs intra-op threads only contend (observed ~20x slower with 2 busy cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def inputs():
    processor = ProteinStructureProcessor(crop_length=40)
    return processor([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz"], return_tensors="pt")


# --- architecture -------------------------------------------------------------------------------------------------
def gvp_shapes(prefix: str, si: int, vi: int, so: int, vo: int) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of one vector-gated GVP (SiamDiff `siamdiff/layer.py` `GVP`: no dummy_param)."""
    if not vi:
        return {f"{prefix}.ws.weight": (so, si), f"{prefix}.ws.bias": (so,)}
    h = max(vi, vo)
    shapes = {f"{prefix}.wh.weight": (h, vi), f"{prefix}.ws.weight": (so, h + si), f"{prefix}.ws.bias": (so,)}
    if vo:
        shapes |= {f"{prefix}.wv.weight": (vo, h), f"{prefix}.wsv.weight": (vo, so), f"{prefix}.wsv.bias": (vo,)}
    return shapes


def siamdiff_gvp_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of SiamDiff's atom-level GVPGNN state dict: 199 keys.

    SiamDiff `siamdiff/model.py` `GVPGNN` with `config/atom/*_gvp.yaml` (node (18, 0) -> (100, 16), edge (16, 1) ->
    (32, 1), 5 layers, vector gates); the layers of `siamdiff/layer.py`.
    """
    shapes = {"residue_embdding.weight": (18, 21), "embedding.weight": (18, 18)}
    shapes |= {"W_v.0.scalar_norm.weight": (18,), "W_v.0.scalar_norm.bias": (18,)} | gvp_shapes("W_v.1", 18, 0, 100, 16)
    shapes |= {"W_e.0.scalar_norm.weight": (16,), "W_e.0.scalar_norm.bias": (16,)} | gvp_shapes("W_e.1", 16, 1, 32, 1)
    for layer in range(5):
        p = f"layers.{layer}"
        shapes |= gvp_shapes(f"{p}.conv.message_func.0", 2 * 100 + 32, 2 * 16 + 1, 100, 16)
        shapes |= gvp_shapes(f"{p}.conv.message_func.1", 100, 16, 100, 16)
        shapes |= gvp_shapes(f"{p}.conv.message_func.2", 100, 16, 100, 16)
        for i in range(2):
            shapes |= {f"{p}.norm.{i}.scalar_norm.weight": (100,), f"{p}.norm.{i}.scalar_norm.bias": (100,)}
            shapes[f"{p}.dropout.{i}.vdropout.dummy_param"] = (0,)
        shapes |= gvp_shapes(f"{p}.ff_func.0", 100, 16, 400, 32) | gvp_shapes(f"{p}.ff_func.1", 400, 32, 100, 16)
    shapes |= {"W_out.0.scalar_norm.weight": (100,), "W_out.0.scalar_norm.bias": (100,)}
    shapes |= gvp_shapes("W_out.1", 100, 16, 100, 0)
    return shapes


def test_parameter_count_and_state_dict_match_siamdiff():
    reference = siamdiff_gvp_shapes()
    assert len(reference) == 199
    # Shapes the reference states literally for layer 0.
    assert reference["layers.0.conv.message_func.0.wh.weight"] == (33, 33)
    assert reference["layers.0.conv.message_func.0.ws.weight"] == (100, 265)
    assert reference["layers.0.ff_func.0.ws.weight"] == (400, 132)
    assert reference["layers.0.ff_func.1.ws.weight"] == (100, 432)
    model = GVPModel(GVPConfig())
    assert sum(p.numel() for p in model.parameters()) == 874_982
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: v for k, v in reference.items() if not k.endswith("dummy_param")}
    assert model.output_dim == 100


def test_config_defaults_and_validation():
    config = GVPConfig()
    assert config.level == "atom" and config.readout == "mean" and config.radius == 4.5
    assert config.node_h_dim == [100, 16] and config.edge_in_dim == [16, 1] and config.rbf_max == 20.0
    assert config.max_num_neighbors == 32 and config.drop_rate == 0.1 and config.vector_gate
    with pytest.raises(ValueError, match="readout"):
        GVPConfig(readout="max")
    with pytest.raises(ValueError, match="node_in_dim"):
        GVPConfig(node_in_dim=(18, 2))
    with pytest.raises(ValueError, match="edge_in_dim"):
        GVPConfig(edge_in_dim=(16, 2))
    restored = GVPConfig.from_dict(GVPConfig(**SMALL).to_dict())
    assert restored.node_h_dim == [16, 4] and restored.level == "atom"


def test_auto_classes_and_siamdiff_nesting():
    config = AutoConfig.for_model("gvp", **SMALL)
    assert isinstance(config, GVPConfig)
    assert isinstance(AutoModel.from_config(config), GVPModel)
    nested = SiamDiffConfig(encoder_config={"model_type": "gvp", **SMALL})
    assert nested.level == "atom" and isinstance(nested.encoder_config, GVPConfig)


# --- parity with SiamDiff `siamdiff/layer.py` (GVP, GVPLayerNorm, GVPConv) and `siamdiff/model.py`, in numpy ----
def np_gvp(w, prefix, s, v, vo, scalar_relu):
    if f"{prefix}.wh.weight" in w:
        vh = np.einsum("hc,nck->nhk", w[f"{prefix}.wh.weight"], v)
        norm = np.sqrt(np.maximum((vh**2).sum(-1), 1e-8))
        s_out = np.concatenate([s, norm], -1) @ w[f"{prefix}.ws.weight"].T + w[f"{prefix}.ws.bias"]
        v_out = np.zeros((s.shape[0], 0, 3))
        if vo:
            v_out = np.einsum("oh,nhk->nok", w[f"{prefix}.wv.weight"], vh)
            gate = s_out @ w[f"{prefix}.wsv.weight"].T + w[f"{prefix}.wsv.bias"]  # before the activation
            v_out = v_out / (1 + np.exp(-gate))[..., None]
    else:
        s_out = s @ w[f"{prefix}.ws.weight"].T + w[f"{prefix}.ws.bias"]
        v_out = np.zeros((s.shape[0], vo, 3))
    return (np.maximum(s_out, 0) if scalar_relu else s_out), v_out


def np_layer_norm(w, prefix, s, v):
    s = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + 1e-5)
    s = s * w[f"{prefix}.scalar_norm.weight"] + w[f"{prefix}.scalar_norm.bias"]
    if v.shape[1]:
        v = v / np.sqrt(np.maximum((v**2).sum(-1), 1e-8).mean(-1))[:, None, None]
    return s, v


def np_gvp_gnn(model: GVPModel, graph: ProteinGraph) -> tuple[np.ndarray, list[np.ndarray]]:
    w = {k: v.double().numpy() for k, v in model.state_dict().items()}
    ns, nv = model.config.node_h_dim
    x = graph.node_features.double().numpy()
    pos = graph.positions.double().numpy()
    src, dst = graph.edge_index.numpy()
    s = w["embedding.weight"][x[:, :18].argmax(-1)] + x[:, 18:] @ w["residue_embdding.weight"].T
    s, v = np_gvp(w, "W_v.1", *np_layer_norm(w, "W_v.0", s, np.zeros((len(s), 0, 3))), nv, False)
    vec = pos[dst] - pos[src]  # SiamDiff: pos[node_out] - pos[node_in]
    rbf = np.exp(-(((np.linalg.norm(vec, axis=-1)[:, None] - np.linspace(0, 20, 16)) / 1.25) ** 2))
    es, ev = np_gvp(w, "W_e.1", *np_layer_norm(w, "W_e.0", rbf, vec[:, None]), 1, False)
    count = np.maximum(np.bincount(dst, minlength=len(s)), 1)
    vectors = []
    for layer in range(model.config.num_layers):
        p = f"layers.{layer}"
        ms = np.concatenate([s[src], es, s[dst]], -1)
        mv = np.concatenate([v[src], ev, v[dst]], 1)
        for k in range(3):
            ms, mv = np_gvp(w, f"{p}.conv.message_func.{k}", ms, mv, nv, k < 2)
        agg_s, agg_v = np.zeros((len(s), ns)), np.zeros((len(s), nv, 3))
        np.add.at(agg_s, dst, ms)
        np.add.at(agg_v, dst, mv)
        s, v = np_layer_norm(w, f"{p}.norm.0", s + agg_s / count[:, None], v + agg_v / count[:, None, None])
        hs, hv = np_gvp(w, f"{p}.ff_func.0", s, v, 2 * nv, True)
        hs, hv = np_gvp(w, f"{p}.ff_func.1", hs, hv, nv, False)
        s, v = np_layer_norm(w, f"{p}.norm.1", s + hs, v + hv)
        vectors.append(v)
    s, _ = np_gvp(w, "W_out.1", *np_layer_norm(w, "W_out.0", s, v), 0, True)
    return s, vectors


def test_matches_numpy_reference(inputs):
    torch.manual_seed(0)
    model = GVPModel(GVPConfig(**SMALL)).double().eval()
    with torch.no_grad():  # move LayerNorm affines away from (1, 0) so that they are exercised
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.normal_(1, 0.3)
                module.bias.normal_(0, 0.3)
    one = {k: v[inputs["batch"] == 0][:20] for k, v in to64(inputs).items()}
    graph = model.build_graph(**one)
    with torch.no_grad():
        out = model(graph=graph, output_hidden_states=True)
    expected, vectors = np_gvp_gnn(model, graph)
    np.testing.assert_allclose(out.node_embeddings.numpy(), expected, rtol=1e-9, atol=1e-10)
    for ours, theirs in zip(out.vector_hidden_states[1:], vectors, strict=True):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(out.protein_embeddings[0].numpy(), expected.mean(0), rtol=1e-9, atol=1e-10)


def test_edge_features_are_rbf_and_raw_target_minus_source():
    model = GVPModel(GVPConfig(**SMALL))
    positions = torch.tensor([[0.0, 0.0, 0.0], [20 / 15, 0.0, 0.0]])  # the second RBF centre
    graph = ProteinGraph(
        node_features=torch.zeros(2, 39), positions=positions, node_batch=torch.zeros(2, dtype=torch.long),
        node_residue=torch.zeros(2, dtype=torch.long), edge_index=torch.tensor([[0], [1]]),
        edge_type=torch.zeros(1, dtype=torch.long), edge_attr=None, num_relation=1, num_graphs=1, num_residues=1,
    )  # fmt: skip
    rbf, vector = model.edge_features(graph)
    torch.testing.assert_close(vector, positions[1:].unsqueeze(0))  # target - source, not normalised
    # Centres linspace(0, 20, 16) (spacing 4/3 A) but width 20 / 16 = 1.25 A, as in SiamDiff.
    assert rbf.shape == (1, 16) and rbf[0].argmax() == 1
    torch.testing.assert_close(rbf[0, 1], torch.tensor(1.0))
    torch.testing.assert_close(rbf[0, 0], torch.tensor(math.exp(-((20 / 15 / 1.25) ** 2))))


def test_vector_dropout_drops_whole_channels():
    dropout = VectorDropout(0.5).train()
    torch.manual_seed(0)
    v = torch.ones(200, 8, 3)
    out = dropout(v)
    kept = out[..., 0] != 0
    assert torch.equal(out, kept.unsqueeze(-1).float().expand_as(v) * 2.0)
    assert 0.3 < kept.float().mean() < 0.7
    assert torch.equal(dropout.eval()(v), v)


# --- invariance, equivariance and batching ------------------------------------------------------------------------
def test_scalars_invariant_and_vectors_equivariant(inputs):
    torch.manual_seed(0)
    model = GVPModel(GVPConfig(**SMALL)).double().eval()
    batch = to64(inputs)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        a = model(**batch, output_hidden_states=True)
    assert len(a.vector_hidden_states) == 3 and a.vector_hidden_states[-1].shape[1:] == (4, 3)
    for _ in range(3):
        rotation = random_rotation(generator)
        shift = torch.randn(3, generator=generator, dtype=torch.float64) * 20
        mask = batch["atom_mask"][..., None]
        moved = dict(batch, atom_positions=(batch["atom_positions"] @ rotation.T + shift) * mask)
        with torch.no_grad():
            b = model(**moved, output_hidden_states=True)
        for name in ("node_embeddings", "residue_embeddings", "protein_embeddings"):
            torch.testing.assert_close(getattr(b, name), getattr(a, name), rtol=1e-9, atol=1e-9)
        for s_a, s_b in zip(a.hidden_states, b.hidden_states, strict=True):
            torch.testing.assert_close(s_b, s_a, rtol=1e-9, atol=1e-9)
        for v_a, v_b in zip(a.vector_hidden_states[1:], b.vector_hidden_states[1:], strict=True):
            assert v_a.abs().max() > 0.1  # the check is not vacuous
            torch.testing.assert_close(v_b, v_a @ rotation.T, rtol=1e-9, atol=1e-9)


def test_protein_alone_equals_protein_in_batch(inputs):
    torch.manual_seed(0)
    model = GVPModel(GVPConfig(**SMALL)).eval()
    with torch.no_grad():
        together = model(**inputs)
        for index in range(2):
            rows = inputs["batch"] == index
            alone = {k: v[rows] for k, v in inputs.items()}
            alone["batch"] = torch.zeros_like(alone["batch"])
            alone["chain_index"] = torch.zeros_like(alone["chain_index"])
            out = model(**alone)
            tolerance = dict(atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.residue_embeddings, together.residue_embeddings[rows], **tolerance)
            torch.testing.assert_close(out.protein_embeddings[0], together.protein_embeddings[index], **tolerance)


def test_output_shapes_backward_and_errors(inputs):
    model = GVPModel(GVPConfig(**SMALL))
    out = model(**inputs, output_hidden_states=True)
    num_atoms = int(inputs["atom_mask"].sum())
    assert out.node_embeddings.shape == (num_atoms, 16)
    assert out.residue_embeddings.shape == (inputs["residue_type"].shape[0], 16)
    assert out.protein_embeddings.shape == (2, 16)
    assert torch.equal(out.batch, inputs["batch"]) and out.node_batch.shape == (num_atoms,)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (num_atoms, 16)
    out.protein_embeddings.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert isinstance(model(**inputs, return_dict=False), tuple)
    with pytest.raises(ValueError, match="residue_type"):
        model(atom_positions=inputs["atom_positions"])


# --- save / load ---------------------------------------------------------------------------------------------------
def test_save_pretrained_round_trip(tmp_path, inputs):
    torch.manual_seed(0)
    model = GVPModel(GVPConfig(**SMALL)).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, GVPModel) and not loaded.training
    with torch.no_grad():
        a, b = model(**inputs), loaded(**inputs)
    assert torch.equal(a.node_embeddings, b.node_embeddings)
    assert torch.equal(a.protein_embeddings, b.protein_embeddings)


# --- SiamDiff with a GVP encoder ----------------------------------------------------------------------------------
def test_siamdiff_steps_at_atom_level_lower_the_loss():
    processor = ProteinStructureProcessor(crop_length=30)
    batch = processor([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz", DATA / "3ny7A.pdb.gz"], return_tensors="pt")
    torch.manual_seed(0)
    encoder = GVPConfig(node_h_dim=(32, 8), edge_h_dim=(16, 1), num_layers=2, drop_rate=0.0)
    model = SiamDiffForPreTraining(SiamDiffConfig(encoder_config=encoder))
    assert model.config.level == "atom" and isinstance(model.encoder, GVPModel)

    def evaluate():
        with torch.no_grad():
            fixed = dict(generator=torch.Generator().manual_seed(123), timesteps=torch.tensor([20, 50, 80]))
            return model.eval()(**batch, **fixed)

    before = evaluate()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(50):
        out = model(**batch, generator=generator)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    after = evaluate()
    assert after.loss < 0.8 * before.loss, (before.loss, after.loss)
    assert after.structure_loss < before.structure_loss


# --- conversion of SiamDiff-format state dicts -------------------------------------------------------------------
def random_siamdiff_state_dict(prefix: str = "model.") -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    state = {prefix + k: torch.randn(shape, generator=generator) * 0.2 for k, shape in siamdiff_gvp_shapes().items()}
    # A whole downstream task file: heads and buffers next to the encoder.
    state |= {"mlp.layers.0.weight": torch.randn(100, 100), "mlp.layers.0.bias": torch.zeros(100)}
    state["weight"] = torch.ones(1)
    return state


def test_converted_state_dict_loads_and_runs(inputs):
    state = random_siamdiff_state_dict()
    # SiamDiff's MSP/PIP tasks tie the encoder and store it twice, as `model.*` and `model2.*`.
    state |= {"model2." + k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    model = convert_gvp_state_dict(state)
    assert not model.training and model.config.node_h_dim == [100, 16] and model.config.num_layers == 5
    ours = model.state_dict()
    for key, value in state.items():
        if key.startswith("model.") and not key.endswith("dummy_param"):
            assert torch.equal(ours[key[len("model.") :]], value), key
    assert len(ours) == 189
    with torch.no_grad():
        out = model(**{k: v[:20] for k, v in inputs.items()})
    assert torch.isfinite(out.protein_embeddings).all() and out.protein_embeddings.shape == (1, 100)


def test_converter_reads_sizes_and_rejects_mismatches():
    small = GVPModel(GVPConfig(**SMALL, num_message_layers=2, num_feedforward_layers=1)).state_dict()
    small["layers.0.dropout.0.vdropout.dummy_param"] = torch.empty(0)
    converted = convert_gvp_state_dict({"encoder." + k: v for k, v in small.items()})
    assert converted.config.node_h_dim == [16, 4] and converted.config.num_layers == 2
    assert converted.config.num_message_layers == 2 and converted.config.num_feedforward_layers == 1
    state = random_siamdiff_state_dict("")
    state["layers.4.ff_func.1.ws.weight"] = torch.zeros(100, 431)
    with pytest.raises(CheckpointError, match="wrong shapes"):
        convert_gvp_state_dict(state)
    with pytest.raises(CheckpointError, match="no GVP-GNN encoder"):
        convert_gvp_state_dict({"layers.0.self_loop.weight": torch.zeros(4, 4)})
