"""Deprecated module path: the line graph lives in `siamdiff_hf.graph.line_graphs`, aggregation in
`siamdiff_hf.graph.aggregation`. Kept importable while code still uses the old path."""

from .aggregation import relational_adjacency, relational_aggregate, relational_linear
from .line_graphs import line_graph

__all__ = ["line_graph", "relational_adjacency", "relational_aggregate", "relational_linear"]
