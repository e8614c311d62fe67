"""Connected components and seeded watershed of one spatial block, band by band.

Label making works on one *spatial block* (a 2D image or a 3D volume) at a time. For a block
of a few megapixels, :func:`scipy.ndimage.label`, :func:`skimage.segmentation.watershed` and
:func:`numpy.bincount` can simply run on the whole block. For a huge plane (20000 x 20000 =
400 Mpx) they cannot: each makes full-size ``int32`` / ``int64`` / ``float64`` temporaries
(the watershed converts the image to ``float64`` and pads it, the markers and the mask), i.e.
tens of GiB. This module therefore works on *bands* of consecutive rows along the first
spatial axis (Y for a 2D block, Z for a 3D one), so that no temporary is larger than a band:

* :class:`BandedComponents`: connected components (1-connectivity) of a mask, labelled band
  by band; components that touch across a band seam (a pixel and the one directly below it in
  the next band) are merged with a union-find (:func:`scipy.sparse.csgraph.connected_components`),
  and component sizes are summed from per-band counts. Components are numbered in raster order
  of their first pixel, exactly like :func:`scipy.ndimage.label` on the whole block, so the
  banded result equals the unbanded one. The band labels are not kept: the second pass
  (:meth:`BandedComponents.relabel`) labels each band again and maps it through a lookup
  table, so only the final values are ever written to the (full-size) output.
* :func:`banded_watershed`: the seeded watershed of each band computed on a window that adds
  ``margin`` rows above and below it (the seeds there take part; the pixels outside the window
  do not), keeping only the band's own rows. The result equals the whole-block watershed
  except where a flood path leaves the window or where equal landscape values are settled
  differently (both need objects larger than the margin or pathological plateaus).

With a single band (the whole block) the same code runs without any seam or window, so small
blocks are labelled exactly as before and large ones follow the same logic.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.segmentation import watershed

__all__ = ["DEFAULT_BAND_PIXELS", "WATERSHED_MARGIN", "BandedComponents", "band_slices", "banded_watershed"]

#: Spatial blocks with more pixels than this are processed in bands of about this many pixels.
DEFAULT_BAND_PIXELS = 1 << 23  # 8 Mpx: 2896 x 2896 is still one band; 20000-px rows -> 419-row bands
#: Rows (Z slices in 3D) of context above and below a band in :func:`banded_watershed`; never
#: more than the band itself, so a window holds at most three bands.
WATERSHED_MARGIN = 64
#: Memory the watershed windows flooded at the same time may take (more threads only while
#: their windows fit: a 20000-px-wide plane floods one window at a time, an 8192² one two).
WATERSHED_MEMORY = 768 << 20

Bands = list[tuple[int, int]]


def band_slices(shape: tuple[int, ...], band_pixels: int) -> Bands:
    """Row ranges ``[(start, stop), ...]`` covering axis 0 of a block of ``shape``.

    One band (the whole block) when the block has at most ``band_pixels`` pixels; otherwise
    bands of ``band_pixels // row_pixels`` rows (at least one row), where a row is everything
    after axis 0 (a line of a 2D block, a Z slice of a 3D one).
    """
    n_rows = int(shape[0])
    row_pixels = int(np.prod(shape[1:], dtype=np.int64))
    if n_rows * row_pixels <= band_pixels or n_rows <= 1:
        return [(0, n_rows)]
    rows = max(1, band_pixels // max(row_pixels, 1))
    return [(a, min(a + rows, n_rows)) for a in range(0, n_rows, rows)]


def label_threads() -> int:
    """Threads for band-wise labelling: the CPUs this process may use, at most 8
    (:func:`scipy.ndimage.label` releases the GIL)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def ordered_map(
    fn: Callable[[Any], Any], items: list, workers: int | None = None, ahead: int | None = None
) -> Iterator[Any]:
    """``map(fn, items)`` on a thread pool, results in order, at most ``ahead`` (default
    ``2 * workers``) submitted at a time, so memory stays bounded by a few bands."""
    workers = label_threads() if workers is None else workers
    ahead = 2 * workers if ahead is None else max(ahead, 1)
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="napari-unet-labels") as pool:
        queue = iter(items)
        pending = deque(pool.submit(fn, item) for item in islice(queue, ahead))
        while pending:
            result = pending.popleft().result()
            for item in islice(queue, 1):
                pending.append(pool.submit(fn, item))
            yield result


def _seam_pairs(above: np.ndarray, below: np.ndarray) -> np.ndarray:
    """Unique ``(label_above, label_below)`` pairs of face-touching pixels across a seam, shape (k, 2)."""
    both = (above > 0) & (below > 0)
    if not both.any():
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.stack([above[both], below[both]], axis=1).astype(np.int64)
    return np.unique(pairs, axis=0)


class BandedComponents:
    """Connected components of a mask given band by band.

    Parameters
    ----------
    mask_of : callable
        ``mask_of(start, stop)`` returns the boolean mask of rows ``start:stop`` of the block.
        It must give the same answer in the second pass (:meth:`relabel`) as in the first for
        every band not yet written: callers that write the block in :meth:`relabel` write each
        band only after its mask has been read.
    bands : list of (int, int)
        Row ranges from :func:`band_slices`.
    structure : numpy.ndarray
        Structuring element (connectivity) for :func:`scipy.ndimage.label`.

    Attributes
    ----------
    count : int
        Number of components.
    sizes : numpy.ndarray
        ``int64`` of length ``count + 1``: pixels per component (index 0, background, is 0).
    """

    def __init__(self, mask_of: Callable[[int, int], np.ndarray], bands: Bands, structure: np.ndarray) -> None:
        self._mask_of = mask_of
        self._bands = bands
        self._structure = structure
        self._offsets: list[int] = []
        self._counts: list[int] = []
        self._cached: np.ndarray | None = None
        sizes = [np.zeros(1, dtype=np.int64)]
        pairs = []
        previous_last: np.ndarray | None = None
        offset = 0
        for labels, n, band_sizes, first, last in ordered_map(self._first_pass, bands):
            self._offsets.append(offset)
            self._counts.append(int(n))
            sizes.append(band_sizes)
            if len(bands) == 1:
                self._cached = labels
            else:
                first[first > 0] += offset
                if previous_last is not None:
                    pairs.append(_seam_pairs(previous_last, first))
                previous_last = last
                previous_last[previous_last > 0] += offset
            offset += n
            del labels
        n_provisional = offset
        provisional_sizes = np.concatenate(sizes)
        edges = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
        if len(edges):
            # Union-find of labels touching across seams. Components are numbered in order of
            # their smallest provisional label, i.e. of their first pixel in raster order.
            graph = coo_matrix(
                (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])),
                shape=(n_provisional + 1, n_provisional + 1),
            )
            count, component = connected_components(graph, directed=False)
            self.component = component.astype(np.int64)
            self.count = int(count) - 1  # node 0 (background) is a component of its own
            self.sizes = np.bincount(self.component, weights=provisional_sizes, minlength=count).astype(np.int64)
        else:
            self.component = np.arange(n_provisional + 1, dtype=np.int64)
            self.count = n_provisional
            self.sizes = provisional_sizes

    def _first_pass(self, band: tuple[int, int]) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray]:
        labels, n = ndimage.label(self._mask_of(*band), structure=self._structure)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.int64)
        return labels, n, sizes, labels[0].astype(np.int64), labels[-1].astype(np.int64)

    def relabel(self, lut: np.ndarray) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
        """Yield ``((start, stop), lut[component label])`` for every band, in order.

        ``lut`` has length ``count + 1`` and ``lut[0]`` is the background value; the yielded
        array has the band's shape and ``lut``'s dtype. Bands are labelled on a few threads
        ahead of the one yielded (each band's mask is read before that band is yielded).
        """

        def one(job: tuple[tuple[int, int], int, int]) -> tuple[tuple[int, int], np.ndarray]:
            (start, stop), offset, n = job
            if self._cached is not None:
                labels, self._cached = self._cached, None
            else:
                labels, _ = ndimage.label(self._mask_of(start, stop), structure=self._structure)
            band_lut = np.empty(n + 1, dtype=lut.dtype)
            band_lut[0] = lut[0]
            band_lut[1:] = lut[self.component[offset + 1 : offset + n + 1]]
            return (start, stop), band_lut[labels]

        yield from ordered_map(one, list(zip(self._bands, self._offsets, self._counts)))


def banded_watershed(
    landscape: Any,
    labels: np.ndarray,
    mask_of: Callable[[int, int], np.ndarray],
    bands: Bands,
    *,
    margin: int = WATERSHED_MARGIN,
    connectivity: int = 1,
) -> None:
    """Seeded watershed of ``landscape`` from the seeds in ``labels``, in place, band by band.

    Parameters
    ----------
    landscape : array
        The ground to flood (any real dtype), shape of the block.
    labels : numpy.ndarray
        Seed labels (0 elsewhere), shape of the block; replaced by the basins.
    mask_of : callable
        ``mask_of(start, stop)``: where rows ``start:stop`` may be flooded (besides the seeds).
    bands : list of (int, int)
        Row ranges from :func:`band_slices`.
    margin : int
        Rows of context above and below each band (capped to the band height).
    """
    if len(bands) == 1:
        start, stop = bands[0]
        mask = mask_of(start, stop) | (labels > 0)
        labels[...] = watershed(np.asarray(landscape), markers=labels, mask=mask, connectivity=connectivity)
        return
    margin = min(int(margin), max(stop - start for start, stop in bands))
    n_rows = labels.shape[0]
    # Every window floods from the *original* seeds, the rows above included (they are copied
    # before the band above is written), so bands are independent and run on threads; results
    # are written in order. Rows below a band belong to later bands, written only after it.
    lock = threading.Lock()
    saved: dict[int, np.ndarray] = {}  # band index -> original seeds of the rows above it
    started: set[int] = set()

    def top_of(j: int) -> int:
        start = bands[j][0]
        return start if j == 0 else max(bands[j - 1][0], start - margin)

    def flood(j: int) -> np.ndarray:
        start, stop = bands[j]
        top, bottom = top_of(j), min(n_rows, stop + margin)
        with lock:
            started.add(j)
            above = saved.pop(j) if j in saved else np.array(labels[top:start])
        markers = np.concatenate([above, labels[start:bottom]])
        mask = mask_of(top, bottom) | (markers > 0)
        basins = watershed(np.asarray(landscape[top:bottom]), markers=markers, mask=mask, connectivity=connectivity)
        return basins[start - top : stop - top]

    # skimage's watershed pads and copies its window (float64 image, int32 markers and output,
    # mask): about 40 bytes per pixel of window, measured as peak memory
    window = (max(stop - start for start, stop in bands) + 2 * margin) * int(np.prod(labels.shape[1:]))
    workers = max(1, min(label_threads(), WATERSHED_MEMORY // max(40 * window, 1)))
    for j, rows in enumerate(ordered_map(flood, list(range(len(bands))), workers=workers, ahead=workers)):
        start, stop = bands[j]
        with lock:
            if j + 1 < len(bands) and j + 1 not in started:
                saved[j + 1] = labels[top_of(j + 1) : stop].copy()
            labels[start:stop] = rows
