"""Make the screenshots in docs/images/ from a real napari viewer.

Run from the repository root, headless::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py

(without a display and with ``xvfb-run`` installed, the script restarts itself that way). It opens
napari, loads napari-unet's samples, docks the "Segment with U-Net" panel and really runs it. The
model is the first bundled model (``napari_unet/data/models/*.safetensors``) if there is one,
else a tiny U-Net with **random, untrained weights** made here: its labels then show what the
panel does (a calibrated Labels layer, its status, the console line), not a useful segmentation;
the captions in docs/segment-widget.md say which model was used. Update them when that changes.

Files written (PNG, each kept under 300 kB by reducing colours and, if needed, size):

* ``segment-widget.png``: the panel after a run;
* ``segment-viewer.png``: the whole window, panel docked, image and result labels;
* ``reader-two-channels.png``: the two-channel sample opened by the reader (two additive layers);
* ``layers-segment-menu.png``: the Layers > Segment menu with "Segment with U-Net";
* ``train-widget.png``: the whole window during training on the nuclei sample and its ground truth
  (left two thirds for training, right third for validation): the Train panel with its curves, and
  the preview layer over the image, grabbed when the last epoch's preview arrives.

Settings (the recent-model list) go to a temporary folder, never to the user's.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import pathlib
import shutil
import sys
import tempfile
import time
from typing import Any

log = logging.getLogger("make_screenshots")

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images"
MAX_BYTES = 300_000
WINDOW_SIZE = (1560, 900)
TRAIN_WINDOW_SIZE = (1500, 1260)  # tall enough for the whole Train panel, curves included
SCREEN = "1600x1300x24"
PLUGIN, WIDGET, TRAIN_WIDGET = "napari-unet", "Segment with U-Net", "Train U-Net"
#: The screenshot's training run: tiny and short, on the CPU (a real model trains for longer).
TRAIN_OPTIONS = dict(
    epochs=2,
    steps_per_epoch=20,
    patch_size=128,
    batch_size=4,
    depth=3,
    base_features=8,
    lr=0.01,
    device="cpu",
    seed=0,
    val_last=True,
    preview_every=1,
)


def _restart_under_xvfb() -> None:
    """Without a display, run this script again inside ``xvfb-run`` (24-bit screen)."""
    if os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM") or sys.platform != "linux":
        return
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is None:
        sys.exit("no display: install xvfb (xvfb-run) or set DISPLAY")
    os.execv(xvfb_run, [xvfb_run, "-a", "-s", f"-screen 0 {SCREEN}", sys.executable, *sys.argv])


def save_png(image: Any, path: pathlib.Path, max_bytes: int = MAX_BYTES) -> pathlib.Path:
    """Save an RGB(A) array as a PNG under ``max_bytes``: full colour, else 256 colours, else smaller."""
    import numpy as np
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(np.asarray(image)[..., :3]))
    scale = 1.0
    while True:
        sized = (
            picture
            if scale == 1.0
            else picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS)
        )
        for candidate in (sized, sized.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)):
            buffer = io.BytesIO()
            candidate.save(buffer, format="PNG", optimize=True)
            if buffer.tell() <= max_bytes:
                path.write_bytes(buffer.getvalue())
                log.info("%s: %dx%d, %d kB", path.name, sized.width, sized.height, buffer.tell() // 1000)
                return path
        scale *= 0.85


def to_array(pixmap: Any) -> Any:
    """A QPixmap as an (H, W, 4) uint8 array."""
    from napari._qt.utils import QImg2array
    from qtpy.QtGui import QImage

    return QImg2array(pixmap.toImage().convertToFormat(QImage.Format.Format_RGBA8888))


def grab_panel(widget: Any) -> Any:
    """The Segment panel down to its Status line (not the empty dock below it)."""
    from qtpy.QtCore import QPoint, QRect

    panel, status = widget.native, widget._status.native
    bottom = status.mapTo(panel, QPoint(0, status.height())).y() + 12
    return to_array(panel.grab(QRect(0, 0, panel.width(), min(bottom, panel.height()))))


def wait(condition: Any, timeout: float = 600.0) -> None:
    """Process Qt events until ``condition()`` is true."""
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for napari")
        QApplication.processEvents()
        time.sleep(0.02)


def settle(seconds: float = 0.5) -> None:
    """Let napari draw (layers, dock widgets, the canvas)."""
    end = time.monotonic() + seconds
    wait(lambda: time.monotonic() > end)


def choose_model(folder: pathlib.Path) -> tuple[pathlib.Path, bool]:
    """The first bundled model file, or a tiny random U-Net saved in ``folder``.

    Returns
    -------
    (pathlib.Path, bool)
        The file and whether it is bundled (trained).
    """
    import importlib.resources

    models = pathlib.Path(str(importlib.resources.files("napari_unet") / "data" / "models"))
    bundled = sorted(models.glob("*.safetensors")) if models.is_dir() else []
    if bundled:
        return bundled[0], True
    import torch

    from napari_unet import UNet, save_model

    torch.manual_seed(0)
    path = folder / "untrained-random.safetensors"
    save_model(
        UNet(1, 2, depth=2, base_features=8),
        path,
        channel_names=["nuclei"],
        description="untrained: random weights, for the screenshots only",
    )
    return path, False


def menu_screenshot(viewer: Any) -> Any:
    """Open Layers > Segment and grab that part of the screen (menus are separate windows)."""
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QApplication

    window = viewer.window._qt_window
    bar = window.menuBar()
    layers_action = next(a for a in bar.actions() if a.text().replace("&", "") == "Layers")
    layers_menu = layers_action.menu()
    layers_menu.popup(bar.mapToGlobal(bar.actionGeometry(layers_action).bottomLeft()))
    settle(0.5)
    segment_action = next(a for a in layers_menu.actions() if a.text().replace("&", "") == "Segment")
    layers_menu.setActiveAction(segment_action)
    submenu = segment_action.menu()
    top_right = layers_menu.actionGeometry(segment_action).topRight()
    submenu.popup(layers_menu.mapToGlobal(top_right + QPoint(2, 0)))
    settle(0.8)
    screen = QApplication.primaryScreen().grabWindow(0)
    left = max(0, bar.mapToGlobal(bar.actionGeometry(layers_action).topLeft()).x() - 40)
    top = max(0, bar.mapToGlobal(QPoint(0, 0)).y() - 4)
    right = submenu.geometry().right() + 40
    bottom = max(layers_menu.geometry().bottom(), submenu.geometry().bottom()) + 20
    picture = screen.copy(left, top, right - left, bottom - top)
    submenu.hide()
    layers_menu.hide()
    return to_array(picture)


def add_crop(viewer: Any, layer: Any, columns: slice, name: str, **kwargs: Any) -> Any:
    """Add the ``columns`` of a 2D layer as a new layer of the same kind, in place over the original."""
    from napari.layers import Labels

    step = float(layer.scale[-1])
    translate = (float(layer.translate[0]), float(layer.translate[1]) + (columns.start or 0) * step)
    add = viewer.add_labels if isinstance(layer, Labels) else viewer.add_image
    return add(
        layer.data[:, columns],
        name=name,
        scale=tuple(layer.scale),
        translate=translate,
        metadata=dict(layer.metadata),
        **kwargs,
    )


def train_screenshot(viewer: Any, folder: pathlib.Path, path: pathlib.Path) -> None:
    """Train a tiny U-Net in the Train panel on the nuclei sample; grab the window at the last preview."""
    viewer.layers.clear()
    viewer.window.remove_dock_widget("all")
    viewer.window._qt_window.resize(*TRAIN_WINDOW_SIZE)
    viewer.open_sample(PLUGIN, "nuclei")
    image, truth = viewer.layers["nuclei_dsb2018"], viewer.layers["nuclei ground truth"]
    split = image.data.shape[1] * 2 // 3
    limits = tuple(image.contrast_limits)
    train = add_crop(viewer, image, slice(None, split), "nuclei train", contrast_limits=limits)
    val = add_crop(viewer, image, slice(split, None), "nuclei val", contrast_limits=limits)
    train_masks = add_crop(viewer, truth, slice(None, split), "nuclei train masks", visible=False)
    val_masks = add_crop(viewer, truth, slice(split, None), "nuclei val masks", visible=False)
    viewer.layers.remove(image)
    viewer.layers.remove(truth)
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, TRAIN_WIDGET)
    widget.set_pair(0, train, train_masks)
    widget.set_pair(1, val, val_masks)
    widget.configure(output=folder / "nuclei-demo.safetensors", **TRAIN_OPTIONS)
    viewer.reset_view()
    settle()

    shots: list[Any] = []
    show_preview = widget._show_preview

    def show_preview_and_grab(labels: Any) -> None:
        # runs inside the panel's event handler: later events wait until it returns
        show_preview(labels)
        if len(widget.preview_history) == TRAIN_OPTIONS["epochs"] and not shots:
            widget._plot.update(widget.history)  # draw now, not throttled
            settle(1.0)
            shots.append(viewer.screenshot(canvas_only=False, flash=False))

    widget._show_preview = show_preview_and_grab
    if widget.start() is None:
        raise RuntimeError(f"the Train panel did not start: {widget._status.value}")
    wait(lambda: not widget.running)
    log.info("training: %s", widget.status)
    if not shots:
        raise RuntimeError(f"no preview arrived during training: {widget.status}")
    save_png(shots[0], path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="folder for the PNGs (default docs/images)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="napari-unet-shots-") as tmp:
        os.environ["NAPARI_UNET_CONFIG_DIR"] = str(pathlib.Path(tmp) / "config")
        os.environ["NAPARI_CONFIG"] = str(pathlib.Path(tmp) / "napari-settings.yaml")  # napari's defaults
        import napari
        from napari.settings import get_settings

        # info toasts would cover the canvas (the panel's messages show in its Status line)
        get_settings().application.gui_notification_level = "error"

        from napari_unet.core.image.samples import sample_path

        model, bundled = choose_model(pathlib.Path(tmp))
        log.info("model: %s (%s)", model, "bundled" if bundled else "untrained, random weights")

        viewer = napari.Viewer(title="napari-unet")
        viewer.window._qt_window.resize(*WINDOW_SIZE)
        viewer.open_sample(PLUGIN, "nuclei")
        image = viewer.layers["nuclei_dsb2018"]
        viewer.layers["nuclei ground truth"].visible = False
        viewer.layers.selection.active = image
        _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
        widget.set_model(model)
        widget.select_image(image)
        widget._min_size.value = 50  # as one would, to drop specks
        settle()
        if widget.run() is None:
            raise RuntimeError(f"the panel did not start: {widget._status.value}")
        wait(lambda: not widget.running)
        result = widget.result_layer
        if result is None:
            raise RuntimeError(f"the panel gave no result: {widget._status.value}")
        log.info(
            "result %r: %d objects; console line: %s", result.name, int(result.data.max()), widget.last_console_call
        )
        viewer.layers.selection.active = result
        settle(0.5)
        viewer.reset_view()
        settle(0.5)
        save_png(grab_panel(widget), args.out / "segment-widget.png")
        save_png(viewer.screenshot(canvas_only=False, flash=False), args.out / "segment-viewer.png")
        save_png(menu_screenshot(viewer), args.out / "layers-segment-menu.png")

        viewer.layers.clear()
        viewer.window.remove_dock_widget("all")
        viewer.window._qt_window.resize(1100, 640)
        viewer.open(sample_path("nuclei_golgi"), plugin=PLUGIN)
        settle(1.0)  # the canvas takes its new size
        viewer.reset_view()
        settle(0.5)
        save_png(viewer.screenshot(canvas_only=False, flash=False), args.out / "reader-two-channels.png")

        train_screenshot(viewer, pathlib.Path(tmp), args.out / "train-widget.png")  # last: it grows the window
        viewer.close()
    return 0


if __name__ == "__main__":
    _restart_under_xvfb()
    sys.exit(main())
