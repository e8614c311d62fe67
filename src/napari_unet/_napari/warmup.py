"""Get torch and the selected model ready in the background, so Run starts at once.

Opening the Segment panel imports no torch. Shortly after it is shown (a Qt timer, so only
once the event loop runs), :func:`warm_up` starts a daemon thread that imports torch and the
core, loads the selected model file into a one-entry cache and prepares its inference copy
(BatchNorm folded, first forward pass done). The worker of a Run takes the model from the
same cache (:func:`napari_unet.core.model.cache.cached_model`), waiting on the cache's lock if the warm-up is
still loading
it, so the two never load the file twice; a panel that is already running skips the warm-up.
A 512×512 image then goes from Run to Labels in about the inference time instead of that plus
~1.5 s of imports and loading (see
``benchmarks/startup.py``).
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger(__name__)


def _prepare(path: str, device: str) -> None:
    try:
        import importlib

        importlib.import_module("napari_unet.core.segment")  # scipy/skimage, for post-processing
        from ..core.inference.fastnet import prepare
        from ..core.model.cache import cached_model
        from ..core.options import resolve_device

        dev = resolve_device(device)
        prepare(cached_model(path), dev)
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
