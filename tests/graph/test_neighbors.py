"""Radius / kNN neighbour search against brute force, its conventions, and its memory bound."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from _brute import edge_set, knn_edges, radius_edges
from _pdb import DATA, read_atoms, read_ca

from siamdiff_hf.graph import knn_graph, radius_graph
from siamdiff_hf.graph import neighbors as neighbors_module


def _two_proteins() -> tuple[torch.Tensor, torch.Tensor]:
    a, _ = read_ca(DATA / "2xcjA.pdb.gz")
    b, _ = read_ca(DATA / "1mr1D.pdb.gz")
    return torch.cat([a, b]), torch.cat([torch.zeros(len(a), dtype=torch.long), torch.ones(len(b), dtype=torch.long)])


def _is_sorted_by_centre_then_source(edge_index: torch.Tensor) -> bool:
    key = edge_index[1] * (edge_index.max() + 1) + edge_index[0]
    return bool((key[1:] > key[:-1]).all())


@pytest.mark.parametrize("radius", [6.0, 10.0])
def test_radius_graph_matches_brute_force_on_batched_chains(radius):
    positions, batch = _two_proteins()
    edge_index = radius_graph(positions, radius, batch)
    assert edge_set(edge_index) == sorted(radius_edges(positions, radius, batch.tolist(), 32))
    assert _is_sorted_by_centre_then_source(edge_index)
    assert (batch[edge_index[0]] == batch[edge_index[1]]).all()
    assert (edge_index[0] != edge_index[1]).all()


def test_radius_cap_keeps_lowest_index_neighbours():
    positions, _, _, _ = read_atoms(DATA / "2xdgA.pdb.gz")
    positions = positions[:400]
    batch = torch.zeros(len(positions), dtype=torch.long)
    edge_index = radius_graph(positions, 9.0, batch, max_num_neighbors=32)
    in_range = ((positions[:, None] - positions[None]).square().sum(-1) < 81.0).sum(1) - 1
    assert (in_range > 32).sum() > 100  # the cap binds for many centres
    degree = torch.bincount(edge_index[1], minlength=len(positions))
    assert degree.max() == 32 and torch.equal(degree, in_range.clamp(max=32))
    assert edge_set(edge_index) == sorted(radius_edges(positions, 9.0, batch.tolist(), 32))


def test_radius_is_strict_and_chunking_does_not_change_edges(monkeypatch):
    positions = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    assert edge_set(radius_graph(positions, 3.0)) == [(0, 2), (2, 0)]  # dist == r is not a neighbour
    assert len(edge_set(radius_graph(positions, 3.0001))) == 4

    atoms, _, _, _ = read_atoms(DATA / "1dx5I.pdb.gz")
    batch = torch.cat([torch.zeros(500, dtype=torch.long), torch.ones(len(atoms) - 500, dtype=torch.long)])
    reference = radius_graph(atoms, 5.0, batch)
    assert torch.equal(radius_graph(atoms, 5.0, batch, chunk_size=37), reference)
    # A tiny budget splits each protein into centre chunks with a bounding-box candidate window.
    monkeypatch.setattr(neighbors_module, "ELEMENT_BUDGET", 5000)
    assert torch.equal(radius_graph(atoms, 5.0, batch), reference)
    assert torch.equal(knn_graph(atoms, 7, batch), knn_graph(atoms, 7, batch, chunk_size=10**6))


def test_knn_graph_matches_brute_force():
    positions, batch = _two_proteins()
    edge_index = knn_graph(positions, 10, batch)
    assert edge_set(edge_index) == sorted(knn_edges(positions, 10, batch.tolist()))
    assert _is_sorted_by_centre_then_source(edge_index)
    assert torch.equal(torch.bincount(edge_index[1]), torch.full((len(positions),), 10))


def test_knn_ties_go_to_lower_index_and_small_proteins_give_fewer():
    # A 4x4x4 integer lattice has many equidistant neighbours: the lowest indices must win.
    grid = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[torch.randperm(len(grid), generator=torch.Generator().manual_seed(0))]
    positions = torch.cat([grid, torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])])
    batch = torch.tensor([0] * len(grid) + [1] * 3)
    edge_index = knn_graph(positions, 5, batch)
    assert edge_set(edge_index) == sorted(knn_edges(positions, 5, batch.tolist()))
    assert torch.bincount(edge_index[1])[len(grid) :].tolist() == [2, 2, 2]  # a protein of 3 nodes: 2 each


def test_empty_and_single_node_inputs():
    empty = torch.zeros(0, 3)
    assert radius_graph(empty, 5.0).shape == (2, 0)
    assert knn_graph(empty, 3).shape == (2, 0)
    one = torch.zeros(1, 3)
    assert radius_graph(one, 5.0, torch.zeros(1, dtype=torch.long)).shape == (2, 0)
    assert knn_graph(one, 3).shape == (2, 0)
    with pytest.raises(ValueError, match="sorted"):
        radius_graph(torch.zeros(3, 3), 5.0, torch.tensor([1, 0, 1]))


def test_large_protein_never_allocates_n_squared():
    """A 25k-atom protein (a 3,000-residue chain at atom level) builds its radius graph in bounded memory."""
    script = textwrap.dedent(
        """
        import importlib.util, resource, sys, time, torch
        # Load the module file alone: the measurement must not depend on importing the whole package.
        spec = importlib.util.spec_from_file_location("neighbors", sys.argv[1])
        neighbors = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(neighbors)
        torch.set_num_threads(1)
        n = 25000
        generator = torch.Generator().manual_seed(0)
        positions = torch.rand(n, 3, generator=generator) * (n * 15.0) ** (1 / 3)  # ~1 atom per 15 A^3
        cell = (positions // 8.0).long()  # order atoms along space, as residues of a chain are
        positions = positions[torch.argsort((cell[:, 0] * 64 + cell[:, 1]) * 64 + cell[:, 2])].contiguous()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        edges = neighbors.radius_graph(positions, 4.5)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(after - before, edges.shape[1], time.perf_counter() - start)
        """
    )
    command = [sys.executable, "-c", script, neighbors_module.__file__]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    growth, num_edges, _seconds = result.stdout.split()
    n_squared_bytes = 25000 * 25000 * 4  # one float32 n x n matrix: 2.5 GB
    assert int(growth) < n_squared_bytes / 10
    assert int(num_edges) > 25000 * 10  # protein-like density: ~24 neighbours per atom within 4.5 A
