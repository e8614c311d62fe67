"""The Segment panel runs a bioimage.io package that napari-unet exported, like the model file it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from napari_unet._napari.segment_widget import SegmentWidget
from napari_unet.core.model.file import save_model
from napari_unet.core.model.unet import UNet

pytest.importorskip("bioimageio.spec", reason="needs the export extra: pip install 'napari-unet[export]'")

TIMEOUT_MS = 60_000


def test_an_exported_bioimageio_zip_segments_in_the_panel(make_napari_viewer: Any, qtbot: Any, tmp_path: Path) -> None:
    import napari_unet

    torch.manual_seed(0)
    net = UNet(1, 2, depth=2, base_features=4)
    model_file = save_model(net, tmp_path / "tiny.safetensors")
    package = tmp_path / "tiny.zip"
    napari_unet.export(model_file, format="bioimageio", output=package)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 100, (40, 50)).astype(np.float32)
    image[5:15, 6:16] += 800
    image[22:34, 25:40] += 800

    viewer = make_napari_viewer()
    viewer.add_image(image, name="img")
    widget = SegmentWidget(viewer)
    widget.select_image(viewer.layers["img"])
    widget.set_model(package)
    assert widget.model_path == str(package)
    worker = widget.run()
    assert worker is not None, widget._status.value
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    labels = viewer.layers["img labels"].data
    expected = napari_unet.segment(image, model=str(model_file), axes="YX", device="cpu")
    np.testing.assert_array_equal(labels, expected)
