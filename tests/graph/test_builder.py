"""Residue- and atom-level GearNet graphs and edge features against brute-force references."""

from __future__ import annotations

import math

import pytest
import torch
from _brute import edge_set, radius_edges, residue_edges
from _pdb import DATA, read_atoms, read_ca

from siamdiff_hf.graph import SEQUENTIAL_RELATIONS, atom_graph, gearnet_edge_features, residue_graph
from siamdiff_hf.protein.constants import RESIDUE_ID


def _residue_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Protein 0 = 2xdgA as chain A + 2xcjA as chain B; protein 1 = 1mr1D."""
    parts = [read_ca(DATA / name) for name in ("2xdgA.pdb.gz", "2xcjA.pdb.gz", "1mr1D.pdb.gz")]
    positions = torch.cat([p for p, _ in parts])
    sizes = [len(p) for p, _ in parts]
    chain = torch.repeat_interleave(torch.tensor([0, 1, 0]), torch.tensor(sizes))
    batch = torch.repeat_interleave(torch.tensor([0, 0, 1]), torch.tensor(sizes))
    names = [name for _, names in parts for name in names]
    return positions, batch, chain, names


def test_residue_graph_matches_brute_force_with_two_chains_and_two_proteins():
    positions, batch, chain, _ = _residue_batch()
    edge_index, edge_type, num_relation = residue_graph(positions, batch, chain)
    assert num_relation == SEQUENTIAL_RELATIONS + 2 == 7
    assert edge_set(edge_index, edge_type) == sorted(residue_edges(positions, batch.tolist(), chain.tolist()))
    src, dst = edge_index
    assert (batch[src] == batch[dst]).all()
    sequential = edge_type < SEQUENTIAL_RELATIONS
    assert (chain[src] == chain[dst])[sequential].all()  # no sequential edge crosses the A/B boundary
    assert ((src == dst) == (edge_type == 2)).all()  # self loops are exactly relation 2
    assert (edge_type == 5).any() and (edge_type == 6).any() and (batch[src] == 1).any()
    # Concatenation order: sequential, then radius, then kNN.
    assert torch.equal(edge_type, torch.sort(edge_type, stable=True).values)


def test_residue_graph_single_chain_matches_brute_force_and_respects_residue_index():
    positions, _ = read_ca(DATA / "3ny7A.pdb.gz")
    zeros = torch.zeros(len(positions), dtype=torch.long)
    edge_index, edge_type, _ = residue_graph(positions, zeros, zeros)
    assert edge_set(edge_index, edge_type) == sorted(residue_edges(positions, zeros.tolist(), zeros.tolist()))
    # A residue index spread by 10 makes every spatial pair pass the |i - j| >= 5 filter.
    spread_index, spread_type, _ = residue_graph(positions, zeros, zeros, torch.arange(len(positions)) * 10)
    spatial = spread_type >= SEQUENTIAL_RELATIONS
    assert spatial.sum() > (edge_type >= SEQUENTIAL_RELATIONS).sum()
    assert (spread_index[0] != spread_index[1])[spatial].all()


def test_zero_length_spatial_edges_are_dropped():
    positions = torch.tensor([[0.0, 0.0, 0.0]] * 2 + [[float(i), 0.0, 0.0] for i in range(1, 9)])
    zeros = torch.zeros(len(positions), dtype=torch.long)
    edge_index, edge_type, _ = residue_graph(positions, zeros, zeros, torch.tensor([0, 7, *range(1, 9)]))
    spatial = edge_type >= SEQUENTIAL_RELATIONS
    assert ((positions[edge_index[0]] - positions[edge_index[1]]).norm(dim=-1)[spatial] > 0).all()
    assert spatial.any()


@pytest.mark.parametrize(("radius", "min_distance"), [(4.5, 0), (4.5, 2), (8.0, 0)])
def test_atom_graph_matches_brute_force(radius, min_distance):
    first, res_first, _, _ = read_atoms(DATA / "2xcjA.pdb.gz")
    second, res_second, _, _ = read_atoms(DATA / "2xdgA.pdb.gz")
    first, res_first = first[:300], res_first[:300]
    positions = torch.cat([first, second[:300]])
    residue = torch.cat([res_first, res_second[:300] + res_first.max() + 1])
    batch = torch.tensor([0] * 300 + [1] * 300)
    edge_index, edge_type, num_relation = atom_graph(
        positions, batch, residue, radius=radius, min_distance=min_distance
    )
    expected = [
        (s, t)
        for s, t in radius_edges(positions, radius, batch.tolist(), 32)
        if abs(residue[s] - residue[t]) >= min_distance
    ]
    assert edge_set(edge_index) == sorted(expected)
    assert num_relation == 1 and (edge_type == 0).all()
    if radius == 8.0:  # the cap binds at this radius, before the (here empty) filter
        assert torch.bincount(edge_index[1]).max() == 32


def test_gearnet_edge_features_residue_level():
    positions, batch, chain, names = _residue_batch()
    residue_type = torch.tensor([RESIDUE_ID.get(name, 20) for name in names])
    residue_type[3] = 20  # an unknown residue counts as GLY (0) in the edge one-hots
    edge_index, edge_type, num_relation = residue_graph(positions, batch, chain)
    features = gearnet_edge_features(
        edge_index, edge_type, num_relation, residue_type, torch.arange(len(positions)), positions
    )
    assert features.shape == (edge_index.shape[1], 59)
    picks = [*torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(0))[:20].tolist()]
    picks += torch.nonzero((edge_index[0] == 3) | (edge_index[1] == 3)).flatten()[:3].tolist()
    for e in picks:
        _check_edge(
            features[e],
            edge_index[:, e].tolist(),
            int(edge_type[e]),
            residue_type,
            positions,
            7,
            list(range(len(positions))),
        )


def test_gearnet_edge_features_atom_level():
    positions, residue, _, names = read_atoms(DATA / "2xdgA.pdb.gz")
    atom_residue_type = torch.tensor([RESIDUE_ID.get(names[r], 20) for r in residue.tolist()])
    batch = torch.zeros(len(positions), dtype=torch.long)
    edge_index, edge_type, num_relation = atom_graph(positions, batch, residue)
    features = gearnet_edge_features(edge_index, edge_type, num_relation, atom_residue_type, residue, positions)
    assert features.shape == (edge_index.shape[1], 53)
    assert (features[:, 40] == 1).all()  # the single relation
    for e in torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(1))[:20].tolist():
        _check_edge(features[e], edge_index[:, e].tolist(), 0, atom_residue_type, positions, 1, residue.tolist())


def _check_edge(row, edge, relation, residue_type, positions, num_relation, residue_index):
    src, dst = edge
    expected = [0.0] * (20 + 20 + num_relation + 11 + 1)
    type_src, type_dst = int(residue_type[src]), int(residue_type[dst])
    expected[type_src if type_src < 20 else 0] = 1.0
    expected[20 + (type_dst if type_dst < 20 else 0)] = 1.0
    expected[40 + relation] = 1.0
    expected[40 + num_relation + min(abs(residue_index[src] - residue_index[dst]), 10)] = 1.0
    expected[-1] = math.dist(positions[src].tolist(), positions[dst].tolist())
    assert row.tolist()[:-1] == expected[:-1]
    assert row[-1].item() == pytest.approx(expected[-1], abs=1e-9)


def test_node_pairs_are_the_distinct_unordered_pairs_of_the_edges():
    """`ProteinGraph.node_pairs`: every edge maps to its own two nodes, each unordered pair appears once."""
    from siamdiff_hf import GearNetConfig, GearNetModel, ProteinStructureProcessor

    inputs = ProteinStructureProcessor()([DATA / "2xcjA.pdb.gz"], return_tensors="pt")
    graph = GearNetModel(GearNetConfig(hidden_dims=[4])).build_graph(**inputs)
    pairs, index = graph.node_pairs()
    source, target = graph.edge_index
    assert torch.equal(pairs[0][index], torch.minimum(source, target))
    assert torch.equal(pairs[1][index], torch.maximum(source, target))
    expected = {(min(u, v), max(u, v)) for u, v in graph.edge_index.T.tolist()}
    assert sorted(map(tuple, pairs.T.tolist())) == sorted(expected)
    assert len(expected) < graph.num_edges  # edges run both ways
