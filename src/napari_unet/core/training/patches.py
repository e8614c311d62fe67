"""Training patches: :class:`PatchSampler` cuts batches of patches from prepared samples.

Patches are cut with numpy slicing (cheap), most of them centred on foreground, optionally
from a slightly larger or smaller region zoomed to the patch size (scale jitter).
"""

from __future__ import annotations

import queue
import threading

import numpy as np

from .data import Sample
from .targets import instance_targets


class PatchSampler:
    """Random patches, biased toward foreground.

    Parameters
    ----------
    samples : list of Sample
    patch_size : int
        Edge of the (square/cubic) patch; images smaller than it are mirror-padded once.
    fg_fraction : float
        Share of patches centred on a random foreground pixel; the rest are uniform.
    distance : bool
        Also return distance-head targets (instance samples only): ``batch`` then returns
        ``(images, classes, distances)``.
    scale_jitter : float
        2D instance samples: each patch is cut from a region ``patch / s`` wide and zoomed to
        the patch, ``s`` log-uniform in ``[1 / scale_jitter, scale_jitter]``, with its targets
        made from the zoomed labels (so boundaries stay one pixel wide). 1: no zoom.
    """

    def __init__(
        self,
        samples: list[Sample],
        patch_size: int,
        fg_fraction: float = 0.6,
        *,
        distance: bool = False,
        scale_jitter: float = 1.0,
    ) -> None:
        if not samples:
            raise ValueError("no training samples")
        if not scale_jitter >= 1:
            raise ValueError(f"scale_jitter must be >= 1, got {scale_jitter!r}")
        self.patch = int(patch_size)
        self.fg_fraction = float(fg_fraction)
        self.distance = bool(distance)
        if self.distance and any(s.distance is None for s in samples):
            raise ValueError("distance targets need instance samples")
        self.jitter = float(scale_jitter) if samples[0].target.ndim == 2 and samples[0].labels is not None else 1.0
        self.margin = int(np.ceil(self.patch * self.jitter))  # the largest region a patch is cut from
        self.samples = [self._pad(s) for s in samples]
        areas = np.array([s.target.size for s in self.samples], np.float64)
        self.p = areas / areas.sum()

    def _pad(self, s: Sample) -> Sample:
        spatial = s.target.shape
        size = self.margin if self.jitter > 1 else self.patch
        pads = [(0, max(0, size - n)) for n in spatial]
        if not any(p for _, p in pads):
            return s
        image = np.pad(s.image, [(0, 0)] + pads, mode="symmetric")
        target = np.pad(s.target, pads, mode="symmetric")
        labels = None if s.labels is None else np.pad(s.labels, pads, mode="symmetric")
        distance = None if s.distance is None else np.pad(s.distance, pads, mode="symmetric")
        return Sample(image, target, labels, s.name, s.fg_coords, distance, s.zoom)

    def batch(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """``n`` patches: images (n, C, *patch) float32 and targets (n, *patch) uint8, plus
        distances (n, *patch) float32 when the sampler was made with ``distance=True``."""
        xs, ys, ds = [], [], []
        for k in rng.choice(len(self.samples), size=n, p=self.p):
            s = self.samples[k]
            shape = s.target.shape
            scale = float(np.exp(rng.uniform(-np.log(self.jitter), np.log(self.jitter)))) if self.jitter > 1 else 1.0
            region = self.patch if scale == 1.0 else max(8, int(round(self.patch / scale)))
            if len(s.fg_coords) and rng.random() < self.fg_fraction:
                centre = s.fg_coords[rng.integers(len(s.fg_coords))]
                start = [int(np.clip(c - region // 2, 0, d - region)) for c, d in zip(centre, shape)]
            else:
                start = [int(rng.integers(0, d - region + 1)) for d in shape]
            sl = tuple(slice(a, a + region) for a in start)
            if region == self.patch:
                xs.append(s.image[(slice(None), *sl)])
                ys.append(s.target[sl])
                if self.distance:
                    ds.append(s.distance[sl])
                continue
            x, labels, dist = _zoom_patch(
                s.image[(slice(None), *sl)], s.labels[sl], s.distance[sl] if self.distance else None, self.patch
            )
            xs.append(x)
            ys.append(instance_targets(labels))
            if self.distance:
                ds.append(dist)
        if self.distance:
            return np.stack(xs), np.stack(ys), np.stack(ds)
        return np.stack(xs), np.stack(ys)


def _zoom_patch(
    image: np.ndarray, labels: np.ndarray, distance: np.ndarray | None, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Zoom a square 2D region (image (C, r, r), labels and distance (r, r)) to ``size`` pixels:
    image and distance linearly (antialiased when shrinking), labels by nearest neighbour."""
    import torch
    import torch.nn.functional as F

    r = labels.shape[0]
    shrink = r > size
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)[0].numpy()
    d = None
    if distance is not None:
        t = torch.from_numpy(np.ascontiguousarray(distance, np.float32))[None, None]
        d = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)[0, 0].numpy()
    idx = np.minimum(((np.arange(size) + 0.5) * (r / size)).astype(np.int64), r - 1)
    lab = labels[np.ix_(idx, idx)]
    if d is not None:
        d = np.where(lab > 0, d, 0.0).astype(np.float32)
    return x, lab, d


class Prefetcher:
    """Cuts the next batches of patches in a background thread while the device computes."""

    def __init__(self, sampler: PatchSampler, batch: int, steps: int, rng: np.random.Generator, depth: int = 3) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()

        def work() -> None:
            try:
                for _ in range(steps):
                    if self._stop.is_set():
                        return
                    item = sampler.batch(batch, rng)
                    while not self._stop.is_set():
                        try:
                            self._q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
            except BaseException as err:  # noqa: BLE001 - handed to the consumer
                self._q.put(err)

        self._thread = threading.Thread(target=work, daemon=True, name="napari-unet-patches")
        self._thread.start()

    def get(self) -> tuple[np.ndarray, np.ndarray]:
        item = self._q.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
