"""The napari side of input hardening: the reader accepts exactly the files ``read_image`` reads
(deciding from the header, without reading pixels), and the Segment panel turns a few NaN pixels
into a warning notification and the result of the clean image.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from napari_unet._napari.reader import napari_get_reader, read_tiff
from napari_unet.core.image import io
from napari_unet.core.image.io import ImageReadError, read_image, write_labels


# ---------------------------------------------------------------------------- files
def _hyperstack(tmp_path: Path) -> Path:
    path = tmp_path / "stack.tif"
    data = np.arange(3 * 2 * 16 * 16, dtype=np.uint16).reshape(3, 2, 16, 16)
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX"})
    return path


def _patched(path: Path, name: str, old: bytes, new: bytes) -> Path:
    """A copy of ``path`` with ``old`` replaced by ``new`` (same length: offsets stay valid)."""
    assert len(old) == len(new)
    raw = path.read_bytes()
    assert raw.count(old) == 1, old
    out = path.with_name(name)
    out.write_bytes(raw.replace(old, new))
    return out


def promises_more_images(tmp_path: Path) -> Path:
    # the ImageJ header promises 8 images (4 slices x 2 channels); the file holds 6 pages
    return _patched(
        _hyperstack(tmp_path), "promises8.tif", b"images=6\nchannels=2\nslices=3", b"images=8\nchannels=2\nslices=4"
    )


def promises_inconsistent_images(tmp_path: Path) -> Path:
    return _patched(
        _hyperstack(tmp_path), "promises9.tif", b"images=6\nchannels=2\nslices=3", b"images=9\nchannels=3\nslices=3"
    )


def empty_2d(tmp_path: Path) -> Path:
    path = tmp_path / "empty2d.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile: "writing zero-size array to nonconformant TIFF"
        tifffile.imwrite(path, np.zeros((0, 64), np.uint16))
    return path


def empty_4d(tmp_path: Path) -> Path:
    path = tmp_path / "empty4d.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tifffile.imwrite(path, np.zeros((3, 0, 64, 64), np.uint16))
    return path


def truncated_hyperstack(tmp_path: Path) -> Path:
    full = _hyperstack(tmp_path)
    path = tmp_path / "cut_stack.tif"
    path.write_bytes(full.read_bytes()[:1500])  # inside the pixel data
    return path


def not_a_tiff(tmp_path: Path) -> Path:
    path = tmp_path / "text.tif"
    path.write_text("not an image at all", encoding="utf-8")
    return path


def good_hyperstack(tmp_path: Path) -> Path:
    return _hyperstack(tmp_path)


def good_plain(tmp_path: Path) -> Path:
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.ones((20, 30), np.float32))
    return path


def good_labels(tmp_path: Path) -> Path:
    return write_labels(
        tmp_path / "labels.tif",
        np.arange(12, dtype=np.uint32).reshape(3, 4),
        axes="YX",
        provenance={"software": "test"},
    )


BAD: dict[str, tuple[Callable[[Path], Path], str]] = {
    "promises more images": (promises_more_images, "promises 8 images but only 6"),
    "inconsistent ImageJ header": (promises_inconsistent_images, "promises 9 images but only 6"),
    "empty 2D": (empty_2d, "has shape (0, 64): every axis must have at least one pixel"),
    "empty 4D": (empty_4d, "has shape (3, 0, 64, 64): every axis must have at least one pixel"),
    "truncated hyperstack": (truncated_hyperstack, "truncated"),
    "not a TIFF": (not_a_tiff, "not a TIFF file"),
}
GOOD = {"hyperstack": good_hyperstack, "plain": good_plain, "labels": good_labels}


@pytest.mark.parametrize("name", list(BAD))
def test_reader_refuses_exactly_what_read_image_refuses(tmp_path: Path, caplog: Any, name: str) -> None:
    make, reason = BAD[name]
    path = make(tmp_path)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert reason in str(err.value) and path.name in str(err.value)
    with caplog.at_level(logging.WARNING, logger="napari_unet._napari.reader"):
        assert napari_get_reader(str(path)) is None
    assert reason in caplog.text and path.name in caplog.text, "the same reason is logged"


@pytest.mark.parametrize("name", list(GOOD))
def test_reader_accepts_what_read_image_reads(tmp_path: Path, name: str) -> None:
    path = GOOD[name](tmp_path)
    assert napari_get_reader(str(path)) is read_tiff
    assert read_image(path).data.size > 0
    assert read_tiff(str(path))


@pytest.mark.parametrize("name", list(GOOD) + list(BAD))
def test_reader_decides_without_reading_pixels(tmp_path: Path, monkeypatch: Any, name: str) -> None:
    path = (GOOD[name] if name in GOOD else BAD[name][0])(tmp_path)

    def no_pixels(*_: Any) -> None:
        raise AssertionError("napari_get_reader read pixel data")

    monkeypatch.setattr(io, "_load", no_pixels)
    assert (napari_get_reader(str(path)) is read_tiff) == (name in GOOD)


# ---------------------------------------------------------------------------- the Segment panel
pytest.importorskip("pytestqt")

from napari.utils.notifications import NotificationSeverity  # noqa: E402
from notifications import errors  # noqa: E402

from napari_unet import save_model  # noqa: E402
from napari_unet._napari.segment_widget import SegmentWidget  # noqa: E402

TIMEOUT_MS = 180_000


def _threshold_net() -> Any:
    """The hand-set network of tests/core/known_nets.py (foreground where normalised > 0.5)."""
    spec = importlib.util.spec_from_file_location("known_nets", Path(__file__).parents[1] / "core" / "known_nets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.threshold_net(1)


def _squares() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 100, (40, 50)).astype(np.float32)
    img[5:15, 6:16] += 800
    img[22:34, 25:40] += 800
    return img


def _segment(viewer: Any, qtbot: Any, widget: SegmentWidget, data: np.ndarray, name: str) -> np.ndarray:
    layer = viewer.add_image(data, name=name)
    widget.select_image(layer)
    assert widget.run() is not None, widget._status.value
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    return np.asarray(viewer.layers[f"{name} labels"].data)


def test_panel_warns_about_nan_pixels_and_gives_the_clean_result(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path, notes: list[Any]
) -> None:
    model = tmp_path / "threshold.safetensors"
    save_model(_threshold_net(), model)
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    widget.set_model(str(model))
    clean = _segment(viewer, qtbot, widget, _squares(), "clean")
    assert not [n for n in notes if n.severity == NotificationSeverity.WARNING]
    dirty = _squares()
    dirty[[1, 30, 9], [1, 45, 9]] = np.nan  # two in the background, one inside a square
    labels = _segment(viewer, qtbot, widget, dirty, "dirty")
    warned = [str(n.message) for n in notes if n.severity == NotificationSeverity.WARNING]
    assert len(warned) == 1, warned
    assert "layer 'dirty': 3 of 2000 pixel values are not finite (3 NaN)" in warned[0]
    assert not errors(notes)
    assert labels.max() == clean.max() == 2
    away = np.isfinite(dirty)
    np.testing.assert_array_equal(labels[away] > 0, clean[away] > 0)
