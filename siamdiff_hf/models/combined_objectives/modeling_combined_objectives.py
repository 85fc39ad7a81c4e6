"""A weighted sum of pre-training objectives on one encoder (paper App. F, Table 8: residue type + geometry).

The paper adds residue type prediction to distance, angle or dihedral prediction ("a simple combination of
pre-training objectives"); here any registered objectives combine: each runs its own step (its own masking or edge
removal, its own encoder pass) on the shared encoder, and the loss is the weighted sum of theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import MODEL_FOR_PRETRAINING_MAPPING
from transformers.utils import ModelOutput

from ..pretraining_utils import ObjectiveForPreTraining, ProteinBatch
from .configuration_combined_objectives import CombinedObjectivesConfig


@dataclass
class CombinedObjectivesOutput(ModelOutput):
    """Output of one combined step: ``loss`` = sum of weight x loss, then ``<objective>_<field>`` for every scalar
    field of each objective's output (e.g. ``residue_type_prediction_accuracy``)."""

    loss: torch.Tensor | None = None


class CombinedObjectivesForPreTraining(ObjectiveForPreTraining):
    """One encoder with the heads of several objectives, under `objectives.<i>` (their own head names inside)."""

    config_class = CombinedObjectivesConfig

    def build_heads(self, dim: int) -> None:
        self.weights = []
        objectives = []
        for weight, config in self.config.objective_configs():
            model_class = MODEL_FOR_PRETRAINING_MAPPING[type(config)]
            if not issubclass(model_class, ObjectiveForPreTraining):
                raise ValueError(f"{config.model_type} is not an objective that can share an encoder")
            objectives.append(model_class(config, with_encoder=False))
            self.weights.append(weight)
        self.objectives = nn.ModuleList(objectives)

    def step(
        self, encoder: nn.Module, inputs: ProteinBatch, generator: torch.Generator | None = None
    ) -> CombinedObjectivesOutput:
        """Run every objective's step on the shared encoder (in order, on the same generator) and sum the losses."""
        metrics, loss = {}, None
        for weight, objective in zip(self.weights, self.objectives):
            output = objective.step(encoder, inputs, generator)
            loss = weight * output.loss if loss is None else loss + weight * output.loss
            for name, value in output.items():
                if isinstance(value, torch.Tensor) and value.ndim == 0:
                    metrics[f"{objective.config.model_type}_{name}"] = value
        output = CombinedObjectivesOutput(loss=loss)
        for name, value in metrics.items():
            output[name] = value
        return output
