"""Batch augmentation on the training device (torch): flips, 90° rotations, intensity
scale/shift/gamma, Gaussian noise and an optional smooth elastic deformation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def augment(
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    *,
    flips: bool = True,
    rotations: bool = True,
    intensity: bool = True,
    elastic: bool = False,
    elastic_strength: float = 6.0,
    distance: torch.Tensor | None = None,
    noise: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Augment a batch in place of the data loader.

    Parameters
    ----------
    x : Tensor, shape (N, C, *spatial), float
        Normalised images.
    y : Tensor, shape (N, *spatial), int64
        Class targets.
    generator : torch.Generator
        On ``x``'s device; makes the augmentation reproducible.
    distance : Tensor, shape (N, *spatial), float, optional
        Distance-head targets, moved with ``y``; returned as a third value when given.
    noise : bool
        Add Gaussian noise to half of the patches, of a standard deviation drawn up to 8 %
        of the normalised range (camera and shot noise of dim acquisitions).
    """
    n, nd = x.shape[0], x.ndim - 2
    dev = x.device

    def coin() -> torch.Tensor:
        return torch.rand(n, device=dev, generator=generator) < 0.5

    if flips:
        for axis in range(nd):
            m = coin()
            x = torch.where(m.view(-1, *[1] * (nd + 1)), x.flip(2 + axis), x)
            y = torch.where(m.view(-1, *[1] * nd), y.flip(1 + axis), y)
            if distance is not None:
                distance = torch.where(m.view(-1, *[1] * nd), distance.flip(1 + axis), distance)
    if rotations and x.shape[-1] == x.shape[-2]:
        m = coin()
        x = torch.where(m.view(-1, *[1] * (nd + 1)), x.rot90(1, dims=(-2, -1)), x)
        y = torch.where(m.view(-1, *[1] * nd), y.rot90(1, dims=(-2, -1)), y)
        if distance is not None:
            distance = torch.where(m.view(-1, *[1] * nd), distance.rot90(1, dims=(-2, -1)), distance)
    if elastic:
        x, y, distance = _elastic(x, y, generator, elastic_strength, distance)
    if intensity:
        shape = (n, x.shape[1]) + (1,) * nd
        scale = torch.empty(shape, device=dev).uniform_(0.75, 1.25, generator=generator)
        shift = torch.empty(shape, device=dev).uniform_(-0.1, 0.1, generator=generator)
        gamma = torch.exp(torch.empty(shape, device=dev).uniform_(-0.3, 0.3, generator=generator))
        dims = tuple(range(2, x.ndim))
        lo = x.amin(dim=dims, keepdim=True)
        hi = x.amax(dim=dims, keepdim=True)
        span = (hi - lo).clamp_min(1e-6)
        x = ((x - lo) / span).clamp(0, 1) ** gamma * span + lo
        x = x * scale + shift
    if noise:
        shape = (n,) + (1,) * (nd + 1)
        sigma = torch.empty(shape, device=dev).uniform_(0, 0.08, generator=generator)
        sigma = sigma * (torch.rand(shape, device=dev, generator=generator) < 0.5)
        x = x + sigma * torch.randn(x.shape, device=dev, generator=generator)
    if distance is not None:
        return x, y, distance
    return x, y


def _elastic(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, strength: float, distance: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Smooth random displacement (a coarse 4^nd grid upsampled), ``strength`` pixels at most."""
    n, nd = x.shape[0], x.ndim - 2
    size = x.shape[2:]
    coarse = torch.empty((n, nd) + (4,) * nd, device=x.device).uniform_(-1, 1, generator=generator)
    mode = "bilinear" if nd == 2 else "trilinear"
    disp = F.interpolate(coarse, size=size, mode=mode, align_corners=True)
    # displacement in normalised grid units: strength px → 2 * strength / size
    scale = torch.tensor([2.0 * strength / s for s in reversed(size)], device=x.device)
    axes = [torch.linspace(-1, 1, s, device=x.device) for s in size]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], dim=-1)  # (..., nd) in x,y(,z) order
    disp = disp.permute(0, *range(2, nd + 2), 1).flip(-1) * scale
    grid = grid.unsqueeze(0) + disp
    xs = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    ys = F.grid_sample(y.unsqueeze(1).float(), grid, mode="nearest", padding_mode="reflection", align_corners=True)
    ds = None
    if distance is not None:
        ds = F.grid_sample(
            distance.unsqueeze(1).float(), grid, mode="bilinear", padding_mode="reflection", align_corners=True
        ).squeeze(1)
    return xs, ys.squeeze(1).long(), ds
