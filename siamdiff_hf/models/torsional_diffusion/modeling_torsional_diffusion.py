"""Torsional diffusion on side chains (paper App. G, Table 9), encoder-agnostic at atom level.

The paper: "for each residue, we randomly select one side-chain torsional angle and add some noises drawn from
wrapped Gaussian distribution during the diffusion process. Then, we predict the added noises with the extracted
atom representations corresponding to the torsional angle." No code was published; the choices here:

- a noise level ``sigma`` per protein, uniform over the config's levels; each residue with a side-chain torsion
  (chi1..chi4 whose four atoms exist; proline skipped by default) gets one of them uniformly and a rotation
  ``delta ~ N(0, sigma^2)`` about it (SiamDiff's rotamer code, `siamdiff/rotamer.py`, moves the atoms);
- the graph is built on the noised structure (the model sees x_t only);
- the target is the score of the wrapped normal at ``delta`` divided by its root mean square at ``sigma``
  (torsional diffusion's normalisation, Jing et al. 2022), predicted from the four torsion atoms' embeddings
  ``[h_1, h_2, h_3, h_4]``; the loss is its mean squared error over noised residues.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from ...protein.constants import MAX_CHI, RESIDUE_ID
from ..pretraining_utils import ObjectiveForPreTraining, ProteinBatch, head, masked_mean, normal, sample_levels, uniform
from ..siamdiff.conformer import CHI_ATOM37, CHI_MOVES, chi_angles, rotate_side_chains
from .configuration_torsional_diffusion import TorsionalDiffusionConfig

_WRAPS = torch.arange(-10, 11, dtype=torch.float64)  # images x + 2 pi k of the wrapped normal kept


def wrapped_normal_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Return ``d/dx log p(x)`` of the normal N(0, sigma^2) wrapped on the circle, elementwise (float64)."""
    shifted = x.double()[..., None] + 2 * math.pi * _WRAPS.to(x.device)
    sigma = sigma.double()[..., None]
    weight = torch.softmax(-(shifted**2) / (2 * sigma**2), dim=-1)
    return -(weight * shifted).sum(-1) / sigma[..., 0] ** 2


def score_scale(sigma: torch.Tensor, num_points: int = 2001) -> torch.Tensor:
    """Return sqrt(E[score^2]) of the wrapped normal at each `sigma`, by quadrature over the circle (float64)."""
    grid = torch.linspace(-math.pi, math.pi, num_points, dtype=torch.float64, device=sigma.device)
    shifted = grid[:, None] + 2 * math.pi * _WRAPS.to(sigma.device)
    sigma = sigma.double()[:, None, None]
    density = torch.exp(-(shifted**2) / (2 * sigma**2)).sum(-1)  # (S, G), unnormalised
    score = wrapped_normal_score(grid.expand(sigma.shape[0], -1), sigma[:, :, 0].expand(-1, num_points))
    return torch.sqrt((density * score**2).sum(-1) / density.sum(-1))


@dataclass
class TorsionalDiffusionOutput(ModelOutput):
    """Output of one torsional diffusion step.

    Args:
        loss: mean squared error of the normalised torsion scores over the noised residues.
        noise_level: mean noise scale (radians) of the batch.
    """

    loss: torch.Tensor | None = None
    noise_level: torch.Tensor | None = None


class TorsionalDiffusionForPreTraining(ObjectiveForPreTraining):
    """An atom-level encoder with a torsion-score head `mlp` (4D -> D ... -> 1)."""

    config_class = TorsionalDiffusionConfig
    draw_names = ("noise_levels", "torsion_choice", "torsion_noise")

    def build_heads(self, dim: int) -> None:
        self.mlp = head(4 * dim, dim, self.config.num_mlp_layer, 1)

    def choose_torsions(self, inputs: ProteinBatch, generator: torch.Generator | None) -> torch.Tensor:
        """Return (L,) the chi (0..3) each residue noises, uniform among its existing ones; -1 where it has none."""
        _, exists = chi_angles(inputs.residue_type, inputs.atom_positions, inputs.atom_mask)
        if self.config.skip_proline:
            exists &= (inputs.residue_type != RESIDUE_ID["PRO"])[:, None]
        count = exists.sum(-1)
        pick = torch.floor(uniform((count.shape[0],), generator, count.device) * count.float()).long()
        rank = torch.cumsum(exists.long(), -1) - 1  # the k-th existing chi has rank k
        choice = ((rank == pick[:, None]) & exists).float().argmax(-1)
        return torch.where(count > 0, choice, torch.full_like(choice, -1))

    def step(
        self, encoder: nn.Module, inputs: ProteinBatch, generator: torch.Generator | None = None,
        noise_levels: torch.Tensor | None = None, torsion_choice: torch.Tensor | None = None,
        torsion_noise: torch.Tensor | None = None,
    ) -> TorsionalDiffusionOutput:  # fmt: skip
        """One step; `noise_levels` (B,) level indices, `torsion_choice` (L,) chi per residue (-1: none) and
        `torsion_noise` (L,) standard-normal draws replace the sampled ones."""
        positions, residue_type = inputs.atom_positions, inputs.residue_type.long()
        if noise_levels is None:
            noise_levels = sample_levels(inputs.num_graphs, self.config.num_noise_level, generator, positions.device)
        if torsion_choice is None:
            torsion_choice = self.choose_torsions(inputs, generator)
        if torsion_noise is None:
            torsion_noise = normal((residue_type.shape[0],), generator, positions)
        sigmas = self.config.sigmas.to(positions.device)
        sigma = sigmas[noise_levels][inputs.batch]  # (L,) float64
        noised = torsion_choice >= 0
        chi = torsion_choice.clamp(min=0)
        delta = torch.zeros(residue_type.shape[0], MAX_CHI, dtype=positions.dtype, device=positions.device)
        delta[noised, chi[noised]] = (sigma[noised] * torsion_noise[noised].double()).to(positions.dtype)
        moving = CHI_MOVES.to(positions.device)[residue_type] & inputs.atom_mask.bool()[:, None, :]
        moving &= (torch.arange(MAX_CHI, device=positions.device) == chi[:, None])[..., None] & noised[:, None, None]
        noisy = rotate_side_chains(residue_type, positions, moving, delta)

        graph = inputs.graph(encoder, noisy)
        hidden = encoder(graph=graph).node_embeddings
        node_of = (torch.cumsum(inputs.atom_mask.flatten().long(), 0) - 1).reshape(inputs.atom_mask.shape)
        atoms = CHI_ATOM37.to(positions.device)[residue_type, chi]  # (L, 4) atom37 slots of the chosen chi
        nodes = node_of.gather(1, atoms)
        prediction = self.mlp(hidden[nodes].flatten(1)).squeeze(-1).float()
        wrapped = delta[torch.arange(delta.shape[0]), chi].double()
        target = wrapped_normal_score(wrapped, sigma) / score_scale(sigmas[noise_levels])[inputs.batch]
        loss = masked_mean((prediction - target.float()) ** 2, noised)
        return TorsionalDiffusionOutput(loss=loss, noise_level=sigmas[noise_levels].float().mean())
