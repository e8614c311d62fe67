"""The "Train U-Net" panel training a 3D network from a ZYX (or ZCYX) image layer and its 3D labels.

Runs headless (pytest-xvfb) on the CPU with one torch thread: tiny 3D networks (depth 2, 4 base
features, 16-voxel patches, batch 2, 2 steps per epoch) on synthetic stacks of bright boxes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import torch  # noqa: E402
from napari.layers import Labels  # noqa: E402
from notifications import errors  # noqa: E402

import napari_unet  # noqa: E402
from napari_unet._napari.train_inputs import image_for_network  # noqa: E402
from napari_unet._napari.train_widget import PREVIEW_KEY, TrainWidget  # noqa: E402
from napari_unet.core.model.file import load_model, read_model_info, save_model  # noqa: E402
from napari_unet.core.model.unet import UNet  # noqa: E402
from napari_unet.core.training.config import DEFAULT_PATCH_SIZE  # noqa: E402

TIMEOUT_MS = 300_000  # 2 shared CPU cores; importing torch in the worker thread can take a while
TINY3D: dict[str, Any] = dict(
    ndim=3,
    depth=2,
    base_features=4,
    patch_size=16,
    batch_size=2,
    steps_per_epoch=2,
    lr=0.01,
    device="cpu",
    seed=0,
    augmentation=False,
)
SCALE = (2.0, 0.5, 0.5)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def boxes(shape: tuple[int, ...] = (8, 32, 32), seed: int = 0, channels: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright boxes on a dim noisy background: image (ZYX, or ZCYX with ``channels``) and ZYX labels."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    z, y, x = shape
    lab[1 : z - 1, 3:12, 4:13] = 1
    lab[2 : z - 2, 17:28, 15:29] = 2
    img = rng.normal(0.1, 0.05, shape).astype(np.float32) + (lab > 0)
    if channels:
        img = np.stack([img * (c + 1) for c in range(channels)], axis=1)  # ZCYX
    return img, lab


def make_widget(viewer: Any) -> TrainWidget:
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train U-Net")
    return widget


def wait_done(qtbot: Any, widget: TrainWidget) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


# ---------------------------------------------------------------------------- the Network control
def test_network_choice_sets_the_patch_default_and_follows_a_fine_tune_model(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    options = widget.options()
    assert options["ndim"] == 2 and options["patch_size"] == DEFAULT_PATCH_SIZE[2] == 256  # 2D stays the default
    widget.configure(ndim=3)
    assert widget.options()["patch_size"] == DEFAULT_PATCH_SIZE[3] == 64
    widget.configure(ndim=2)
    assert widget.options()["patch_size"] == 256
    widget.configure(patch_size=96, ndim=3)  # a patch size given with the network wins
    assert widget.options()["patch_size"] == 96
    widget.configure(ndim=2)  # a chosen patch size stays
    assert widget.options()["patch_size"] == 96
    # choosing a 3D model to fine-tune switches Network to 3D
    path = tmp_path / "net3d.safetensors"
    save_model(UNet(1, 3, depth=2, base_features=4, ndim=3), path)
    widget.configure(fine_tune=path)
    assert widget.options()["ndim"] == 3


# ---------------------------------------------------------------------------- errors before starting
def test_3d_errors_name_the_layers_and_shapes(make_napari_viewer: Any, tmp_path: Path, notes: list[Any]) -> None:
    viewer = make_napari_viewer()
    img, lab = boxes()
    flat = viewer.add_image(img[3], name="flat")
    flat_masks = viewer.add_labels(lab[3], name="flat masks")
    stack = viewer.add_image(img, name="stack")
    short = viewer.add_labels(lab[:5], name="short masks")
    widget = make_widget(viewer)
    output = tmp_path / "out" / "m.safetensors"
    widget.configure(output=output, epochs=1, **TINY3D)

    # a 2D image with Network 3D
    widget.set_pair(0, flat, flat_masks)
    assert widget.start() is None
    assert "Network is 3D but image layer 'flat' has no Z axis (axes YX, shape (32, 32))" in errors(notes)[-1]
    # labels that do not match the stack's ZYX shape
    widget.set_pair(0, stack, short)
    assert widget.start() is None
    message = errors(notes)[-1]
    assert "'short masks' has shape (5, 32, 32)" in message and "'stack' gives (8, 32, 32)" in message
    assert "image axes ZYX" in message
    # a 2D model cannot be fine-tuned as 3D (a bare UNet's spec is semantic)
    model_2d = tmp_path / "net2d.safetensors"
    save_model(UNet(1, 3, depth=2, base_features=4, ndim=2), model_2d)
    widget.configure(fine_tune=model_2d, ndim=3, mode="semantic")
    widget.set_pair(0, stack, viewer.add_labels(lab, name="stack masks"))
    assert widget.start() is None
    assert "net2d.safetensors is a 2D network; set Network to 2D to fine-tune it" in errors(notes)[-1]
    # resuming a 3D run with Network 2D
    save_model(UNet(1, 3, depth=2, base_features=4, ndim=3), tmp_path / "run.last.safetensors")
    widget.configure(fine_tune=None, resume=True, ndim=2, output=tmp_path / "run.safetensors")
    assert widget.start() is None
    assert "run.last.safetensors trains a 3D network; set Network to 3D to resume it" in errors(notes)[-1]
    assert len(errors(notes)) == 4 and not widget.running
    assert not output.parent.exists()
    # a thin stack without recorded axes (guessed CYX) is read as ZYX by a 3D network
    thin = viewer.add_image(np.zeros((3, 32, 32), np.float32), name="thin")
    assert image_for_network(thin, 3).axes == "ZYX" and image_for_network(thin, 2).axes == "CYX"


# ---------------------------------------------------------------------------- training a 3D model
def test_train_3d_model_from_layers_preview_and_segment(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    img, lab = boxes()
    image = viewer.add_image(img, name="stack", scale=SCALE, metadata={"axes": "ZYX"})
    masks = viewer.add_labels(lab, name="stack masks", scale=SCALE)
    _dock, segment = viewer.window.add_plugin_dock_widget("napari-unet", "Segment with U-Net")
    widget = make_widget(viewer)
    assert widget.pairs == [(image, masks)]
    output = tmp_path / "net3d.safetensors"
    widget.configure(output=output, epochs=1, val_fraction=0.0, preview_every=1, **TINY3D)
    assert widget.start() is not None, widget.status
    wait_done(qtbot, widget)
    assert not errors(notes), errors(notes)
    assert widget.saved_path == output and output.is_file()
    info = read_model_info(output)
    assert info["architecture"]["ndim"] == 3 and info["spec"]["axes"] == "ZYX"
    model = load_model(output)
    assert model.ndim == 3 and model.spec.axes == "ZYX"
    assert model.spec.training["patch_size"] == 16
    assert segment.model_path == str(output)  # offered in the Segment panel
    # the preview: one ZYX Labels layer over the stack
    previews = [lay for lay in viewer.layers if isinstance(lay, Labels) and (lay.metadata or {}).get(PREVIEW_KEY)]
    assert len(previews) == 1 and previews[0].data.shape == img.shape
    np.testing.assert_allclose(previews[0].scale, SCALE)
    # the Segment panel segments the stack with it, as a volume
    segment.select_image(image)
    segment.configure(device="cpu")
    assert segment.run() is not None
    qtbot.waitUntil(lambda: not segment.running, timeout=TIMEOUT_MS)
    assert not errors(notes), errors(notes)
    result = viewer.layers["stack labels"]
    assert isinstance(result, Labels) and result.data.shape == img.shape
    np.testing.assert_allclose(result.scale, SCALE)
    # the model segments a (new, differently sized) 3D image
    other, _ = boxes((10, 40, 36), seed=1)
    labels = napari_unet.segment(other, model=output, axes="ZYX", device="cpu")
    assert labels.shape == (10, 40, 36) and np.issubdtype(labels.dtype, np.integer)


def test_train_3d_from_a_thin_multichannel_stack(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path, notes: list[Any]
) -> None:
    """ZCYX image, Z (4) smaller than the patch (16): padded along Z, and the status says so."""
    viewer = make_napari_viewer()
    img, lab = boxes((4, 32, 32), channels=2)
    image = viewer.add_image(img, name="cells", metadata={"axes": "ZCYX"})
    masks = viewer.add_labels(lab, name="cells masks")
    widget = make_widget(viewer)
    widget.set_pair(0, image, masks)
    output = tmp_path / "thin.safetensors"
    widget.configure(output=output, epochs=1, val_fraction=0.0, preview_every=0, **TINY3D)
    assert widget.start() is not None, widget.status
    assert "'cells' has 4 planes along Z, fewer than the patch size 16" in widget.status
    assert "mirror-padded along Z" in widget.status
    wait_done(qtbot, widget)
    assert not errors(notes), errors(notes)
    model = load_model(output)
    assert model.ndim == 3 and model.in_channels == 2
    labels = napari_unet.segment(img, model=model, axes="ZCYX", device="cpu")
    assert labels.shape == (4, 32, 32)
