"""Line graph (pairs and angle bins) and sparse relational aggregation against brute-force references."""

from __future__ import annotations

import math

import pytest
import torch
from _brute import line_graph_pairs
from _pdb import DATA, read_ca

from siamdiff_hf.graph import line_graph, relational_adjacency, relational_aggregate, residue_graph


def _small_residue_graph() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    positions, _ = read_ca(DATA / "2xcjA.pdb.gz")
    positions = positions[:40]
    zeros = torch.zeros(len(positions), dtype=torch.long)
    edge_index, edge_type, num_relation = residue_graph(positions, zeros, zeros)
    return positions, edge_index, edge_type, num_relation


def test_line_graph_matches_brute_force_on_a_real_graph():
    positions, edge_index, _, _ = _small_residue_graph()
    lg_index, lg_type = line_graph(edge_index, len(positions), positions, num_angle_bin=8)
    got = sorted(zip(*lg_index.tolist(), lg_type.tolist()))
    expected = sorted(line_graph_pairs([tuple(e) for e in edge_index.t().tolist()], positions, 8))
    assert got == expected
    indegree = torch.bincount(edge_index[1], minlength=len(positions))
    outdegree = torch.bincount(edge_index[0], minlength=len(positions))
    assert lg_index.shape[1] == int((indegree * outdegree).sum())
    assert set(lg_type.tolist()) == set(range(8))
    key = lg_index[1] * edge_index.shape[1] + lg_index[0]
    assert (key[1:] > key[:-1]).all()  # sorted by target edge, then source edge


def test_line_graph_angles_on_a_hand_made_graph():
    positions = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    # 0->1, 1->2 (right angle), 1->3 (straight on), 1->0 (backtracking), 1->1 (self loop)
    edge_index = torch.tensor([[0, 1, 1, 1, 1], [1, 2, 3, 0, 1]])
    lg_index, lg_type = line_graph(edge_index, 4, positions, num_angle_bin=8)
    bins = {tuple(pair): b for pair, b in zip(lg_index.t().tolist(), lg_type.tolist())}
    # The angle at b between (c - b) and (a - b): backtracking = 0, straight on = pi (clamped to bin 7).
    assert bins[(0, 1)] == 4 and bins[(0, 2)] == 7 and bins[(0, 3)] == 0
    assert bins[(0, 4)] == 0 and bins[(4, 4)] == 0 and bins[(4, 1)] == 0  # zero vectors give bin 0
    # At node 1: indeg 2 (0->1, 1->1) x outdeg 4; at node 0: 1->0 then 0->1 (backtracking, bin 0).
    assert len(bins) == 2 * 4 + 1 and bins[(3, 0)] == 0


def _dense_reference(edge_index, edge_type, num_nodes, num_relation, x):
    out = [[0.0] * (num_relation * x.shape[1]) for _ in range(num_nodes)]
    for (u, v), r in zip(edge_index.t().tolist(), edge_type.tolist()):
        for c in range(x.shape[1]):
            out[v][r * x.shape[1] + c] += float(x[u, c])
    return torch.tensor(out, dtype=torch.float64)


def test_relational_aggregate_matches_a_dense_loop_with_gradient():
    positions, edge_index, edge_type, num_relation = _small_residue_graph()
    edge_index = torch.cat([edge_index, edge_index[:, :5]], dim=1)  # duplicated edges are summed
    edge_type = torch.cat([edge_type, edge_type[:5]])
    n, channels = len(positions), 3
    adjacency = relational_adjacency(edge_index, edge_type, n, num_relation)
    assert adjacency.shape == (n * num_relation, n)
    x = torch.randn(n, channels, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = _dense_reference(edge_index, edge_type, n, num_relation, x)

    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        leaf = x.detach().to(dtype).clone().requires_grad_()
        out = relational_aggregate(adjacency, leaf, num_relation)
        assert out.dtype == dtype and out.shape == (n, num_relation * channels)
        torch.testing.assert_close(out.double(), expected, atol=tol, rtol=tol)
        weight = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        (out * weight.to(dtype)).sum().backward()
        # d/dx_u = sum over edges u -> v of relation r of weight[v, r-block]
        grad = torch.zeros(n, channels, dtype=torch.float64)
        for (u, v), r in zip(edge_index.t().tolist(), edge_type.tolist()):
            grad[u] += weight[v, r * channels : (r + 1) * channels]
        torch.testing.assert_close(leaf.grad.double(), grad, atol=tol, rtol=tol)

    leaf = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: relational_aggregate(adjacency, t, num_relation), (leaf,), fast_mode=True)


def test_relational_aggregate_edges_to_nodes_and_line_graph():
    positions, edge_index, edge_type, num_relation = _small_residue_graph()
    num_edges = edge_index.shape[1]
    # Edge -> node aggregation: sources are edges of G, targets their head nodes.
    edge_to_node = torch.stack([torch.arange(num_edges), edge_index[1]])
    adjacency = relational_adjacency(edge_to_node, edge_type, len(positions), num_relation, num_sources=num_edges)
    assert adjacency.shape == (len(positions) * num_relation, num_edges)
    y = torch.randn(num_edges, 4, dtype=torch.float64)
    torch.testing.assert_close(
        relational_aggregate(adjacency, y, num_relation),
        _dense_reference(edge_to_node, edge_type, len(positions), num_relation, y),
    )
    lg_index, lg_type = line_graph(edge_index, len(positions), positions)
    lg_adjacency = relational_adjacency(lg_index, lg_type, num_edges, 8)
    torch.testing.assert_close(
        relational_aggregate(lg_adjacency, y, 8), _dense_reference(lg_index, lg_type, num_edges, 8, y)
    )


def test_relational_aggregate_under_autocast_returns_input_dtype():
    positions, edge_index, edge_type, num_relation = _small_residue_graph()
    adjacency = relational_adjacency(edge_index, edge_type, len(positions), num_relation)
    x = torch.randn(len(positions), 16)
    reference = relational_aggregate(adjacency, x, num_relation)
    leaf = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = relational_aggregate(adjacency, leaf, num_relation)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.02)
    out.float().sum().backward()
    assert leaf.grad.dtype == torch.bfloat16 and torch.isfinite(leaf.grad).all()


@pytest.mark.parametrize("num_angle_bin", [4, 8])
def test_angle_bins_cover_zero_to_pi(num_angle_bin):
    angles = torch.linspace(0, math.pi, 50)
    points = torch.stack([angles.cos(), angles.sin(), torch.zeros(50)], -1)
    positions = torch.cat([torch.zeros(1, 3), points, torch.tensor([[2.0, 0.0, 0.0]])])
    # 51 -> 0 then 0 -> k: the angle at node 0 between (k - 0) and (51 - 0) is angles[k - 1].
    edge_index = torch.tensor([[51] + [0] * 50, [0, *range(1, 51)]])
    lg_index, lg_type = line_graph(edge_index, 52, positions, num_angle_bin=num_angle_bin)
    expected = (angles / math.pi * num_angle_bin).floor().long().clamp(max=num_angle_bin - 1)
    assert torch.equal(lg_index[0], torch.zeros(50, dtype=torch.long))
    assert torch.equal(lg_type, expected)


def test_relational_linear_matches_aggregate_then_linear_with_gradients():
    from siamdiff_hf.graph import relational_adjacency, relational_aggregate, relational_linear

    generator = torch.Generator().manual_seed(0)
    num_nodes, num_relation, width = 30, 4, 6
    edge_index = torch.randint(0, num_nodes, (2, 200), generator=generator)
    edge_type = torch.randint(0, num_relation, (200,), generator=generator)
    adjacency = relational_adjacency(edge_index, edge_type, num_nodes, num_relation)
    x = torch.randn(num_nodes, width, dtype=torch.float64, generator=generator, requires_grad=True)
    weight = torch.randn(5, num_relation * width, dtype=torch.float64, generator=generator, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, generator=generator, requires_grad=True)
    ours = relational_linear(adjacency, x, weight, bias, num_relation)
    reference = torch.nn.functional.linear(relational_aggregate(adjacency, x, num_relation), weight, bias)
    torch.testing.assert_close(ours, reference)
    upstream = torch.randn(ours.shape, dtype=torch.float64, generator=generator)
    grads = torch.autograd.grad((ours * upstream).sum(), (x, weight, bias))
    expected = torch.autograd.grad((reference * upstream).sum(), (x, weight, bias))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = relational_linear(adjacency, x.float(), weight.float(), bias.float(), num_relation)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.double(), reference, rtol=3e-2, atol=3e-2)
