"""Graph construction on packed batches: neighbour search, relational graphs, line graphs, sparse aggregation."""

from .aggregation import relational_adjacency, relational_aggregate, relational_linear
from .builder import SEQUENTIAL_RELATIONS, atom_graph, gearnet_edge_features, residue_graph
from .line_graphs import line_graph
from .neighbors import knn_graph, radius_graph
from .protein_graph import ProteinGraph
from .scatter import scatter_rows

__all__ = [
    "SEQUENTIAL_RELATIONS",
    "ProteinGraph",
    "atom_graph",
    "gearnet_edge_features",
    "knn_graph",
    "line_graph",
    "radius_graph",
    "relational_adjacency",
    "relational_aggregate",
    "relational_linear",
    "residue_graph",
    "scatter_rows",
]
