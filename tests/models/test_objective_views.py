"""What each objective masks, removes, crops or noises, and its targets, against brute force on real chains."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from testing_utils import to64
from transformers import AutoConfig, AutoModelForPreTraining

import siamdiff_hf  # noqa: F401  (registers the objectives)
from siamdiff_hf import ProteinStructureProcessor
from siamdiff_hf.models.angle_prediction.modeling_angle_prediction import bin_index, bond_angle
from siamdiff_hf.models.dihedral_prediction.modeling_dihedral_prediction import plane_dihedral
from siamdiff_hf.models.graph_views import keep_nodes, path_nodes, remove_edges, sample_edge_paths
from siamdiff_hf.models.pretraining_utils import ProteinBatch, sample_in_groups
from siamdiff_hf.models.siamdiff.conformer import _dihedral, chi_angles
from siamdiff_hf.models.torsional_diffusion.modeling_torsional_diffusion import score_scale, wrapped_normal_score
from siamdiff_hf.protein.constants import RESIDUE_ID

DATA = Path(__file__).parents[1] / "data"


def build(name: str, level: str = "residue", **settings):
    encoder = {"model_type": "gearnet", "level": level, "hidden_dims": [16]}
    return AutoModelForPreTraining.from_config(AutoConfig.for_model(name, encoder_config=encoder, **settings))


@pytest.fixture(scope="module")
def inputs():
    processor = ProteinStructureProcessor(crop_length=40)
    return processor([DATA / "2xcjA.pdb.gz", DATA / "1mr1D.pdb.gz"], return_tensors="pt")


def graph_of(model, inputs):
    return ProteinBatch(**{k: inputs[k] for k in ("residue_type", "atom_positions", "atom_mask", "batch")}).graph(
        model.encoder
    )


def spy_graphs(model) -> list:
    """Record every graph the encoder is given."""
    seen, original = [], model.encoder.forward

    def spy(*args, graph=None, **kwargs):
        seen.append(graph)
        return original(*args, graph=graph, **kwargs)

    model.encoder.forward = spy
    return seen


def enumerate_paths(graph, length: int) -> set[tuple[int, ...]]:
    """TorchDrug's enumeration: line graph (then its line graph) without self loops and back-and-forth steps."""
    source, target = graph.edge_index.tolist()
    into = {}
    for e, t in enumerate(target):
        into.setdefault(t, []).append(e)
    pairs = [(e1, e2) for e2 in range(len(source)) for e1 in into.get(source[e2], [])
             if e1 != e2 and source[e1] != target[e2]]  # fmt: skip
    if length == 2:
        return set(pairs)
    starting = {}
    for e1, e2 in pairs:
        starting.setdefault(e1, []).append(e2)
    return {(e1, e2, e3) for e1, e2 in pairs for e3 in starting.get(e2, []) if e1 != e3}


@pytest.mark.parametrize("length", [2, 3])
def test_paths_are_drawn_uniformly_from_torchdrugs_line_graph_edges(length):
    processor = ProteinStructureProcessor(crop_length=12)
    small = processor([DATA / "2xcjA.pdb.gz"], return_tensors="pt")
    model = build("angle_prediction")
    graph = graph_of(model, small)
    valid = enumerate_paths(graph, length)
    draws = 30 * len(valid)
    paths = sample_edge_paths(graph, length, draws, torch.Generator().manual_seed(0))
    assert paths.shape == (draws, length)
    counts = Counter(map(tuple, paths.tolist()))
    assert set(counts) <= valid and len(counts) > 0.99 * len(valid)
    # Uniform: each path's count is Binomial(draws, 1/|valid|), mean 30, sd ~5.5.
    assert abs(sum(counts.values()) / len(valid) - 30) < 1e-9 and max(counts.values()) < 60


def test_keep_nodes_keeps_the_induced_subgraph_and_renumbers_residues(inputs):
    model = build("multiview_contrast", "atom")
    graph = graph_of(model, inputs)
    keep = (graph.node_residue % 3 == 0) | (graph.node_batch == 1)
    sub = keep_nodes(graph, keep)
    both = keep[graph.edge_index[0]] & keep[graph.edge_index[1]]
    assert sub.num_nodes == int(keep.sum()) and sub.num_edges == int(both.sum())
    torch.testing.assert_close(sub.edge_lengths(), graph.edge_lengths()[both])
    torch.testing.assert_close(sub.edge_attr, graph.edge_attr[both])
    assert sub.num_residues == len(graph.node_residue[keep].unique())
    assert torch.equal(sub.node_residue.unique(), torch.arange(sub.num_residues))


def test_multiview_crops_follow_torchdrug(inputs):
    model = build("multiview_contrast")
    graph = graph_of(model, inputs)
    generator = torch.Generator().manual_seed(0)
    sequence = model.subsequence(graph, generator)
    kept = graph.node_residue[torch.isin(graph.positions, sequence.positions).all(-1)]
    for b in range(2):
        rows = kept[graph.node_batch[kept] == b]
        assert len(rows) == 40 if b else len(rows) <= 50  # chains of 40 residues: <= 50 keeps all
        assert torch.equal(rows, torch.arange(int(rows[0]), int(rows[0]) + len(rows)))  # one contiguous window
    short = build("multiview_contrast", max_subsequence_length=10).subsequence(graph, generator)
    assert torch.bincount(short.node_batch).tolist() == [10, 10]
    space = model.subspace(graph, torch.Generator().manual_seed(1))
    sizes = torch.bincount(graph.node_batch)
    centre, _ = sample_in_groups(sizes, 1, torch.Generator().manual_seed(1))  # the same draw
    for b in range(2):
        own = graph.positions[graph.node_batch == b]
        distance = (own - graph.positions[centre[b]]).norm(dim=-1)
        radius = max(15.0, 1.5 * float(distance.sort().values[14]))
        assert torch.equal(space.positions[space.node_batch == b], own[distance < radius])
    masked = model.edge_mask(graph, torch.Generator().manual_seed(2))
    per_graph = torch.bincount(graph.node_batch[graph.edge_index[1]])
    removed = per_graph - torch.bincount(masked.node_batch[masked.edge_index[1]])
    assert ((removed >= 1) & (removed <= (per_graph * 0.15).long())).all()


@pytest.mark.parametrize("level", ["residue", "atom"])
def test_residue_type_prediction_hides_the_masked_residues(inputs, level):
    model = build("residue_type_prediction", level).eval()
    seen = spy_graphs(model)
    masked = torch.tensor([3, 3, 10, 45, 70])
    with torch.no_grad():
        model(**inputs, masked_residues=masked)
    graph = seen[0]
    hidden = torch.isin(graph.node_residue, masked)
    assert graph.node_features[hidden, -21:].abs().sum() == 0 if level == "atom" else True
    if level == "residue":
        assert graph.node_features[masked].abs().sum() == 0 and graph.node_features[~hidden].sum() > 0
    else:  # only N, CA, C of a masked residue stay
        assert int(hidden.sum()) == 3 * len(masked.unique())
    drawn = model.sample_masked_residues(inputs["batch"], torch.Generator().manual_seed(0))
    assert len(drawn) == 2 * 6  # floor(0.15 * 40) per protein, with replacement
    assert (drawn[:6] < 40).all() and (drawn[6:] >= 40).all()


def test_distance_prediction_removes_the_drawn_edges_and_targets_their_lengths(inputs):
    model = build("distance_prediction").eval()
    seen = spy_graphs(model)
    graph = graph_of(model, inputs)
    edges = torch.tensor([0, 5, 5, graph.num_edges - 1])
    with torch.no_grad():
        out = model(**inputs, sampled_edges=edges)
    assert seen[0].num_edges == graph.num_edges - 3
    hidden = model.encoder(graph=remove_edges(graph, edges)).node_embeddings
    source, target = graph.edge_index[:, edges]
    prediction = model.mlp(torch.cat([hidden[source], hidden[target]], -1)).squeeze(-1)
    expected = ((prediction - graph.edge_lengths()[edges]) ** 2).mean()
    torch.testing.assert_close(out.loss, expected)


def test_angle_and_dihedral_targets(inputs):
    batch = to64(inputs)
    model = build("angle_prediction")
    graph = graph_of(model, batch)
    paths = sample_edge_paths(graph, 3, 200, torch.Generator().manual_seed(0))
    nodes = path_nodes(graph, paths)  # i, j, k, t for k -> t -> j -> i
    p = graph.positions[nodes]
    signed = _dihedral(p[:, 0], p[:, 1], p[:, 3], p[:, 2])  # IUPAC dihedral i-j-t-k
    torch.testing.assert_close(plane_dihedral(p), signed.abs())
    u, v = p[:, 0] - p[:, 1], p[:, 2] - p[:, 1]
    cosine = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1))
    angle = bond_angle(p[:, :3])
    keep = u.norm(dim=-1) * v.norm(dim=-1) > 0
    torch.testing.assert_close(angle[keep], torch.arccos(cosine[keep].clamp(-1, 1)), atol=1e-6, rtol=0)
    edges = torch.tensor([0.0, math.pi / 8 - 1e-9, math.pi / 8, math.pi / 2, math.pi], dtype=torch.float64)
    assert bin_index(edges, 8).tolist() == [0, 0, 1, 4, 7]


def test_torsional_diffusion_rotates_the_chosen_torsion_by_its_noise(inputs):
    model = build("torsional_diffusion", "atom").double().eval()
    batch = to64(inputs)
    seen_positions = []
    original = model.encoder.build_graph

    def spy(residue_type, atom_positions, *args, **kwargs):
        seen_positions.append(atom_positions)
        return original(residue_type, atom_positions, *args, **kwargs)

    model.encoder.build_graph = spy
    inputs_ = ProteinBatch(**{k: batch[k] for k in ("residue_type", "atom_positions", "atom_mask", "batch")})
    choice = model.choose_torsions(inputs_, torch.Generator().manual_seed(0))
    noise = torch.randn(choice.shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        model(**batch, torsion_choice=choice, torsion_noise=noise, noise_levels=torch.tensor([10, 40]))
    before, exists = chi_angles(batch["residue_type"], batch["atom_positions"], batch["atom_mask"])
    after, _ = chi_angles(batch["residue_type"], seen_positions[0], batch["atom_mask"])
    sigma = model.config.sigmas[torch.tensor([10, 40])][batch["batch"]]
    rows = (choice >= 0).nonzero().flatten()
    assert len(rows) > 20 and (batch["residue_type"][rows] != RESIDUE_ID["PRO"]).all()  # proline never noised
    change = torch.remainder(after - before + math.pi, 2 * math.pi) - math.pi
    expected = torch.zeros_like(change)
    expected[rows, choice[rows]] = torch.remainder(sigma[rows] * noise[rows] + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(change * exists, expected * exists, atol=1e-9, rtol=0)


def test_wrapped_normal_score_and_its_scale():
    sigma = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    x = torch.tensor([0.05, -1.0, 2.5], dtype=torch.float64, requires_grad=True)
    k = torch.arange(-10, 11, dtype=torch.float64)
    density = torch.exp(-((x[:, None] + 2 * math.pi * k) ** 2) / (2 * sigma[:, None] ** 2)).sum(-1)
    (grad,) = torch.autograd.grad(density.log().sum(), x)
    torch.testing.assert_close(wrapped_normal_score(x.detach(), sigma), grad)
    scale = score_scale(torch.tensor([0.01, 0.05], dtype=torch.float64))
    torch.testing.assert_close(scale, 1 / torch.tensor([0.01, 0.05], dtype=torch.float64), rtol=1e-4, atol=0)


def test_combined_loss_is_the_weighted_sum_of_the_objectives(inputs):
    objectives = [{"objective": "residue_type_prediction", "weight": 2.0}, {"objective": "dihedral_prediction"}]
    model = build("combined_objectives", objectives=objectives).eval()
    batch = ProteinBatch(**{k: inputs[k] for k in ("residue_type", "atom_positions", "atom_mask", "batch")})
    with torch.no_grad():
        out = model(**inputs, generator=torch.Generator().manual_seed(3))
        generator = torch.Generator().manual_seed(3)
        first = model.objectives[0].step(model.encoder, batch, generator)
        second = model.objectives[1].step(model.encoder, batch, generator)
    torch.testing.assert_close(out.loss, 2.0 * first.loss + second.loss)
    assert out.residue_type_prediction_accuracy == first.accuracy
    assert out.dihedral_prediction_loss == second.loss
    assert not any(k.startswith("encoder.") for k in model.objectives.state_dict())  # one encoder, shared
