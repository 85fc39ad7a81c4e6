"""Line graph (pairs and angle bins) against brute-force references."""

from __future__ import annotations

import math

import pytest
import torch
from _brute import line_graph_pairs
from _pdb import small_residue_graph

from siamdiff_hf.graph import line_graph


def test_line_graph_matches_brute_force_on_a_real_graph():
    positions, edge_index, _, _ = small_residue_graph()
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
