"""The Segment panel prepares torch and the selected model in the background once it is shown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import torch  # noqa: E402

from napari_unet import UNet, save_model  # noqa: E402
from napari_unet._napari import warmup  # noqa: E402
from napari_unet._napari.segment_widget import SegmentWidget  # noqa: E402
from napari_unet.core.inference import fastnet
from napari_unet.core.model import cache as modelcache  # noqa: E402


def _model(path: Path) -> str:
    torch.manual_seed(0)
    save_model(UNet(1, 2, depth=2, base_features=4), path)
    return str(path)


def test_panel_warms_up_the_selected_model_and_run_reuses_it(make_napari_viewer, qtbot, tmp_path, config_dir):
    path = _model(tmp_path / "m.safetensors")
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((40, 50)).astype(np.float32), name="img")
    widget = SegmentWidget(viewer)
    widget.set_model(path)
    widget.configure(device="cpu")
    qtbot.waitUntil(lambda: modelcache.is_cached(path), timeout=120_000)
    model = modelcache.cached_model(path)
    qtbot.waitUntil(lambda: model in fastnet._cache, timeout=120_000)  # inference copy prepared
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert modelcache.cached_model(path) is model  # the run used the warmed-up model, no second load
    assert widget.result_layer is not None and widget.result_layer.data.shape == (40, 50)


def test_cache_follows_the_file(tmp_path):
    path = _model(tmp_path / "m.safetensors")
    first = modelcache.cached_model(path)
    assert modelcache.cached_model(path) is first
    torch.manual_seed(1)
    save_model(UNet(1, 3, depth=2, base_features=4), path)  # replaced on disk
    second = modelcache.cached_model(path)
    assert second is not first and second.n_classes == 3


def test_warm_up_without_a_model_does_nothing(tmp_path):
    assert warmup.warm_up(None) is None
    assert warmup.warm_up(str(tmp_path / "missing.safetensors")) is None
