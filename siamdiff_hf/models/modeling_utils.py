"""`ProteinPreTrainedModel`: the encoder contract and what every model of the package shares on top of transformers'
`PreTrainedModel`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from ..graph import Nodes, PackedResidues, ProteinGraph, protein_nodes, scatter_rows
from .outputs import ProteinEncoderOutput

POOLINGS = ("sum", "mean")


class ProteinPreTrainedModel(PreTrainedModel):
    """PyTorch's default initialisation, bit-exact `from_pretrained`, and the structure-encoder contract.

    An encoder (GearNet, GVP, ESM-GearNet) defines `edges` (its graph over the nodes of `build_graph`) and its
    `forward`, which encodes `graph_from_inputs(...)` and returns `encoder_output(...)`. Everything else (input
    defaults, node construction, readouts, hidden states, `return_dict`) lives here, once. The config gives `level`
    (``"residue"`` or ``"atom"``), `readout` and `output_dim`.
    """

    main_input_name = "residue_type"

    def _init_weights(self, module: nn.Module) -> None:
        # Keep PyTorch's (and so TorchDrug's / SiamDiff's) default initialisation; transformers 5 would otherwise
        # draw N(0, 0.02). Loaded tensors are protected by transformers, only missing ones are initialised.
        if isinstance(module, nn.Linear | nn.BatchNorm1d | nn.Embedding | nn.LayerNorm):
            module.reset_parameters()

    @property
    def output_dim(self) -> int:
        """D: width of the node, residue and protein embeddings (the config's `output_dim`)."""
        return self.config.output_dim

    # --- graph ----------------------------------------------------------------------------------------------------
    def build_graph(
        self,
        residue_type: torch.Tensor,
        atom_positions: torch.Tensor,
        atom_mask: torch.Tensor,
        batch: torch.Tensor,
        residue_index: torch.Tensor | None = None,
        chain_index: torch.Tensor | None = None,
        masked_residues: torch.Tensor | None = None,
        hidden_residue_types: torch.Tensor | None = None,
        **extra,
    ) -> ProteinGraph:
        """Return the encoder's `ProteinGraph` of a packed batch, built on the inputs' device.

        Args:
            residue_type: (L,) residue ids (TorchDrug order, 20 = unknown).
            atom_positions: (L, 37, 3) atom37 coordinates; atom_mask: (L, 37) which atoms exist.
            batch: (L,) sorted protein index of each residue.
            residue_index: (L,) sequence position used for sequence separation (default: packed index).
            chain_index: (L,) chain id (default: one chain per protein).
            masked_residues: (L,) bool, SiamDiff masking: zero residue one-hot, GLY in edge features, and at atom
                level only N, CA, C kept.
            hidden_residue_types: (L,) bool, residue types hidden from the model with every atom kept (official
                RES): zero residue one-hot, GLY in edge features, ESM sees them as it sees masked residues.
            extra: what the encoder's `edges` takes (a graph of your own: `edge_index`, `edge_type`, `edge_attr`
                over the nodes, atoms in ``atom_mask.nonzero()`` order; ESM-GearNet: `esm_input_ids`).
        """
        residues = PackedResidues(
            residue_type, atom_positions, atom_mask, batch, residue_index, chain_index, masked_residues,
            hidden_residue_types,
        )  # fmt: skip
        return self.edges(residues, protein_nodes(residues, self.config.level), **extra)

    def edges(self, residues: PackedResidues, nodes: Nodes, **extra) -> ProteinGraph:
        """Return the graph over `nodes` (what is particular to each encoder: its edges and edge features)."""
        raise NotImplementedError(f"{type(self).__name__} must define `edges(residues, nodes, **extra)`")

    @staticmethod
    def packed_graph(
        residues: PackedResidues,
        nodes: Nodes,
        edge_index: torch.Tensor,
        edge_type: torch.Tensor | None,
        edge_attr: torch.Tensor | None,
        num_relation: int,
    ) -> ProteinGraph:
        """Return the `ProteinGraph` of `nodes` and edges; a missing `edge_type` means one relation (all zeros)."""
        if edge_type is None:
            edge_type = torch.zeros(edge_index.shape[1], dtype=torch.long, device=edge_index.device)
        return ProteinGraph(
            node_features=nodes.features, positions=nodes.positions, node_batch=nodes.batch,
            node_residue=nodes.residue, edge_index=edge_index, edge_type=edge_type, edge_attr=edge_attr,
            num_relation=num_relation, num_graphs=residues.num_graphs, num_residues=residues.num_residues,
        )  # fmt: skip

    def graph_from_inputs(
        self,
        graph: ProteinGraph | None,
        residue_type: torch.Tensor | None,
        atom_positions: torch.Tensor | None,
        atom_mask: torch.Tensor | None,
        batch: torch.Tensor | None,
        *args,
        **kwargs,
    ) -> ProteinGraph:
        """Return `graph` if given, else `self.build_graph` of the processor's tensors (which are then required)."""
        if graph is not None:
            if kwargs.get("hidden_residue_types") is not None:
                raise ValueError(
                    "hidden_residue_types acts when the graph is built: pass it to build_graph, not with graph="
                )
            return graph
        if residue_type is None or atom_positions is None or atom_mask is None or batch is None:
            raise ValueError("pass residue_type, atom_positions, atom_mask and batch (or a ready `graph`)")
        return self.build_graph(residue_type, atom_positions, atom_mask, batch, *args, **kwargs)

    # --- outputs --------------------------------------------------------------------------------------------------
    def readout(self, graph: ProteinGraph, node_embeddings: torch.Tensor, pooling: str | None = None) -> torch.Tensor:
        """Return (B, D) protein embeddings: the config's `readout` over nodes, or `pooling` when given.

        ``"sum"`` adds the rows of a protein's nodes; ``"mean"`` divides that sum by the protein's number of nodes
        (residues, or atoms at atom level), so its scale does not grow with the protein's length.
        """
        if pooling is not None and pooling not in POOLINGS:
            raise ValueError(f"pooling must be None, 'sum' or 'mean', got {pooling!r}")
        return scatter_rows(node_embeddings, graph.node_batch, graph.num_graphs, pooling or self.config.readout)

    def encoder_output(
        self,
        graph: ProteinGraph,
        node_embeddings: torch.Tensor,
        hidden_states: Sequence[torch.Tensor],
        *,
        batch: torch.Tensor | None = None,
        pooling: str | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        output_class: type[ProteinEncoderOutput] = ProteinEncoderOutput,
        **more_hidden_states: Sequence[torch.Tensor],
    ) -> ProteinEncoderOutput | tuple:
        """Assemble the encoder output from the (n, D) node embeddings and the per-layer node features.

        Residue embeddings are the node embeddings at residue level and the mean over each residue's atoms at atom
        level; protein embeddings come from `readout`. `hidden_states` (and any `more_hidden_states`, e.g. GVP's
        vectors) are returned when `output_hidden_states` (default: the config's) is set; a tuple instead of the
        dataclass when `return_dict` is False (default: the config's).
        """
        if self.config.level == "residue":
            residue_embeddings = node_embeddings
        else:
            residue_embeddings = scatter_rows(node_embeddings, graph.node_residue, graph.num_residues, "mean")
        want_hidden = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        hidden = {"hidden_states": hidden_states, **more_hidden_states}
        hidden = {key: tuple(value) if want_hidden else None for key, value in hidden.items()}
        output = output_class(
            node_embeddings=node_embeddings, residue_embeddings=residue_embeddings,
            protein_embeddings=self.readout(graph, node_embeddings, pooling),
            batch=batch if batch is not None else graph.residue_batch(), node_batch=graph.node_batch,
            node_residue=graph.node_residue, **hidden,
        )  # fmt: skip
        use_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if use_dict else output.to_tuple()

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """Load as transformers does, then give every tensor its own aligned memory.

        safetensors files are memory-mapped, so loaded tensors can start at unaligned addresses, and CPU matmul
        kernels then round differently (1 ulp) from a model built in memory. Copying once makes a reloaded model
        reproduce the saved one's outputs exactly (tested), and detaches the model from the file.
        """
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        with torch.no_grad():
            for tensor in (*model.parameters(), *model.buffers()):
                tensor.data = tensor.data.clone()
        return loaded
