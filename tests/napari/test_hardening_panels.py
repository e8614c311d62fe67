"""The Segment and Train panels with inputs that cannot work and errors nobody expected: one error
notification naming the problem, a status line that says so, never a traceback (it is logged at
DEBUG only), no model file reported that is not there.

Runs headless (pytest-xvfb), tiny networks on the CPU, like test_train_widget / test_segment_widget.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import torch  # noqa: E402
from notifications import errors  # noqa: E402
from skimage.draw import disk  # noqa: E402

from napari_unet import UNet, save_model  # noqa: E402
from napari_unet._napari import segment_widget as segment_module  # noqa: E402
from napari_unet._napari import train_widget as train_module  # noqa: E402
from napari_unet._napari.segment_widget import SegmentWidget  # noqa: E402
from napari_unet._napari.train_widget import TrainWidget  # noqa: E402

TIMEOUT_MS = 300_000
TINY: dict[str, Any] = dict(
    depth=2, base_features=4, patch_size=32, batch_size=2, steps_per_epoch=2, lr=0.01, device="cpu", seed=0, epochs=1
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def discs(shape: tuple[int, int] = (64, 64)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    img = rng.normal(0.1, 0.05, shape).astype(np.float32)
    lab = np.zeros(shape, np.int32)
    for i, centre in enumerate([(16, 16), (16, 46), (46, 16), (46, 46)]):
        rr, cc = disk(centre, 8, shape=shape)
        lab[rr, cc] = i + 1
        img[rr, cc] += 1.0
    return img, lab


def train_panel(viewer: Any, img: np.ndarray, lab: np.ndarray, output: Path) -> TrainWidget:
    viewer.add_image(img, name="cells")
    viewer.add_labels(lab, name="cells masks")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train U-Net")
    widget.configure(output=output, **TINY)
    return widget


def run_to_the_end(qtbot: Any, widget: Any, start: Any) -> None:
    assert start() is not None, widget.status if hasattr(widget, "status") else None
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def no_traceback_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Python prints ERROR records with their traceback on the console when logging is not set up."""
    loud = [r for r in caplog.records if r.levelno > logging.DEBUG and r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


# ---------------------------------------------------------------------------- Train panel
@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda img, lab: img.__setitem__((3, 4), np.nan),
            "Train U-Net failed: layer 'cells' holds 1 NaN or infinite pixel value(s), the first at y=3, x=4",
        ),
        (
            lambda img, lab: lab.__setitem__((slice(0, 2), 0), -7),
            "Train U-Net failed: labels of layer 'cells' hold negative values (smallest -7, 2 pixel(s))",
        ),
    ],
    ids=["nan pixel", "negative label id"],
)
def test_train_panel_bad_data_is_one_notification_and_no_model(
    make_napari_viewer, qtbot, tmp_path, notes, caplog, edit, message
):
    img, lab = discs()
    edit(img, lab)
    output = tmp_path / "m.safetensors"
    widget = train_panel(make_napari_viewer(), img, lab, output)
    with caplog.at_level(logging.DEBUG):
        run_to_the_end(qtbot, widget, widget.start)
    errs = errors(notes)
    assert len(errs) == 1 and errs[0].startswith(message), errs
    assert widget.status.startswith("failed:") and widget.saved_path is None and not output.exists()
    no_traceback_above_debug(caplog)
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.DEBUG), "the traceback stays at DEBUG"


def test_train_panel_never_reports_a_model_file_that_is_not_there(
    make_napari_viewer, qtbot, tmp_path, notes, monkeypatch
):
    def finishes_without_a_file(job):
        return None
        yield

    monkeypatch.setattr(train_module, "run_training", finishes_without_a_file)
    img, lab = discs()
    output = tmp_path / "m.safetensors"
    widget = train_panel(make_napari_viewer(), img, lab, output)
    run_to_the_end(qtbot, widget, widget.start)
    assert errors(notes) == [f"Train U-Net: training ended, but no model file was written at {output}"]
    assert widget.saved_path is None and "no model file was written" in widget.status.replace("\n", " ")


def test_train_panel_runtime_error_in_the_worker_ends_the_run(
    make_napari_viewer, qtbot, tmp_path, notes, caplog, monkeypatch
):
    from napari_unet.core.training import loop

    def broken(pairs, **kwargs):
        yield loop.TrainEvent("start", message="preparing data")
        raise RuntimeError("Expected all tensors to be on the same device")

    monkeypatch.setattr(loop, "iter_train", broken)
    img, lab = discs()
    widget = train_panel(make_napari_viewer(), img, lab, tmp_path / "m.safetensors")
    with caplog.at_level(logging.DEBUG):
        run_to_the_end(qtbot, widget, widget.start)
    assert errors(notes) == ["Train U-Net failed: RuntimeError: Expected all tensors to be on the same device"]
    assert widget.status.startswith("failed:") and widget.saved_path is None
    no_traceback_above_debug(caplog)


def test_train_panel_unexpected_error_before_starting_is_a_notification(
    make_napari_viewer, tmp_path, notes, monkeypatch
):
    def broken(*args, **kwargs):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(train_module, "build_job", broken)
    img, lab = discs()
    widget = train_panel(make_napari_viewer(), img, lab, tmp_path / "m.safetensors")
    assert widget.start() is None
    assert errors(notes) == ["Train U-Net: RuntimeError: something nobody expected"]
    assert widget.status.startswith("not started")


# ---------------------------------------------------------------------------- Segment panel
@pytest.fixture
def segment_panel(make_napari_viewer, tmp_path) -> SegmentWidget:
    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    save_model(UNet(1, 2, depth=2, base_features=4), path)
    viewer = make_napari_viewer()
    viewer.add_image(discs()[0], name="cells")
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment with U-Net")
    widget.set_model(path)
    return widget


def test_segment_panel_unexpected_error_in_the_worker(segment_panel, qtbot, notes, caplog, monkeypatch):
    from napari_unet.core.model import cache as modelcache

    def broken(path):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(modelcache, "cached_model", broken)
    with caplog.at_level(logging.DEBUG):
        run_to_the_end(qtbot, segment_panel, segment_panel.run)
    assert errors(notes) == ["Segment with U-Net failed: RuntimeError: CUDA error: device-side assert triggered"]
    no_traceback_above_debug(caplog)


def test_segment_panel_unexpected_error_before_starting_is_a_notification(segment_panel, notes, monkeypatch):
    def broken(*args, **kwargs):
        raise MemoryError("Unable to allocate 19.1 GiB")

    monkeypatch.setattr(segment_module, "plan_job", broken)
    assert segment_panel.run() is None
    assert errors(notes) == ["Segment with U-Net: Unable to allocate 19.1 GiB"]
    assert "not started" in segment_panel._status.value
