"""Labels matched across the frames of a time-lapse: the same object keeps the same id.

:func:`track_labels` relabels a time-lapse of instance labels in place, frame by frame: each
object of frame ``t`` is matched one-to-one with the objects seen before by the overlap of their
masks (intersection over union, IoU, counted sparsely from the pixels two masks share; the
assignment maximises the summed IoU, :func:`scipy.optimize.linear_sum_assignment` on each group
of objects that overlap). An object matched to nothing gets a new id. An object missing for up
to ``max_gap`` frames keeps its id when it comes back: it is matched against its last seen
mask. Ids are unique over the whole sequence (an id never passes to another object) and are
numbered ``1, 2, ...`` in order of first appearance.

Frames may have any number of dimensions (2D frames for ``TYX``, 3D frames for ``TZYX``): a
frame's labels are whatever segmentation produced for that time point. There are no divisions
or merges: each id is one track, and a track is one object.

:func:`tracks_from_labels` turns matched labels into napari Tracks data
(``track_id, t, [z,] y, x`` centroids); :func:`write_tracks_csv` writes it as a CSV file.

Memory: besides the labels, a few frames (the frame being matched and the frames looked back
at) and a few numbers per track; never the whole stack.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from ..image.files import atomic_write
from ..options import check_inference_options, check_int
from ..progress import Progress, drain
from .matching import one_to_one, overlap_iou

__all__ = [
    "DEFAULT_MAX_GAP",
    "DEFAULT_MIN_IOU",
    "iter_track_frames",
    "iter_track_labels",
    "time_axis",
    "track_labels",
    "tracking_applies",
    "tracking_settings",
    "tracks_columns",
    "tracks_from_frames",
    "tracks_from_labels",
    "write_tracks_csv",
]

log = logging.getLogger(__name__)

#: Frames an object may be missing and still keep its id when it comes back.
DEFAULT_MAX_GAP = 2
#: Smallest IoU between an object and an earlier one for them to be matched (see docs/timelapse.md).
DEFAULT_MIN_IOU = 0.1


def tracking_applies(track: bool, mode: str, axes: str) -> bool:
    """Whether segmenting with ``track`` matches labels across frames: instances of an image with a ``T`` axis."""
    return bool(track) and mode == "instances" and "T" in axes.upper()


def tracking_settings(track: bool, mode: str, axes: str) -> dict[str, Any]:
    """The provenance's record of tracking (see :mod:`~napari_unet.core.image.provenance`).

    ``{"track": True, "track_max_gap": 2, "track_min_iou": 0.1}`` when labels of an image with
    axes ``axes`` were matched across frames, else ``{"track": False}``.
    """
    if not tracking_applies(track, mode, axes):
        return {"track": False}
    return {"track": True, "track_max_gap": DEFAULT_MAX_GAP, "track_min_iou": DEFAULT_MIN_IOU}


def time_axis(ndim: int, *, axis: int | None = None, axes: str | None = None) -> int:
    """The index of the time axis, from ``axis`` or from the ``T`` in ``axes``.

    Raises
    ------
    ValueError
        Neither or both given, ``axes`` of the wrong length or without ``T``, ``axis`` out of range.
    """
    if (axis is None) == (axes is None):
        raise ValueError(
            f"give the time axis as axis= (an index) or axes= (e.g. 'TYX'), got axis={axis!r}, axes={axes!r}"
        )
    if axes is not None:
        if not isinstance(axes, str) or len(axes) != ndim:
            raise ValueError(f"axes must be a string with one letter per dimension ({ndim}), got {axes!r}")
        if "T" not in axes.upper():
            raise ValueError(f"axes {axes!r} have no time axis T: nothing to match across frames")
        return axes.upper().index("T")
    index = check_int("axis", axis, -ndim, ndim - 1)
    return index % ndim  # type: ignore[operator]


def _check_labels(labels: Any) -> np.ndarray:
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "ui":
        raise TypeError(
            f"labels must be a numpy array of integers, got {type(labels).__name__}"
            + (f" of {labels.dtype}" if hasattr(labels, "dtype") else "")
        )
    if labels.ndim < 2:
        raise ValueError(f"labels must have a time axis and at least one more axis, got shape {labels.shape}")
    return labels


# ---------------------------------------------------------------------------- matching
def _edges(current: np.ndarray, earlier: np.ndarray, keep: np.ndarray | None):
    """``(object id in current, track id, IoU)`` of the objects of ``current`` (raw ids) overlapping
    those of ``earlier`` (track ids) whose ids are in ``keep`` (all when None)."""
    if keep is not None:
        earlier = np.where(keep[earlier], earlier, 0)
    return overlap_iou(current, earlier)


def iter_track_labels(
    labels: np.ndarray, axis: int, *, max_gap: int = DEFAULT_MAX_GAP, min_iou: float = DEFAULT_MIN_IOU
) -> Generator[Progress, None, np.ndarray]:
    """:func:`track_labels` as a generator: yields a ``"track"`` Progress event per frame."""
    labels = _check_labels(labels)
    opts = check_inference_options(max_gap=max_gap, min_iou=min_iou)
    max_gap, min_iou = opts["max_gap"], opts["min_iou"]
    axis = time_axis(labels.ndim, axis=axis)
    frames = np.moveaxis(labels, axis, 0)  # a view: writing a frame writes ``labels``
    if labels.size and np.iinfo(labels.dtype).min < 0 and labels.min() < 0:
        raise ValueError(f"labels must be >= 0 (0 = background), got a minimum of {labels.min()}")

    def write(t: int, frame: np.ndarray) -> None:
        frames[t] = frame

    yield from iter_track_frames(
        lambda t: np.asarray(frames[t]), write, frames.shape[0], labels.dtype, max_gap=max_gap, min_iou=min_iou
    )
    return labels


def iter_track_frames(
    read: Callable[[int], np.ndarray],
    write: Callable[[int, np.ndarray], None],
    n_frames: int,
    dtype: Any,
    *,
    max_gap: int = DEFAULT_MAX_GAP,
    min_iou: float = DEFAULT_MIN_IOU,
) -> Generator[Progress, None, int]:
    """The matching of :func:`iter_track_labels`, streaming: ``read(t)`` gives frame ``t`` (raw
    ids before it is written, track ids after), ``write(t, frame)`` stores its track ids (``dtype``:
    the labels' integer type). Frames are read and written in order, a few at a time (e.g. from
    and to a zarr array); returns the number of tracks."""
    opts = check_inference_options(max_gap=max_gap, min_iou=min_iou)
    max_gap, min_iou = opts["max_gap"], opts["min_iou"]
    dtype = np.dtype(dtype)
    last_seen = np.zeros(1, np.int64)  # per track id: the frame it was last seen in (index 0 unused)
    n_tracks = 0
    yield Progress(0, n_frames, "track", "matching labels across frames")
    for t in range(n_frames):
        current = np.asarray(read(t))
        fg = current > 0
        cur_ids, inverse = np.unique(current[fg], return_inverse=True)
        new_ids = np.zeros(len(cur_ids), np.int64)
        if cur_ids.size and n_tracks:
            parts = []
            for back in range(1, max_gap + 2):  # the previous frame, then frames skipped over
                if t - back < 0:
                    break
                seen_then = last_seen == t - back
                seen_then[0] = False
                if not seen_then.any():
                    continue
                earlier = np.asarray(read(t - back))
                keep = None if back == 1 else seen_then
                parts.append(_edges(current, earlier, keep))
            ci, tid, iou = (np.concatenate(p) for p in zip(*parts)) if parts else (np.empty(0, np.int64),) * 3
            good = iou >= min_iou
            matched, tracks = one_to_one(ci[good], tid[good].astype(np.int64), iou[good])
            new_ids[np.searchsorted(cur_ids, matched)] = tracks
        fresh = new_ids == 0
        new_ids[fresh] = np.arange(n_tracks + 1, n_tracks + 1 + int(fresh.sum()))
        n_tracks += int(fresh.sum())
        if n_tracks >= len(last_seen):
            last_seen = np.concatenate([last_seen, np.full(max(n_tracks + 1 - len(last_seen), 1024), -1, np.int64)])
        last_seen[new_ids] = t
        if new_ids.size and new_ids.max() > np.iinfo(dtype).max:  # per-frame ids in a narrow type
            raise ValueError(
                f"{n_tracks} tracks do not fit in labels of {dtype} (frame {t}; frames before it are "
                f"relabelled already): give labels of a wider type, e.g. labels.astype(np.uint32)"
            )
        out = np.zeros_like(current)
        out[fg] = new_ids[inverse]
        write(t, out)
        yield Progress(t + 1, n_frames, "track", f"frame {t + 1}/{n_frames}: {n_tracks} tracks")
    log.info("tracking: %d frames, %d tracks (max_gap=%d, min_iou=%g)", n_frames, n_tracks, max_gap, min_iou)
    return n_tracks


def track_labels(
    labels: np.ndarray,
    axis: int | None = None,
    *,
    axes: str | None = None,
    max_gap: int = DEFAULT_MAX_GAP,
    min_iou: float = DEFAULT_MIN_IOU,
) -> np.ndarray:
    """Give the same id to the same object in every frame of a time-lapse of instance labels.

    Parameters
    ----------
    labels : numpy.ndarray
        Instance labels (integers, 0 = background) with a time axis; relabelled **in place**.
        A frame may be 2D (``TYX``) or 3D (``TZYX``); ids need not be consecutive, and an id
        used in two frames is not taken to be the same object (only overlap counts).
    axis : int, optional
        The time axis, by index. Give ``axis`` or ``axes``.
    axes : str, optional
        The labels' axes, e.g. ``"TYX"``: the time axis is its ``T``.
    max_gap : int
        Frames an object may be missing (not found by segmentation) and still keep its id when
        it comes back, matched against its last seen mask; 0: never. Default 2.
    min_iou : float
        Smallest intersection over union for an object to be matched with an earlier one, in 0..1.

    Returns
    -------
    numpy.ndarray
        ``labels`` itself: ids ``1..n_tracks`` in order of first appearance, each id one object
        over the whole sequence.

    Raises
    ------
    ValueError
        Bad ``axis``/``axes``, ``max_gap`` or ``min_iou`` (naming the value), negative labels.
    TypeError
        ``labels`` is not an integer numpy array.
    """
    labels = _check_labels(labels)
    index = time_axis(labels.ndim, axis=axis, axes=axes)
    return drain(iter_track_labels(labels, index, max_gap=max_gap, min_iou=min_iou))


# ---------------------------------------------------------------------------- tracks
def tracks_from_labels(labels: np.ndarray, axis: int | None = None, *, axes: str | None = None) -> np.ndarray:
    """napari Tracks data from labels matched across frames: one row per object per frame.

    Parameters
    ----------
    labels : numpy.ndarray
        Labels whose ids are tracks (e.g. from :func:`track_labels` or ``segment`` of a time-lapse).
    axis, axes
        The time axis, as for :func:`track_labels`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(N, 2 + frame ndim)``: ``track_id, t``, then the centroid (pixels) along
        the other axes in the labels' order (``y, x`` for ``TYX``, ``z, y, x`` for ``TZYX``),
        sorted by track id then time — ``viewer.add_tracks(data)`` takes it as it is.
    """
    labels = _check_labels(np.asarray(labels))
    index = time_axis(labels.ndim, axis=axis, axes=axes)
    frames = np.moveaxis(labels, index, 0)
    return tracks_from_frames(lambda t: frames[t], frames.shape[0], labels.ndim - 1)


def tracks_from_frames(read: Callable[[int], Any], n_frames: int, frame_ndim: int) -> np.ndarray:
    """:func:`tracks_from_labels` reading one frame at a time: ``read(t)`` gives frame ``t``
    (``frame_ndim`` axes, e.g. from a zarr array)."""
    rows = []
    for t in range(n_frames):
        frame = np.asarray(read(t))
        coords = np.nonzero(frame)
        if not coords[0].size:
            continue
        ids, inverse, counts = np.unique(frame[coords], return_inverse=True, return_counts=True)
        centroids = [np.bincount(inverse, weights=c, minlength=len(ids)) / counts for c in coords]
        rows.append(np.column_stack([ids.astype(np.float64), np.full(len(ids), float(t)), *centroids]))
    if not rows:
        return np.empty((0, frame_ndim + 2), np.float64)
    data = np.concatenate(rows)
    return data[np.lexsort((data[:, 1], data[:, 0]))]


def tracks_columns(axes: str) -> list[str]:
    """Column names of :func:`tracks_from_labels`'s rows for labels with ``axes``: ``track_id, t, y, x``."""
    return ["track_id", "t", *(a.lower() for a in axes.upper() if a != "T")]


def write_tracks_csv(path: str | os.PathLike, tracks: np.ndarray, axes: str) -> str:
    """Write ``tracks`` (from :func:`tracks_from_labels` of labels with ``axes``) as CSV, atomically.

    Columns ``track_id,t,[z,]y,x`` (a header line, then one row per object per frame; ids and
    frames as integers, centroids in pixels with 3 decimals). Returns the path written.
    """
    columns = tracks_columns(axes)
    if tracks.ndim != 2 or tracks.shape[1] != len(columns):
        raise ValueError(f"tracks of shape {tracks.shape} do not fit axes {axes!r} (columns {', '.join(columns)})")
    with atomic_write(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in tracks:
            writer.writerow([int(row[0]), int(row[1]), *(f"{v:.3f}" for v in row[2:])])
    return os.fspath(path)
