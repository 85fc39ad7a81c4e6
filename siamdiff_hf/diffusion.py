"""Noise schedules for SiamDiff / DiffPreT: small serialisable objects kept apart from the models.

Like a diffusers scheduler, a schedule owns its tables and applies them; the pre-training model only asks it.
Tables are computed once in float64 (the reference values in the paper's configs need that precision at
``t = 0``) and cast to the caller's dtype and device at use, so a schedule never has to be moved by hand.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["STAGE_PRESETS", "MaskRateSchedule", "StructureNoiseSchedule"]

# Hyper-parameters of the two pre-training stages (paper and official configs): noise bounds, number of noise
# levels and the weight gamma of the structure loss against the sequence loss.
STAGE_PRESETS: dict[int, dict[str, float | int]] = {
    1: dict(beta_start=1e-3, beta_end=0.1, num_timesteps=100, gamma=0.5),
    2: dict(beta_start=1e-4, beta_end=1e-4, num_timesteps=5, gamma=0.2),
}


def _as_timesteps(timesteps: torch.Tensor | int, device: torch.device | None = None) -> torch.Tensor:
    if not isinstance(timesteps, torch.Tensor):
        timesteps = torch.tensor(timesteps, device=device)
    return timesteps.long()


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | None) -> torch.Tensor:
    # Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move.
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source, dtype=torch.float32).to(device)


class StructureNoiseSchedule:
    """Variance-exploding coordinate noise of SiamDiff with sigmoid-spaced betas.

    ``betas[t] = sigmoid(linspace(-6, 6, T))[t] * (beta_end - beta_start) + beta_start`` and
    ``alphas_cumprod[t] = prod_{s <= t} (1 - betas[s])`` (the official buffer named ``alphas`` holds this
    cumulative product). Noisy coordinates are ``x + sqrt((1 - abar_t) / abar_t) * eps``: the DDPM sample divided
    by ``sqrt(abar_t)``, so the data itself is not scaled.

    Args:
        beta_start: lower bound of the betas (``sigma_begin`` in the official configs).
        beta_end: upper bound of the betas (``sigma_end``).
        num_timesteps: number of noise levels ``T`` (``num_noise_level``).
    """

    def __init__(self, beta_start: float = 1e-3, beta_end: float = 0.1, num_timesteps: int = 100) -> None:
        if num_timesteps < 1:
            raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
        self.beta_start = float(beta_start)
        self.beta_end = float(beta_end)
        self.num_timesteps = int(num_timesteps)
        levels = torch.linspace(-6.0, 6.0, self.num_timesteps, dtype=torch.float64)
        self.betas = torch.sigmoid(levels) * (self.beta_end - self.beta_start) + self.beta_start
        self.alphas_cumprod = torch.cumprod(1.0 - self.betas, dim=0)
        # std of the noise and its inverse, the scale of the edge target; float64 until used.
        self._noise_std = torch.sqrt((1.0 - self.alphas_cumprod) / self.alphas_cumprod)
        self._target_scale = torch.sqrt(self.alphas_cumprod / (1.0 - self.alphas_cumprod))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StructureNoiseSchedule) and self.to_dict() == other.to_dict()

    def _lookup(self, table: torch.Tensor, timesteps: torch.Tensor | int, like: torch.Tensor | None) -> torch.Tensor:
        # Cast the float64 table to the caller's dtype, then gather on the caller's device.
        if like is not None:
            device, dtype = like.device, (like.dtype if like.is_floating_point() else torch.float64)
        else:
            device, dtype = (timesteps.device if isinstance(timesteps, torch.Tensor) else None), torch.float64
        timesteps = _as_timesteps(timesteps, device).to(device)
        on_host = timesteps.device.type == "cpu" and timesteps.numel() > 0  # no host sync on accelerators
        if on_host and (timesteps.min() < 0 or timesteps.max() >= self.num_timesteps):
            raise ValueError(f"timesteps must lie in [0, {self.num_timesteps})")
        return table.to(dtype=dtype).to(timesteps.device)[timesteps]

    def noise_std(self, timesteps: torch.Tensor | int) -> torch.Tensor:
        """Return ``sqrt((1 - abar_t) / abar_t)`` (Angstrom per coordinate) for each timestep, in float64."""
        return self._lookup(self._noise_std, timesteps, None)

    def add_noise(self, positions: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor | int) -> torch.Tensor:
        """Return ``positions + sqrt((1 - abar_t) / abar_t) * noise``.

        Args:
            positions: (n, 3) clean coordinates (any trailing shape after the first axis).
            noise: standard normal noise, same shape as ``positions``.
            timesteps: (n,) timestep of each row (usually ``t[node_batch]``), or a single int.
        """
        std = self._lookup(self._noise_std, timesteps, positions)
        std = std.reshape(std.shape + (1,) * (positions.dim() - std.dim()))
        return positions + std * noise

    def edge_target(
        self, clean_lengths: torch.Tensor, noisy_lengths: torch.Tensor, timesteps: torch.Tensor | int
    ) -> torch.Tensor:
        """Return the per-edge denoising target ``(d - d_noisy) * sqrt(abar_t / (1 - abar_t))``.

        Args:
            clean_lengths: (E,) edge lengths of the clean structure.
            noisy_lengths: (E,) edge lengths after :meth:`add_noise`.
            timesteps: (E,) timestep of each edge (that of its protein), or a single int.
        """
        scale = self._lookup(self._target_scale, timesteps, clean_lengths)
        return (clean_lengths - noisy_lengths) * scale

    def sample_timesteps(
        self, num_graphs: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Return (num_graphs,) long timesteps drawn uniformly from ``[0, T)``, one per protein."""
        source = generator.device if generator is not None else device
        t = torch.randint(0, self.num_timesteps, (num_graphs,), generator=generator, device=source)
        return t.to(device) if device is not None else t

    def to_dict(self) -> dict[str, Any]:
        """Return the constructor arguments (JSON-serialisable)."""
        return {"beta_start": self.beta_start, "beta_end": self.beta_end, "num_timesteps": self.num_timesteps}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> StructureNoiseSchedule:
        """Build a schedule from :meth:`to_dict` output (unknown keys such as ``gamma`` are ignored)."""
        return cls(**{k: config[k] for k in ("beta_start", "beta_end", "num_timesteps") if k in config})


class MaskRateSchedule:
    """Fraction of residues whose type is masked at each noise level (sequence diffusion of SiamDiff).

    ``rate(t) = min_rate + (max_rate - min_rate) * (t + 1) / T`` and a protein of ``n`` residues gets
    ``max(1, floor(n * rate(t)))`` masked draws.

    Args:
        num_timesteps: number of noise levels ``T`` (shared with the structure schedule).
        min_rate: rate approached at ``t = -1`` (0.15 in the official code).
        max_rate: rate at ``t = T - 1`` (``max_mask_ratio``, 1.0 in every config).
    """

    def __init__(self, num_timesteps: int = 100, min_rate: float = 0.15, max_rate: float = 1.0) -> None:
        if num_timesteps < 1:
            raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
        self.num_timesteps = int(num_timesteps)
        self.min_rate = float(min_rate)
        self.max_rate = float(max_rate)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaskRateSchedule) and self.to_dict() == other.to_dict()

    def rate(self, timesteps: torch.Tensor | int) -> torch.Tensor:
        """Return the float64 mask rate of each timestep."""
        t = _as_timesteps(timesteps).to(torch.float64)
        return self.min_rate + (self.max_rate - self.min_rate) * (t + 1.0) / self.num_timesteps

    def num_masked(self, num_residues: torch.Tensor, timesteps: torch.Tensor | int) -> torch.Tensor:
        """Return the long number of masked draws per protein, ``max(1, floor(n * rate))`` (0 for empty proteins).

        A relative ``1e-9`` is added before the floor so that products that are integers in exact arithmetic
        (``100 * 0.32``) are not rounded down by binary floating point.
        """
        n = num_residues.long()
        exact = n.to(torch.float64) * self.rate(timesteps).to(n.device)
        count = torch.floor(exact * (1.0 + 1e-9)).long().clamp(min=1)
        return torch.where(n > 0, count, torch.zeros_like(count))

    def sample_masked_residues(
        self, batch: torch.Tensor, timesteps: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Return (M,) packed indices of the residues to mask.

        As in the official code, each protein gets :meth:`num_masked` draws **uniformly with replacement** among
        its residues (``floor(u * n_b) + offset_b``), so an index can appear more than once: the number of
        distinct masked residues may be below the count, and losses over the draws count duplicates. Indices are
        grouped by protein, in protein order.

        Args:
            batch: (N,) protein index of each residue, sorted (packed batch).
            timesteps: (B,) timestep of each protein; ``B`` sets the number of proteins.
            generator: optional ``torch.Generator`` for reproducibility.
        """
        num_graphs = timesteps.shape[0]
        num_residues = torch.bincount(batch, minlength=num_graphs)
        offsets = torch.cumsum(num_residues, 0) - num_residues
        counts = self.num_masked(num_residues, timesteps.to(batch.device))
        owner = torch.repeat_interleave(torch.arange(num_graphs, device=batch.device), counts)
        u = _uniform((owner.numel(),), generator, batch.device)
        n = num_residues[owner]
        local = torch.minimum(torch.floor(u * n.float()).long(), n - 1)  # float32 u as the official code
        return local + offsets[owner]

    def to_dict(self) -> dict[str, Any]:
        """Return the constructor arguments (JSON-serialisable)."""
        return {"num_timesteps": self.num_timesteps, "min_rate": self.min_rate, "max_rate": self.max_rate}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> MaskRateSchedule:
        """Build a schedule from :meth:`to_dict` output (unknown keys are ignored)."""
        return cls(**{k: config[k] for k in ("num_timesteps", "min_rate", "max_rate") if k in config})
