"""The console API on napari layers, as docs/console-api.md ("From napari's console") shows it.

Layers come from napari-unet's reader (``viewer.open_sample`` / ``viewer.open``), so their axes
and channel names are the reader's metadata; models are tiny seeded random U-Nets saved to
``tmp_path`` (the labels mean nothing, their shapes and calibration do).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("napari")

import tifffile  # noqa: E402
import torch  # noqa: E402

from napari_unet import UNet, save_model, segment  # noqa: E402
from napari_unet.core.image.axes import AxesGuessWarning  # noqa: E402

PLUGIN = "napari-unet"


def make_model(path: Path, in_channels: int = 1, **spec: Any) -> str:
    torch.manual_seed(0)
    save_model(UNet(in_channels, 2, depth=2, base_features=4), path, **spec)
    return str(path)


@pytest.fixture
def zcyx_file(tmp_path: Path) -> Path:
    """A calibrated ImageJ hyperstack: Z=3, C=2 (DNA, membrane), 37 x 41 pixels of 0.5 x 0.25 um."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 200, (3, 2, 37, 41)).astype(np.uint16)
    data[:, 0, 5:15, 6:16] += 2000
    data[:, 1, 20:30, 20:35] += 2000
    path = tmp_path / "cells.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(4.0, 4.0),
        metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "um", "Labels": ["DNA", "membrane"] * 3},
    )
    return path


def test_the_documented_console_line_on_the_nuclei_sample(make_napari_viewer: Any, tmp_path: Path) -> None:
    model = make_model(tmp_path / "nuclei.safetensors")
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "nuclei")
    image = viewer.layers["nuclei_dsb2018"]
    assert image.metadata["axes"] == "YX"
    line = (
        f"from napari_unet import segment; viewer.add_labels(segment(viewer.layers['nuclei_dsb2018'], "
        f"model={model!r}), scale=viewer.layers['nuclei_dsb2018'].scale)"
    )
    exec(line, {"viewer": viewer})  # noqa: S102 - the line docs/console-api.md shows
    labels = viewer.layers[-1]
    assert labels.__class__.__name__ == "Labels"
    assert labels.data.shape == image.data.shape == (520, 696)
    assert labels.data.dtype in (np.uint16, np.uint32)
    np.testing.assert_allclose(labels.scale, image.scale)
    # the layer and its bare array give the same labels
    np.testing.assert_array_equal(segment(image.data, model=model, axes="YX"), labels.data)


def test_reader_layers_bring_their_axes_and_the_channels_can_be_stacked(
    make_napari_viewer: Any, tmp_path: Path, zcyx_file: Path
) -> None:
    one = make_model(tmp_path / "one.safetensors")
    two = make_model(tmp_path / "two.safetensors", 2, channel_names=["DNA", "membrane"])
    viewer = make_napari_viewer()
    layers = viewer.open(zcyx_file, plugin=PLUGIN)
    assert [layer.name for layer in layers] == ["DNA", "membrane"]
    l1, l2 = viewer.layers["DNA"], viewer.layers["membrane"]
    assert l1.metadata["axes"] == "ZYX" and l1.metadata["channel_names"] == ["DNA"]
    np.testing.assert_allclose(l1.scale, (2.0, 0.25, 0.25))

    # one channel layer, its axes from the reader's metadata: no guessing
    with warnings.catch_warnings():
        warnings.simplefilter("error", AxesGuessWarning)
        dna = segment(l1, model=one)
    assert dna.shape == (3, 37, 41)
    viewer.add_labels(dna, scale=l1.scale)
    np.testing.assert_allclose(viewer.layers[-1].scale, l1.scale)

    # both channel layers stacked as a C axis, for a two-channel model (the documented line)
    both = segment(np.stack([l1.data, l2.data]), axes="C" + l1.metadata["axes"], model=two)
    assert both.shape == (3, 37, 41)
    swapped = segment(np.stack([l2.data, l1.data]), axes="C" + l1.metadata["axes"], channels=[1, 0], model=two)
    np.testing.assert_array_equal(swapped, both)

    # a single layer cannot feed a two-channel model: the message names the layer
    with pytest.raises(ValueError, match=r"model expects 2 channels \(DNA, membrane\); layer 'DNA'"):
        segment(l1, model=two)
