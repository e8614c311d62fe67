"""Get torch and the selected model ready in the background, so Run starts at once.

Opening the Segment panel imports no torch. Shortly after it is shown (a Qt timer, so only
once the event loop runs), :func:`warm_up` starts a daemon thread that imports torch and the
core, loads the selected model file into a one-entry cache and prepares its inference copy
(BatchNorm folded, first forward pass done). The worker of a Run takes the model from the
same cache (:func:`cached_model`), waiting on the cache's lock if the warm-up is still loading
it, so the two never load the file twice; a panel that is already running skips the warm-up.
A 512×512 image then goes from Run to Labels in about the inference time instead of that plus
~1.5 s of imports and loading (see
``benchmarks/startup.py``).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

def cached_model(path: str) -> Any:
    """The model in ``path``, loaded once per file version (see :mod:`napari_unet.core.modelcache`)."""
    from ..core.modelcache import cached_model as load

    return load(path)


def _prepare(path: str, device: str) -> None:
    try:
        import importlib

        import torch

        importlib.import_module("napari_unet.core.segment")  # scipy/skimage, for post-processing
        from ..core.fastnet import inference_network, memory_format
        from ..core.inference import resolve_device

        model = cached_model(path)
        dev = resolve_device(device)
        net = inference_network(model, dev)
        shape = (1, model.in_channels) + (2 * model.size_multiple,) * model.ndim
        x = torch.zeros(shape, dtype=next(model.parameters()).dtype, device=dev)
        fmt = memory_format(model, dev)
        with torch.inference_mode():
            net(x if fmt is None else x.contiguous(memory_format=fmt))
        log.debug("warm-up done: %s on %s", path, dev)
    except Exception as err:  # noqa: BLE001 - a failed warm-up only costs time; Run reports errors
        log.debug("warm-up of %s skipped: %s", path, err)


def warm_up(path: str | None, device: str = "auto") -> threading.Thread | None:
    """Start preparing ``path`` on ``device`` in a daemon thread (None when there is no model)."""
    if not path or not os.path.isfile(path):
        return None
    thread = threading.Thread(target=_prepare, args=(path, device), name="napari-unet-warm-up", daemon=True)
    thread.start()
    return thread
