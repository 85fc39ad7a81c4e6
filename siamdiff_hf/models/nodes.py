"""Deprecated module path: node featurisation lives in `siamdiff_hf.graph.nodes`. Kept importable for old code."""

from ..graph.nodes import Nodes, atom_nodes, edge_residue_type, residue_nodes, residue_one_hot

__all__ = ["Nodes", "atom_nodes", "edge_residue_type", "residue_nodes", "residue_one_hot"]
