"""Sparse relational aggregation (sums, gradients, autocast, recomputation, cached transpose) against dense loops."""

from __future__ import annotations

import torch
from _pdb import small_residue_graph

from siamdiff_hf.graph import (
    RelationalAdjacency,
    line_graph,
    relational_adjacency,
    relational_aggregate,
    relational_linear,
)


def _dense_reference(edge_index, edge_type, num_nodes, num_relation, x):
    out = [[0.0] * (num_relation * x.shape[1]) for _ in range(num_nodes)]
    for (u, v), r in zip(edge_index.t().tolist(), edge_type.tolist()):
        for c in range(x.shape[1]):
            out[v][r * x.shape[1] + c] += float(x[u, c])
    return torch.tensor(out, dtype=torch.float64)


def test_relational_aggregate_matches_a_dense_loop_with_gradient():
    positions, edge_index, edge_type, num_relation = small_residue_graph()
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
    positions, edge_index, edge_type, num_relation = small_residue_graph()
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
    positions, edge_index, edge_type, num_relation = small_residue_graph()
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


def test_relational_linear_matches_aggregate_then_linear_with_gradients():
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


def test_adjacency_transpose_is_built_once_and_is_the_transpose():
    positions, edge_index, edge_type, num_relation = small_residue_graph()
    adjacency = relational_adjacency(edge_index, edge_type, len(positions), num_relation)
    assert isinstance(adjacency, RelationalAdjacency) and adjacency.num_relation == num_relation
    transpose = adjacency.transpose()
    assert transpose is adjacency.transpose()  # kept for every later backward over this adjacency
    assert torch.equal(transpose.to_dense(), adjacency.matrix.to_dense().t())
    x = torch.randn(len(positions), 2, requires_grad=True)
    relational_aggregate(adjacency, x).sum().backward()
    assert adjacency.transpose() is transpose
    try:
        relational_aggregate(adjacency, x, num_relation + 1)
    except ValueError as error:
        assert "num_relation" in str(error)
    else:
        raise AssertionError("a wrong num_relation must raise")
