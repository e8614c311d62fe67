"""Training data: image/label pairs → normalised samples with targets → patches.

Targets and normalisation are computed once when the data is prepared, never per step.
Patches are cut from the samples by :mod:`.patches`; augmentation runs on the training device in
:mod:`.augment`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..image.axes import guess_axes
from ..image.files import file_stem as output_stem
from ..image.layout import plan_layout
from ..image.normalize import apply_range, percentile_range, strided_sample
from .guards import check_finite_image, check_label_ids
from .targets import INSTANCE_CLASSES, distance_targets, instance_targets, object_diameter, semantic_targets

log = logging.getLogger(__name__)

TRAIN_MODES = ("instances", "semantic")
IMAGE_SUFFIXES = (".tif", ".tiff")


@dataclass
class Sample:
    """One training image (a plane for 2D models, a volume for 3D models).

    Attributes
    ----------
    image : ndarray of float32, shape (C, *spatial)
        Normalised with the image's own global percentiles.
    target : ndarray of uint8, shape spatial
        Class per pixel.
    labels : ndarray or None
        The original instance labels (instance mode), for AP.
    name : str
    distance : ndarray of float32 or None
        Instance mode: the normalised distance to each object's rim
        (:func:`~.targets.distance_targets`), the target of a distance head.
    zoom : float
        Factor the image was zoomed by when prepared (to a common object size), 1 if not.
    """

    image: np.ndarray
    target: np.ndarray
    labels: np.ndarray | None
    name: str
    fg_coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    distance: np.ndarray | None = None
    zoom: float = 1.0


@dataclass
class PreparedData:
    """Samples plus what the model file should record about them."""

    samples: list[Sample]
    mode: str
    class_names: list[str]
    class_values: list[int]
    channel_names: list[str]
    ndim: int
    object_size: float | None
    class_weights: np.ndarray

    @property
    def n_channels(self) -> int:
        return int(self.samples[0].image.shape[0])


# ---------------------------------------------------------------------------- inputs
def pairs_from_folders(images: str | os.PathLike, masks: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Match image and mask TIFFs by file name.

    A mask matches an image with the same stem, or the stem plus ``_mask``, ``_masks``,
    ``_labels`` or ``_label``. Raises ValueError when a folder is missing, empty, or an
    image has no mask.
    """
    img_dir, mask_dir = Path(images), Path(masks)
    for d, what in ((img_dir, "images"), (mask_dir, "masks")):
        if not d.is_dir():
            raise ValueError(f"{what} folder {str(d)!r} does not exist or is not a folder")
    imgs = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not imgs:
        raise ValueError(f"no .tif/.tiff images in {str(img_dir)!r}")
    by_stem = {output_stem(p): p for p in mask_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    pairs, missing = [], []
    for p in imgs:
        stem = output_stem(p)
        match = next(
            (
                by_stem[s]
                for s in (stem, f"{stem}_mask", f"{stem}_masks", f"{stem}_labels", f"{stem}_label")
                if s in by_stem
            ),
            None,
        )
        if match is None:
            missing.append(p.name)
        else:
            pairs.append((p, match))
    if missing:
        raise ValueError(
            f"{len(missing)} image(s) in {str(img_dir)!r} have no mask in {str(mask_dir)!r}, e.g. {missing[:3]}"
        )
    return pairs


def _as_array(obj: Any, what: str) -> tuple[Any, str | None, list[str] | None, str]:
    """(array, axes, channel names, name) from a path, a napari layer or an array."""
    if isinstance(obj, (str, os.PathLike)):
        from ..image.io import read_image

        img = read_image(obj)
        return img.data, img.axes, img.channel_names, Path(obj).name
    if hasattr(obj, "data") and hasattr(obj, "name") and not isinstance(obj, np.ndarray):
        meta = getattr(obj, "metadata", None) or {}
        return obj.data, meta.get("axes"), meta.get("channel_names"), f"layer {obj.name!r}"
    if not hasattr(obj, "shape"):
        raise TypeError(f"{what} must be an array, a napari layer or a file path, got {type(obj).__name__}")
    return obj, None, None, what


def prepare(  # noqa: C901
    pairs: Iterable[tuple[Any, Any]],
    *,
    mode: str = "instances",
    ndim: int = 2,
    axes: str | None = None,
    channels: Sequence[int | str] | int | str | None = None,
    percentiles: tuple[float, float] = (1.0, 99.8),
    class_values: list[int] | None = None,
    n_channels: int | None = None,
    object_size: float | str | None = None,
) -> PreparedData:
    """Normalise images and compute targets once.

    Parameters
    ----------
    pairs : iterable of (image, labels)
        Arrays, napari layers or TIFF paths. Labels have the image's shape without its
        channel axis.
    mode : {"instances", "semantic"}
        ``"instances"``: labels are instance ids; targets are background/interior/boundary.
        ``"semantic"``: label values are classes.
    ndim : int
        2: Z-stacks and time-lapses are split into planes; 3: volumes.
    axes : str, optional
        Axes of every image (else from files/layers, else guessed with a warning).
    channels : optional
        Channels to use, by index or name.
    percentiles : (float, float)
        Normalisation percentiles, as stored in the model.
    class_values : list of int, optional
        Semantic mode: the label values that are classes (default: all values found).
    n_channels : int, optional
        Channel count expected (e.g. when fine-tuning a model).
    object_size : float or "auto", optional
        Instance mode, 2D: zoom every image so the median diameter of its objects is this
        many pixels (``"auto"``: the median over all images) (zoom limited to 1/4..4), so the network learns one object
        size and
        :mod:`~napari_unet.core.inference.sizing` zooms new images to it. The prepared data then
        records this size. None: images stay as they are.
    """
    if mode not in TRAIN_MODES:
        raise ValueError(f"mode must be one of {TRAIN_MODES}, got {mode!r}")
    raw: list[tuple[np.ndarray, np.ndarray, str]] = []
    channel_names: list[str] | None = None
    for k, (image, labels) in enumerate(pairs):
        img, img_axes, names, name = _as_array(image, f"image {k}")
        lab, _, _, _ = _as_array(labels, f"labels {k}")
        img_axes = axes or img_axes or guess_axes(img.shape)
        if n_channels is None:
            n_channels = _channel_count(img.shape, img_axes, channels)
        layout = plan_layout(
            img.shape,
            img_axes,
            model_channels=n_channels,
            model_ndim=ndim,
            channels=channels,
            channel_names=names,
            image_name=name,
        )
        lab = np.asarray(lab)
        if lab.shape != layout.out_shape:
            raise ValueError(
                f"labels of {name} have shape {lab.shape} but the image gives {layout.out_shape} "
                f"(image axes {layout.axes}, labels axes {layout.out_axes})"
            )
        if not np.issubdtype(lab.dtype, np.integer):
            if not np.all(np.mod(lab, 1) == 0):
                raise ValueError(f"labels of {name} must be integers, got {lab.dtype}")
            lab = lab.astype(np.int64)
        check_label_ids(lab, f"labels of {name}")
        if not lab.any():
            raise ValueError(f"labels of {name} are empty (all 0): annotate some objects first")
        view = layout.arrange(img)
        check_finite_image(view, layout, name)  # one NaN pixel would make every loss NaN
        c_axis = len(layout.loop_axes)
        sample = layout.select(np.moveaxis(strided_sample(view, keep=(c_axis,)), c_axis, 0), raw=True)
        lo, hi = percentile_range(sample, *percentiles)
        lab_work = _labels_work(lab, layout)
        for loop in np.ndindex(*layout.loop_shape):
            block = layout.select(np.asarray(view[loop]), raw=True)  # apply_range: wide values in float64
            suffix = "" if not loop else f" [{', '.join(f'{a}={i}' for a, i in zip(layout.loop_axes, loop))}]"
            raw.append((apply_range(block, lo, hi), lab_work[loop], name + suffix))
        if channel_names is None:
            if layout.to_gray:
                channel_names = ["gray"]
            elif names and layout.channel_axis == "C":
                channel_names = [str(names[i]) for i in layout.channels]
            else:
                channel_names = [f"channel {i}" for i in range(n_channels)]
    if not raw:
        raise ValueError("no training pairs given")

    if mode == "instances":
        class_names = list(INSTANCE_CLASSES)
        class_values = [0, 1, 2]
        if object_size == "auto":
            sizes = [d for _, lab, _ in raw if (d := object_diameter(lab)) is not None]
            object_size = float(np.median(sizes)) if sizes else None
        if object_size is not None:
            if isinstance(object_size, (bool, str)) or not np.isfinite(object_size) or object_size <= 0:
                raise ValueError(f"object_size must be a positive number of pixels, got {object_size!r}")
            if ndim != 2:
                raise ValueError("object_size (rescaling training images) is only supported for 2D models")
            raw = [_rescaled(x, lab, n, float(object_size)) for x, lab, n in raw]
        samples = []
        for x, lab, n, *zoom in raw:
            lab = lab.astype(np.int32) if lab.dtype != np.int32 else lab
            samples.append(
                Sample(x, instance_targets(lab), lab, n, distance=distance_targets(lab), zoom=zoom[0] if zoom else 1.0)
            )
        if object_size is None:
            sizes = [d for s in samples if (d := object_diameter(s.labels)) is not None]
            object_size = float(np.median(sizes)) if sizes else None
    else:
        found = sorted(set(np.concatenate([np.unique(lab) for _, lab, _ in raw]).tolist()))
        class_values = sorted(class_values) if class_values is not None else found
        if len(class_values) < 2:
            raise ValueError(
                f"the labels hold a single class ({class_values}); semantic training needs at least 2 "
                "(e.g. background 0 and objects 1)"
            )
        class_names = ["background" if v == 0 else f"class {v}" for v in class_values]
        samples = [Sample(x, semantic_targets(lab, class_values), None, n) for x, lab, n in raw]
        object_size = None
    n_classes = len(class_names)
    counts = np.zeros(n_classes, np.float64)
    for s in samples:
        counts += np.bincount(s.target.ravel(), minlength=n_classes)[:n_classes]
        fg = np.argwhere(s.target > 0)
        if len(fg) > 20000:
            fg = fg[np.linspace(0, len(fg) - 1, 20000).astype(np.int64)]
        s.fg_coords = fg
    if (counts > 0).sum() < 2:
        raise ValueError("all labelled pixels belong to one class; training needs at least two")
    return PreparedData(
        samples=samples,
        mode=mode,
        class_names=class_names,
        class_values=class_values,
        channel_names=channel_names or [],
        ndim=ndim,
        object_size=object_size,
        class_weights=class_weights(counts),
    )


#: Limits of the zoom that brings a training image to the common object size.
MIN_TRAIN_ZOOM, MAX_TRAIN_ZOOM = 0.25, 4.0


def _rescaled(image: np.ndarray, labels: np.ndarray, name: str, size: float) -> tuple:
    """(image, labels, name, zoom) with the image zoomed so its median object diameter is ``size``."""
    from skimage.transform import resize

    own = object_diameter(labels)
    if own is None:
        return image, labels, name, 1.0
    zoom = float(np.clip(size / own, MIN_TRAIN_ZOOM, MAX_TRAIN_ZOOM))
    if abs(zoom - 1) < 0.02:
        return image, labels, name, 1.0
    shape = tuple(max(1, int(round(n * zoom))) for n in labels.shape)
    img = np.stack(
        [resize(c, shape, order=1, mode="reflect", anti_aliasing=zoom < 1, preserve_range=True) for c in image]
    ).astype(np.float32)
    lab = resize(labels, shape, order=0, mode="edge", anti_aliasing=False, preserve_range=True).astype(labels.dtype)
    return img, lab, name, zoom


def _labels_work(lab: np.ndarray, layout: Any) -> np.ndarray:
    """Labels reordered to (loop axes..., spatial axes) like the image's work view."""
    out_axes = layout.out_axes
    order = [out_axes.index(a) for a in layout.loop_axes + layout.spatial_axes]
    return lab.transpose(order)


def _channel_count(shape: Sequence[int], axes: str, channels: Any) -> int:
    if channels is not None:
        return 1 if isinstance(channels, (int, str)) else len(channels)
    up = axes.upper()
    if "C" in up and shape[up.index("C")] > 1:
        return int(shape[up.index("C")])
    if "S" in up and "C" not in up:
        return 1  # RGB → gray by default
    return 1


def class_weights(counts: np.ndarray) -> np.ndarray:
    """Inverse-square-root frequency weights, normalised to mean 1 (absent classes get 0)."""
    freq = counts / max(counts.sum(), 1)
    w = np.where(freq > 0, 1.0 / np.sqrt(np.maximum(freq, 1e-12)), 0.0)
    return (w / w[w > 0].mean()).astype(np.float32)


def split(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Random train/validation split with a fixed seed (at least one of each when possible)."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(samples)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val = [samples[i] for i in sorted(order[:n_val])]
    train = [samples[i] for i in sorted(order[n_val:])]
    return train, val
