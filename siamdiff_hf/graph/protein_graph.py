"""`ProteinGraph`: a packed batch of relational graphs, the one object encoders consume."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass
class ProteinGraph:
    """A packed batch of relational graphs over residues or atoms.

    Edges run ``edge_index[0]`` (source, the neighbour) -> ``edge_index[1]`` (target, the centre), as in
    TorchDrug. When ``edge_attr`` is present its **last column is the edge length** in Angstrom (GearNet layout);
    :meth:`with_positions` keeps that column in step with the coordinates.

    Attributes:
        node_features: (n, F) node input features.
        positions: (n, 3) node coordinates.
        node_batch: (n,) protein index of each node.
        node_residue: (n,) packed residue index of each node (the identity at residue level).
        edge_index: (2, E) long.
        edge_type: (E,) long relation ids in ``[0, num_relation)``.
        edge_attr: (E, F_e) edge features or None.
        num_relation: number of relations.
        num_graphs: number of proteins in the batch.
        num_residues: number of residues in the batch (rows of the processor's tensors).
    """

    node_features: torch.Tensor
    positions: torch.Tensor
    node_batch: torch.Tensor
    node_residue: torch.Tensor
    edge_index: torch.Tensor
    edge_type: torch.Tensor
    edge_attr: torch.Tensor | None
    num_relation: int
    num_graphs: int
    num_residues: int

    @property
    def num_nodes(self) -> int:
        return self.positions.shape[0]

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    def residue_batch(self) -> torch.Tensor:
        """Return (num_residues,) protein index of each residue row, read off the nodes."""
        return self.node_batch.new_zeros(self.num_residues).index_copy_(0, self.node_residue, self.node_batch)

    def edge_lengths(self, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Return (E,) edge lengths under ``positions`` (default: the graph's own)."""
        pos = self.positions if positions is None else positions
        return (pos[self.edge_index[0]] - pos[self.edge_index[1]]).norm(dim=-1)

    def node_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the distinct unordered node pairs the edges join, (2, P) with ``pairs[0] <= pairs[1]``, and each
        edge's pair index (E,), so ``f(pairs)[index]`` evaluates a symmetric per-edge ``f`` once per pair.

        Edges come in both directions and several relations join the same nodes (a radius edge and a KNN edge,
        sequential offsets +1 and -1): a 4 x 150-residue batch has 10,709 edges over 4,560 pairs, an atom graph of
        the same chains 74,326 over 37,163.
        """
        source, target = self.edge_index
        keys = torch.minimum(source, target) * self.num_nodes + torch.maximum(source, target)
        keys, index = torch.unique(keys, return_inverse=True)
        return torch.stack([keys.div(self.num_nodes, rounding_mode="floor"), keys.remainder(self.num_nodes)]), index

    def with_positions(self, positions: torch.Tensor) -> ProteinGraph:
        """Return the same graph (edges, relations, features) over new coordinates.

        This is how SiamDiff feeds a noisy structure: edges and edge features stay those of the clean structure,
        only the length column of ``edge_attr`` and everything computed from positions at forward time (line-graph
        angles) follow the new coordinates.
        """
        if positions.shape != self.positions.shape:
            raise ValueError(f"positions must have shape {tuple(self.positions.shape)}, got {tuple(positions.shape)}")
        edge_attr = self.edge_attr
        if edge_attr is not None:
            edge_attr = torch.cat([edge_attr[:, :-1], self.edge_lengths(positions).unsqueeze(-1).to(edge_attr)], -1)
        return replace(self, positions=positions, edge_attr=edge_attr)
