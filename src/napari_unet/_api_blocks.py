"""``napari_unet.segment_blocks``: segmentation of images larger than memory, block by block on
dask.distributed (see docs/big-data.md, "Distributed"); re-exported by :mod:`napari_unet`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ._sources import resolve_model


def segment_blocks(
    image: Any,
    model: Any = None,
    *,
    out: Any,
    axes: str | None = None,
    channels: int | str | Sequence[int | str] | None = None,
    mode: str = "instances",
    min_size: int = 0,
    block: int | Sequence[int] | None = None,
    scheduler: str | None = None,
    client: Any = None,
    workers: int | None = None,
    resume: bool = False,
    progress: Callable[[Any], Any] | bool | None = None,
    **options: Any,
) -> Any:
    """Segment ``image`` block by block on a dask cluster into the zarr array ``out``.

    >>> result = segment_blocks("big.zarr", out="big_labels.zarr", scheduler="local", workers=2)
    >>> result.out                       # the labels, a zarr array (chunks = blocks)

    Parameters
    ----------
    image : zarr array or its path, dask or numpy array
        One 2D image (with channels) or one volume for a 3D model, axes ``axes``.
    model : UNet, model file or built-in name
        Default the built-in nuclei model.
    out : zarr array or path
        Where the result goes (created when the path does not exist): labels of ``image``'s
        shape without channels; ``mode="probabilities"`` gives ``(classes, *spatial)``.
    mode : {"instances", "semantic", "probabilities"}
    block : int or sequence of int, optional
        Block edges (whole output chunks); default the output's chunks (1024 when created).
    scheduler : {"local", "tcp://host:8786"}, optional
        ``"local"`` (default): a ``distributed.LocalCluster`` of ``workers`` processes (default
        one per GPU, else one); an address: a running scheduler. ``client``: a
        ``distributed.Client`` to use instead.
    resume : bool
        Continue an interrupted run (only blocks without a completion record run).
    progress : callable or True
        Called with every progress event (``True``: a text bar).
    **options
        ``max_object``, ``records``, ``object_size``, ``estimate_size``, ``halo``, ``device``,
        ``precision``, ``tile_size``, ``batch_size``, ``tta``, ``channel_names``: see
        :func:`napari_unet.core.blocks.run.iter_segment_blocks`.

    Returns
    -------
    BlocksResult
        ``out``, ``n_objects``, the blocks ``run`` now and ``skipped`` (resumed), the
        percentiles, object size, halo and devices used.
    """
    from .api import _run
    from .core.blocks.run import iter_segment_blocks

    if hasattr(image, "data") and hasattr(image, "axes") and not isinstance(image, (str, os.PathLike)):
        axes = axes or image.axes  # an ImageFile from read_image
        options.setdefault("channel_names", getattr(image, "channel_names", None))
        image = image.data
    gen = iter_segment_blocks(
        image,
        resolve_model(model),
        out=out,
        axes=axes,
        channels=channels,
        mode=mode,
        min_size=min_size,
        block=block,
        scheduler=scheduler,
        client=client,
        workers=workers,
        resume=resume,
        **options,
    )
    return _run(gen, progress)
