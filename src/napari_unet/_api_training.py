"""``train`` and ``evaluate`` of the console API (re-exported by :mod:`napari_unet.api` and ``napari_unet``).

>>> from napari_unet import train, evaluate
>>> model = train("images/", "masks/", output="my_model.safetensors", epochs=20)
>>> scores = evaluate(model, "test_images/", "test_masks/")
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.model.unet import UNet
    from .core.progress import Progress

log = logging.getLogger("napari_unet.api")


def _pairs(images: Any, masks: Any, what: str) -> Any:
    """(image, labels) pairs from two folders of TIFFs, or ``images`` as given (pairs) when ``masks`` is None."""
    if masks is None:
        if isinstance(images, (str, os.PathLike)):
            raise ValueError(f"{what}: a folder of images needs the folder of its masks as well")
        return images
    from .core.training.data import pairs_from_folders

    return pairs_from_folders(images, masks)


def train(
    images: Any,
    masks: str | os.PathLike | None = None,
    *,
    output: str | os.PathLike | None = None,
    model: Any = None,
    val_images: Any = None,
    val_masks: str | os.PathLike | None = None,
    progress: Callable[[Any], Any] | bool | None = None,
    **options: Any,
) -> UNet:
    """Train a U-Net (a new one, or fine-tune ``model``) and return it.

    Parameters
    ----------
    images : folder or sequence of (image, labels)
        A folder of TIFF images (with ``masks``, the folder of their label images, matched by
        file name), or (image, labels) pairs: arrays, napari layers or TIFF paths.
    masks : folder, optional
        The label images of the ``images`` folder.
    output : path, optional
        Where the best model file is written (with a ``.last`` checkpoint beside it).
    model : UNet, path or str, optional
        Fine-tune this model (a built-in one by name, e.g. ``"nuclei"``); None: a new network.
    val_images, val_masks : optional
        Validation data like ``images``/``masks``; otherwise a fraction of the training images.
    progress : callable or bool
        Called with each training event (``TrainEvent``); ``True`` prints a text bar to stderr.
    **options
        Every option of :func:`~napari_unet.core.training.loop.iter_train`: ``epochs``,
        ``patch_size``, ``batch_size``, ``mode``, ``depth``, ``base_features``, ``ndim``,
        ``axes``, ``channels``, ``device``, ``precision``, ``resume``, ``seed``, ...

    Returns
    -------
    UNet
        The trained model (the best one when there is validation data); also in ``output``.
    """
    from .core.model.bundled import resolve_model_file
    from .core.progress import StepProgress, TextProgress, drain
    from .core.training.loop import iter_train

    pairs = _pairs(images, masks, "images")
    val = _pairs(val_images, val_masks, "val_images") if val_images is not None else None
    if isinstance(model, (str, os.PathLike)):
        model = resolve_model_file(model)
    bar = TextProgress() if progress is True else None

    def relay(event: Any) -> None:
        if bar is not None:
            if event.kind == "step":
                bar(StepProgress(event))
            elif event.kind in ("epoch", "start", "done"):
                log.info("%s", event.message)
        elif callable(progress):
            progress(event)

    return drain(iter_train(pairs, val_pairs=val, output=output, model=model, **options), relay)


def evaluate(
    model: Any,
    images: Any,
    masks: str | os.PathLike | None = None,
    *,
    progress: Callable[[Progress], Any] | bool | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Segment labelled images and score the result: AP at IoU 0.5 … 0.95 and mean IoU.

    Parameters
    ----------
    model : UNet, path, str or None
        The network, a model file, or a built-in model by name; None: ``"nuclei"``.
    images : folder or sequence of (image, labels)
        As for :func:`train`: a folder of TIFFs with ``masks``, or (image, ground truth) pairs.
    masks : folder, optional
        The ground-truth label images of the ``images`` folder.
    progress : callable or bool
        Called with one event per image; ``True`` prints a text bar to stderr.
    **options
        ``axes``, ``channels``, ``min_size``, ``thresholds`` and the options of :func:`predict`
        (``device``, ``precision``, ``tile_size``, ``tta``, ...).

    Returns
    -------
    dict
        ``AP50`` … ``AP95`` and ``mAP`` pooled over all images (instance models), the same per
        image under ``per_image``, ``mIoU`` and ``n_images``.
    """
    from ._sources import resolve_model
    from .api import _run
    from .core.training.evaluate import iter_evaluate

    pairs = _pairs(images, masks, "images")
    return _run(iter_evaluate(resolve_model(model), pairs, **options), progress)
