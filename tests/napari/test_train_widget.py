"""The "Train U-Net" dock widget on a real viewer: layer pairs, folders, live curves, preview, stop/resume.

Runs headless (pytest-xvfb). Training uses tiny networks (depth 2, 4 base features, 32-pixel
patches, batch 2, 3 steps per epoch) on synthetic 96x96 images of bright discs, on the CPU
with one torch thread. Every test points ``NAPARI_UNET_CONFIG_DIR`` at ``tmp_path`` and
writes its models under ``tmp_path``. Waiting is done on the widget's own state (set in the
main thread when the worker finishes) with generous timeouts.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import tifffile  # noqa: E402
import torch  # noqa: E402
from napari.layers import Labels  # noqa: E402
from notifications import errors, infos  # noqa: E402
from skimage.draw import disk  # noqa: E402

from napari_unet._napari import settings  # noqa: E402
from napari_unet._napari.train_widget import (  # noqa: E402
    PREVIEW_KEY,
    TrainHistory,
    TrainWidget,
    default_output,
    label_values,
    last_checkpoint_paths,
)
from napari_unet.core.model.file import load_model  # noqa: E402

TIMEOUT_MS = 300_000  # 2 shared CPU cores; importing torch in the worker thread can take a while
TINY: dict[str, Any] = dict(
    depth=2, base_features=4, patch_size=32, batch_size=2, steps_per_epoch=3, lr=0.01, device="cpu", seed=0
)
SCALE = (0.5, 0.25)
TRANSLATE = (3.0, -7.0)


# ---------------------------------------------------------------------------- fixtures & helpers
@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    """Tiny networks gain nothing from intra-op threads; on a busy machine they cost several-fold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def discs(shape: tuple[int, int] = (96, 96), seed: int = 0, n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs on a dim noisy background (float32) and their instance labels (int32)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0.1, 0.05, shape).astype(np.float32)
    lab = np.zeros(shape, np.int32)
    for i in range(n):
        r = int(rng.integers(5, 10))
        centre = (int(rng.integers(r, shape[0] - r)), int(rng.integers(r, shape[1] - r)))
        rr, cc = disk(centre, r, shape=shape)
        free = lab[rr, cc] == 0
        lab[rr[free], cc[free]] = i + 1
        img[rr[free], cc[free]] += 1.0
    return img, lab


def make_widget(viewer: Any) -> TrainWidget:
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train U-Net")
    return widget


def wait_done(qtbot: Any, widget: TrainWidget, timeout: int = TIMEOUT_MS) -> None:
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def preview_layers(viewer: Any) -> list[Labels]:
    return [lay for lay in viewer.layers if isinstance(lay, Labels) and (lay.metadata or {}).get(PREVIEW_KEY)]


# ---------------------------------------------------------------------------- import cost, manifest
def test_module_and_widget_do_not_import_torch(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import json, sys
        import napari_unet._napari.train_widget
        after_import = 'torch' in sys.modules
        import numpy as np
        import napari
        from napari_unet._napari.train_widget import TrainWidget
        viewer = napari.Viewer(show=False)
        viewer.add_image(np.zeros((20, 30), np.float32), name='img')
        lab = np.zeros((20, 30), np.int32); lab[2:5, 2:5] = 1
        viewer.add_labels(lab, name='img masks')
        widget = TrainWidget(viewer)
        viewer.window.add_dock_widget(widget)
        print(json.dumps({'after_import': after_import, 'after_widget': 'torch' in sys.modules,
                          'pairs': [[p[0].name, p[1].name] for p in widget.pairs],
                          'classes': widget.classes_text}))
        viewer.close()
        """
    )
    env = {**os.environ, settings.CONFIG_DIR_ENV: str(tmp_path / "sub_config")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["after_import"] is False
    assert result["after_widget"] is False, "building the Train widget imported torch"
    assert result["pairs"] == [["img", "img masks"]]
    assert "background, interior, boundary" in result["classes"]


def test_manifest_lists_the_train_widget() -> None:
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-unet")
    widgets = {w.display_name: w.command for w in manifest.contributions.widgets}
    assert widgets["Train U-Net"] == "napari-unet.train_widget"
    command = next(c for c in manifest.contributions.commands if c.id == "napari-unet.train_widget")
    assert command.python_name == "napari_unet._napari.train_widget:TrainWidget"


# ---------------------------------------------------------------------------- helpers without training
def test_history_recovers_step_losses_from_running_means() -> None:
    history = TrainHistory()
    for epoch, losses in ((1, [4.0, 2.0, 3.0]), (2, [1.0, 5.0])):
        for i, _ in enumerate(losses):
            history.add_step(epoch, len(history.steps) + 1, float(np.mean(losses[: i + 1])))
    np.testing.assert_allclose(history.step_losses, [4, 2, 3, 1, 5])
    assert history.steps == [1, 2, 3, 4, 5]
    assert history.smoothed[0] == pytest.approx(4.0)  # bias-corrected EMA starts at the first loss
    history.add_epoch(1, 3, 3.0, 0.5, 0.25)
    history.add_epoch(2, 5, 3.0, 0.4, 0.75)
    assert history.best_metric() == 0.75


def test_label_values_subsample_big_arrays() -> None:
    lab = np.zeros((300, 300), np.int32)
    lab[::2, ::2] = 3
    values, sampled = label_values(lab, limit=1000)
    assert sampled and set(values.tolist()) <= {0, 3}
    values, sampled = label_values(lab)
    assert not sampled and values.tolist() == [0, 3]
    assert last_checkpoint_paths("/x/m.safetensors") == (
        Path("/x/m.last.safetensors"),
        Path("/x/m.last.state.safetensors"),
    )


def test_pairs_default_to_matching_shapes_and_classes_follow_labels(make_napari_viewer: Any, qtbot: Any) -> None:
    viewer = make_napari_viewer()
    img, lab = discs()
    viewer.add_labels(np.ones((10, 10), np.int32), name="other shape")
    cells = viewer.add_image(img, name="cells")
    masks = viewer.add_labels(lab, name="cells masks")
    widget = make_widget(viewer)
    assert widget.pairs == [(cells, masks)]
    assert widget.output_path == default_output("cells")
    assert default_output("a b/c") == Path("~").expanduser() / "napari-unet-models" / "a_b_c.safetensors"
    assert "classes: background, interior, boundary" in widget.classes_text
    widget.configure(mode="semantic")
    assert widget.classes_text.startswith("classes: 0 (background), 1, 2, 3")
    masks.data = (lab > 0).astype(np.int32) * 5  # replaced data: recounted shortly after
    qtbot.waitUntil(lambda: widget.classes_text == "classes: 0 (background), 5", timeout=10_000)
    masks.data = np.zeros_like(lab)
    qtbot.waitUntil(lambda: "single value" in widget.classes_text, timeout=10_000)
    widget.configure(mode="instances")
    assert "empty" in widget.classes_text
    # "+ pair" with nothing left to pick repeats the first image; "− pair" keeps one row
    widget.add_pair()
    assert len(widget.pairs) == 2
    widget.remove_pair()
    widget.remove_pair()
    assert len(widget.pairs) == 1
    with pytest.raises(KeyError, match="unknown option"):
        widget.configure(epoch=3)


# ---------------------------------------------------------------------------- errors
def test_mismatched_shapes_show_one_error_and_nothing_starts(
    make_napari_viewer: Any, tmp_path: Path, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    img, _ = discs()
    image = viewer.add_image(img, name="cells")
    wrong = viewer.add_labels(discs((64, 64))[1], name="wrong masks")
    widget = make_widget(viewer)
    widget.set_pair(0, image, wrong)
    output = tmp_path / "out" / "m.safetensors"
    widget.configure(output=output, **TINY)
    assert widget.start() is None
    assert not widget.running
    errs = errors(notes)
    assert len(errs) == 1, errs
    assert "'wrong masks' has shape (64, 64)" in errs[0] and "(96, 96)" in errs[0]
    assert "not started" in widget.status
    assert not output.parent.exists()


def test_empty_labels_end_the_run_with_the_core_message(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    img, lab = discs()
    viewer.add_image(img, name="cells")
    viewer.add_labels(np.zeros_like(lab), name="cells masks")
    widget = make_widget(viewer)
    output = tmp_path / "m.safetensors"
    widget.configure(output=output, epochs=1, **TINY)
    assert widget.start() is not None
    wait_done(qtbot, widget)
    errs = errors(notes)
    assert len(errs) == 1, errs
    assert errs[0].startswith("Train U-Net failed: labels of layer 'cells' are empty")
    assert widget.status.startswith("failed:")
    assert not output.exists() and widget.saved_path is None
    assert not widget.history.steps


# ---------------------------------------------------------------------------- training from layers
def test_train_from_layers_curves_preview_and_segment_widget(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    img_a, lab_a = discs(seed=0)
    img_b, lab_b = discs(seed=1)
    viewer.add_image(img_a, name="a", scale=SCALE, translate=TRANSLATE)
    viewer.add_labels(lab_a, name="a masks", scale=SCALE, translate=TRANSLATE)
    b = viewer.add_image(img_b, name="b")
    viewer.add_labels(lab_b, name="b masks")
    _dock, segment = viewer.window.add_plugin_dock_widget("napari-unet", "Segment with U-Net")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Train U-Net")  # as from the menu
    assert isinstance(widget, TrainWidget)
    widget.add_pair()
    assert [(i.name, m.name) for i, m in widget.pairs] == [("a", "a masks"), ("b", "b masks")]
    output = tmp_path / "new folder" / "discs.safetensors"
    widget.configure(output=output, epochs=2, val_last=True, preview_every=1, **TINY)
    draws_before = widget.plot_draw_count

    worker = widget.start()
    assert worker is not None, widget.status
    assert widget.running and not widget._start_button.enabled
    wait_done(qtbot, widget)

    assert not errors(notes), errors(notes)
    # the model file, its last checkpoint and the recent list
    assert output.is_file() and last_checkpoint_paths(output)[0].is_file()
    model = load_model(output)
    assert model.config["depth"] == 2 and model.config["base_features"] == 4
    assert model.spec.class_names == ["background", "interior", "boundary"]
    assert widget.saved_path == output
    assert output in settings.recent_models()
    assert segment.model_path == str(output)
    assert any(str(output) in message for message in infos(notes))
    assert "done" in widget.status and "AP50" in widget.status
    # curves: a loss for every step, validation values for every epoch, the canvas redrawn
    history = widget.history
    assert history.steps == list(range(1, 7))
    assert all(math.isfinite(v) for v in history.step_losses + history.smoothed)
    assert history.epochs == [1, 2] and history.epoch_steps == [3, 6]
    assert all(v is not None and v > 0 for v in history.val_losses)
    assert all(v is not None and 0.0 <= v <= 1.0 for v in history.val_metrics)
    assert history.metric_name == "AP50" and widget.best_metric == max(history.val_metrics)
    assert widget.plot_draw_count >= draws_before + 2
    # preview: one layer, the image's shape and placement, updated in place at each epoch
    assert len(widget.preview_history) == 2
    layer = widget.preview_history[0]
    assert all(seen is layer for seen in widget.preview_history)
    assert preview_layers(viewer) == [layer] and layer.name == "a preview"
    assert layer.data.shape == img_a.shape
    np.testing.assert_allclose(layer.scale, SCALE)
    np.testing.assert_allclose(layer.translate, TRANSLATE)
    # the preview layer is not offered as training labels
    assert all(name != "a preview" for name, _ in widget._labels_choices())
    # a second run reuses the same preview layer
    widget.configure(epochs=1)
    assert widget.start() is not None
    wait_done(qtbot, widget)
    assert preview_layers(viewer) == [layer] and widget.preview_history == [layer]
    assert b.data is img_b


# ---------------------------------------------------------------------------- stop and resume
def test_stop_keeps_the_last_checkpoint_and_resume_continues(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    img, lab = discs()
    viewer.add_image(img, name="cells")
    viewer.add_labels(lab, name="cells masks")
    widget = make_widget(viewer)
    output = tmp_path / "stop.safetensors"
    widget.configure(output=output, epochs=200, preview_every=0, val_fraction=0.0, **TINY)
    worker = widget.start()
    assert worker is not None
    stop_status: list[str] = []

    def stop_after_first_epoch(progress: Any) -> None:
        # pressing Stop when the first epoch is reported (the GUI may lag behind such a tiny net)
        if progress.kind == "epoch" and not stop_status:
            widget.stop()
            stop_status.append(widget.status)

    worker.yielded.connect(stop_after_first_epoch)
    wait_done(qtbot, widget, timeout=TIMEOUT_MS)
    assert stop_status and "stopping" in stop_status[0]
    assert not errors(notes), errors(notes)
    assert widget.status.startswith("stopped at epoch"), widget.status
    assert "last good checkpoint stays" in widget.status and "Resume" in widget.status
    done = widget.history.epochs[-1]
    assert done < 200 and widget.saved_path is None
    last, state = last_checkpoint_paths(output)
    assert last.is_file() and state.is_file()
    assert load_model(last).config["depth"] == 2
    assert output not in settings.recent_models()

    widget.configure(resume=True, epochs=done + 1)
    assert widget.start() is not None
    wait_done(qtbot, widget)
    assert not errors(notes), errors(notes)
    assert widget.history.epochs == [done + 1]
    assert widget.history.steps[0] == done * TINY["steps_per_epoch"] + 1
    assert widget.saved_path == output and output in settings.recent_models()
    assert "no validation set" in widget.status


# ---------------------------------------------------------------------------- folders
def test_train_from_folders_semantic_then_fine_tune(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path, notes: list[Any]
) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for k in range(3):
        img, lab = discs(seed=10 + k)
        tifffile.imwrite(images / f"im{k}.tif", img)
        classes = np.where(lab > 0, 1 + lab % 2, 0).astype(np.uint8)  # semantic: 0, 1, 2
        tifffile.imwrite(masks / f"im{k}_mask.tif", classes)
    viewer = make_napari_viewer()
    widget = make_widget(viewer)
    widget.configure(source="folders", images_dir=images, masks_dir=masks, mode="semantic")
    assert widget.output_path == default_output("images")
    assert "values found in the masks" in widget.classes_text
    output = tmp_path / "folders.safetensors"
    widget.configure(output=output, epochs=1, val_last=True, **TINY)
    assert widget.start() is not None
    wait_done(qtbot, widget)
    assert not errors(notes), errors(notes)
    assert output.is_file() and widget.saved_path == output
    assert widget.history.metric_name == "mIoU" and "mIoU" in widget.status
    assert widget.history.epochs == [1] and widget.history.val_metrics[0] is not None
    assert not preview_layers(viewer)  # no Image layer to preview on
    model = load_model(output)
    assert model.spec.class_names == ["background", "class 1", "class 2"]
    record = model.spec.training
    assert record["val_images"] == ["im2.tif"] and record["train_images"] == ["im0.tif", "im1.tif"]

    # fine-tune that model: checked before starting (mode, resume), then trained into a new file
    widget.configure(fine_tune=output, mode="instances")
    assert widget.start() is None
    assert "trained for 'semantic'" in errors(notes)[-1]
    widget.configure(mode="semantic", resume=True)
    assert widget.start() is None
    assert "either Fine-tune from or Resume" in errors(notes)[-1]
    tuned = tmp_path / "tuned.safetensors"
    widget.configure(resume=False, output=tuned, depth=4, base_features=16)  # the model's architecture wins
    assert widget.start() is not None
    wait_done(qtbot, widget)
    assert len(errors(notes)) == 2
    assert load_model(tuned).config["depth"] == 2 and load_model(tuned).config["base_features"] == 4
