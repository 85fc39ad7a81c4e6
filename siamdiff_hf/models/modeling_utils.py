"""`ProteinPreTrainedModel`: what every model of the package shares on top of transformers' `PreTrainedModel`."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel

from ..graph import ProteinGraph


class ProteinPreTrainedModel(PreTrainedModel):
    """PyTorch's default initialisation and bit-exact `from_pretrained` for the package's models."""

    main_input_name = "residue_type"

    def _init_weights(self, module: nn.Module) -> None:
        # Keep PyTorch's (and so TorchDrug's / SiamDiff's) default initialisation; transformers 5 would otherwise
        # draw N(0, 0.02). Loaded tensors are protected by transformers, only missing ones are initialised.
        if isinstance(module, nn.Linear | nn.BatchNorm1d | nn.Embedding | nn.LayerNorm):
            module.reset_parameters()

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
            return graph
        if residue_type is None or atom_positions is None or atom_mask is None or batch is None:
            raise ValueError("pass residue_type, atom_positions, atom_mask and batch (or a ready `graph`)")
        return self.build_graph(residue_type, atom_positions, atom_mask, batch, *args, **kwargs)

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
