"""How much context a network really needs: its *effective* receptive field.

A depth-4 U-Net's receptive field reaches 137 px in every direction, but nearly all of an
output pixel's sensitivity lies much closer. :func:`effective_radius` measures it once per
network: the gradient of the class probabilities at the centre of a probe patch with respect
to every input pixel, summed in square rings around the centre; the radius holding
``mass`` (99 %) of the total is the halo the tiler gives each tile. Measured on the bundled
nuclei model: 64 px (vs 137 theoretical), where tiled and untiled probabilities differ by
at most 0.008 (0.04 at 48 px, 0.14 at 32 px).

The result is cached per model and weight version; a model file may also carry it
(``spec.halo``), which skips the measurement.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import numpy as np
import torch

from ..model.unet import UNet, weights_version
from .tiling import round_up

log = logging.getLogger(__name__)

#: Share of the gradient mass the halo must hold.
DEFAULT_MASS = 0.99
_cache: weakref.WeakKeyDictionary[UNet, tuple[tuple, int]] = weakref.WeakKeyDictionary()


def effective_radius(
    model: UNet, probe: np.ndarray | None = None, *, mass: float = DEFAULT_MASS, device: torch.device | str = "cpu"
) -> int:
    """Radius (px, Chebyshev) around an output pixel holding ``mass`` of its input sensitivity.

    Parameters
    ----------
    model : UNet
        Evaluated in eval mode (its training flag is restored).
    probe : numpy.ndarray, optional
        Normalised input ``(C, *spatial)`` of at least ``2 * receptive_radius + 1`` px per
        axis (cropped around its centre); uniform noise in 0..1 when omitted.
    mass : float
        Share of the summed absolute gradient inside the radius, in (0, 1).
    """
    if not 0 < mass < 1:
        raise ValueError(f"mass must be in (0, 1), got {mass!r}")
    full = model.receptive_radius()
    size = round_up(2 * full + 1, model.size_multiple)
    if model.ndim == 3:  # a 3D probe of the full field is too big: measure along Y and X only
        size_zyx = (model.size_multiple * 2, size, size)
    else:
        size_zyx = (size, size)
    shape = (model.in_channels, *size_zyx)
    if probe is None or any(p < s for p, s in zip(probe.shape[1:], size_zyx)) or probe.shape[0] != shape[0]:
        probe = np.random.default_rng(0).random(shape, dtype=np.float32)
    else:
        starts = [(p - s) // 2 for p, s in zip(probe.shape[1:], size_zyx)]
        probe = probe[(slice(None), *(slice(a, a + s) for a, s in zip(starts, size_zyx)))]
    dtype = next(model.parameters()).dtype
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():  # also when called under inference_mode
            x = torch.tensor(np.ascontiguousarray(probe), dtype=dtype, device=device)[None].requires_grad_(True)
            logits = model(x)
            centre = tuple(s // 2 for s in size_zyx)
            p = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
            p = p[(0, slice(None), *centre)]
            sensitivity = torch.zeros_like(x)
            for k in range(p.shape[0]):
                (g,) = torch.autograd.grad(p[k], x, retain_graph=k + 1 < p.shape[0])
                sensitivity += g.abs()
    finally:
        model.train(was_training)
    s = sensitivity[0].sum(0).detach().cpu().double().numpy()
    if model.ndim == 3:
        s = s.sum(0)
        centre = centre[1:]
    grids = np.indices(s.shape)
    ring = np.max([np.abs(g - c) for g, c in zip(grids, centre)], axis=0)
    per_ring = np.bincount(ring.ravel(), s.ravel())
    if per_ring.sum() <= 0:  # a dead network: any halo is as good as another
        return 0
    cumulative = np.cumsum(per_ring) / per_ring.sum()
    return int(min(np.searchsorted(cumulative, mass), full))


def auto_halo(model: UNet, probe: Any = None, device: torch.device | str = "cpu") -> int:
    """The halo the tiler uses: ``model.spec.halo`` when the file carries one, else the
    measured :func:`effective_radius` rounded up to a multiple of 8 (cached per weights)."""
    stored = getattr(model.spec, "halo", None)
    if stored is not None:
        return int(stored)
    version = weights_version(model)
    hit = _cache.get(model)
    if hit is not None and hit[0] == version:
        return hit[1]
    radius = effective_radius(model, probe, device=device)
    halo = min(round_up(radius, 8), round_up(model.receptive_radius(), 8))
    log.info("effective receptive radius %d px -> halo %d px (theoretical %d)", radius, halo, model.receptive_radius())
    _cache[model] = (version, halo)
    return halo
