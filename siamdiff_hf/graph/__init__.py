"""Graph construction on packed batches: nodes, neighbour search, relational graphs, line graphs, aggregation."""

from .aggregation import RelationalAdjacency, relational_adjacency, relational_aggregate, relational_linear
from .builder import SEQUENTIAL_RELATIONS, atom_graph, gearnet_edge_features, residue_graph
from .line_graphs import line_graph
from .neighbors import knn_graph, radius_graph
from .nodes import Nodes, PackedResidues, atom_nodes, edge_residue_type, protein_nodes, residue_nodes, residue_one_hot
from .protein_graph import ProteinGraph
from .scatter import scatter_rows

__all__ = [
    "SEQUENTIAL_RELATIONS",
    "Nodes",
    "PackedResidues",
    "ProteinGraph",
    "RelationalAdjacency",
    "atom_graph",
    "atom_nodes",
    "edge_residue_type",
    "gearnet_edge_features",
    "knn_graph",
    "line_graph",
    "protein_nodes",
    "radius_graph",
    "relational_adjacency",
    "relational_aggregate",
    "relational_linear",
    "residue_graph",
    "residue_nodes",
    "residue_one_hot",
    "scatter_rows",
]
