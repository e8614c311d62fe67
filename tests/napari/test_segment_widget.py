"""The "Segment with U-Net" dock widget, its worker adapter, settings and menu command, on a real viewer.

Runs headless (pytest-xvfb). Models are tiny random U-Nets (depth 2, 4 base features,
seeded) saved to ``tmp_path``; every test points ``NAPARI_UNET_CONFIG_DIR`` at ``tmp_path`` so
the user's recent-model list is never read or written. Waiting is done on the widget's own
state (set in the main thread when the worker finishes) with generous timeouts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import torch  # noqa: E402
from napari.layers import Image, Labels  # noqa: E402
from notifications import errors, infos  # noqa: E402

from napari_unet import UNet, save_model  # noqa: E402
from napari_unet._napari import settings  # noqa: E402
from napari_unet._napari.menu import segment_selected_layer  # noqa: E402
from napari_unet._napari.segment_widget import SegmentWidget, parse_channels  # noqa: E402
from napari_unet._napari.workers import start_worker  # noqa: E402

TIMEOUT_MS = 180_000  # a 2-core CPU machine importing torch in a thread can be slow
SCALE = (0.5, 0.25)
TRANSLATE = (3.0, -7.0)


# ---------------------------------------------------------------------------- fixtures & helpers
def flat(text: str) -> str:
    """``text`` with line breaks (the widget wraps its labels) folded into single spaces."""
    return " ".join(str(text).split())


def make_model(path: Path, in_channels: int = 1, n_classes: int = 2, *, seed: int = 0, **spec: Any) -> str:
    """A tiny seeded U-Net saved as a model file; returns its path."""
    torch.manual_seed(seed)
    net = UNet(in_channels, n_classes, depth=2, base_features=4)
    save_model(net, path, **spec)
    return str(path)


def squares(shape: tuple[int, ...] = (40, 50), seed: int = 0) -> np.ndarray:
    """Noisy dark background with two bright rectangles in the last two axes (float32)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 100, shape).astype(np.float32)
    img[..., 5:15, 6:16] += 800
    img[..., 22:34, 25:40] += 800
    return img


def run_and_wait(qtbot: Any, widget: SegmentWidget) -> Any:
    worker = widget.run()
    assert worker is not None, flat(widget._status.value)
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    return worker


def labels_layers(viewer: Any) -> list[Labels]:
    return [layer for layer in viewer.layers if isinstance(layer, Labels)]


@pytest.fixture
def model_2d(tmp_path: Path) -> str:
    return make_model(tmp_path / "one_channel.safetensors")


@pytest.fixture
def model_2ch(tmp_path: Path) -> str:
    return make_model(tmp_path / "two_channels.safetensors", 2, channel_names=["DNA", "membrane"])


# ---------------------------------------------------------------------------- import cost
def test_plugin_modules_and_widget_do_not_import_torch(tmp_path: Path, model_2d: str) -> None:
    code = textwrap.dedent(
        f"""
        import json, sys
        import napari_unet._napari.workers, napari_unet._napari.settings
        import napari_unet._napari.menu, napari_unet._napari.segment_widget
        after_import = 'torch' in sys.modules
        import numpy as np
        import napari
        from napari_unet._napari.segment_widget import SegmentWidget
        viewer = napari.Viewer(show=False)
        viewer.add_image(np.zeros((20, 30), np.float32), name='img')
        widget = SegmentWidget(viewer)
        viewer.window.add_dock_widget(widget)
        widget.set_model({model_2d!r})
        text = widget._model_info.value + " " + widget._axes_info.value
        print(json.dumps({{'after_import': after_import, 'after_widget': 'torch' in sys.modules, 'info': text}}))
        viewer.close()
        """
    )
    env = {**os.environ, settings.CONFIG_DIR_ENV: str(tmp_path / "sub_config")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["after_import"] is False
    assert result["after_widget"] is False, "constructing the widget / describing a model imported torch"
    assert "1 channel(s)" in flat(result["info"])


# ---------------------------------------------------------------------------- settings
def test_recent_models_most_recent_first_capped_and_missing_dropped(tmp_path: Path, config_dir: Path) -> None:
    files = []
    for i in range(10):
        f = tmp_path / f"m{i}.safetensors"
        f.write_bytes(b"x")
        files.append(f)
    for f in files:
        settings.add_recent_model(f)
    recent = settings.recent_models()
    assert recent == [files[i] for i in range(9, 1, -1)]
    assert len(recent) == settings.MAX_RECENT_MODELS
    settings.add_recent_model(files[5])
    assert settings.recent_models()[0] == files[5]
    files[9].unlink()
    assert files[9] not in settings.recent_models()
    stored = json.loads((config_dir / "settings.json").read_text())
    assert stored["version"] == 1 and stored["recent_models"][0] == str(files[5])
    assert [p.name for p in config_dir.iterdir()] == ["settings.json"], "temporary files left behind"


def test_corrupt_settings_file_starts_empty_with_a_warning(
    tmp_path: Path, config_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config_dir.mkdir(parents=True)
    (config_dir / "settings.json").write_text("{not json")
    with caplog.at_level("WARNING"):
        assert settings.recent_models() == []
    assert "corrupt" in caplog.text and "settings.json" in caplog.text
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"x")
    assert settings.add_recent_model(model) == [model]
    assert json.loads((config_dir / "settings.json").read_text())["recent_models"] == [str(model)]


def test_config_dir_defaults_to_the_user_config_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(settings.CONFIG_DIR_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert settings.config_dir() == tmp_path / "xdg" / "napari-unet"
    assert settings.config_dir().name == "napari-unet"


# ---------------------------------------------------------------------------- worker adapter
class Event:
    def __init__(self, step: int, total: int, stage: str, message: str = "") -> None:
        self.step, self.total, self.stage, self.message = step, total, stage, message


def counting(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"bad value at step {i}")
        yield Event(i + 1, n, "count", f"step {i + 1}/{n}")
    return n * 10


def test_worker_adapter_reports_progress_and_result(make_napari_viewer: Any, qtbot: Any) -> None:
    make_napari_viewer()
    got: dict[str, Any] = {"events": [], "finished": False}
    worker = start_worker(
        counting,
        5,
        description="Count",
        on_result=lambda r: got.__setitem__("result", r),
        on_event=got["events"].append,
        on_finished=lambda: got.__setitem__("finished", True),
    )
    qtbot.waitUntil(lambda: got["finished"], timeout=TIMEOUT_MS)
    assert got["result"] == 50
    assert [e.step for e in got["events"]] == [1, 2, 3, 4, 5]
    bar = worker.progress_adapter
    assert bar.closed and bar.bar.n == 5 and bar.bar.total == 5


def test_worker_adapter_shows_one_line_error_once(make_napari_viewer: Any, qtbot: Any, notes: list[Any]) -> None:
    from napari.utils.notifications import ErrorNotification

    make_napari_viewer()
    got: dict[str, Any] = {"finished": False}
    worker = start_worker(
        counting,
        5,
        2,
        description="Count",
        on_result=lambda r: got.__setitem__("result", r),
        on_error=lambda e: got.__setitem__("error", e),
        on_finished=lambda: got.__setitem__("finished", True),
    )
    qtbot.waitUntil(lambda: got["finished"], timeout=TIMEOUT_MS)
    assert "result" not in got and isinstance(got["error"], ValueError)
    assert errors(notes) == ["Count failed: bad value at step 2"]
    assert not any(isinstance(n, ErrorNotification) for n in notes), "napari also relayed a traceback"
    assert worker.progress_adapter.closed


def test_worker_adapter_quit_stops_the_generator(make_napari_viewer: Any, qtbot: Any) -> None:
    make_napari_viewer()
    state: dict[str, Any] = {"finished": False, "aborted": False, "closed": False, "steps": 0}

    def endless():
        try:
            while True:
                state["steps"] += 1
                time.sleep(0.01)  # unthrottled, it would flood the main thread's queue with events
                yield Event(state["steps"], 0, "forever")
        finally:
            state["closed"] = True

    worker = start_worker(
        endless,
        description="Endless",
        on_result=lambda r: state.__setitem__("result", r),
        on_aborted=lambda: state.__setitem__("aborted", True),
        on_finished=lambda: state.__setitem__("finished", True),
    )
    qtbot.waitUntil(lambda: state["steps"] > 3, timeout=TIMEOUT_MS)
    worker.quit()
    qtbot.waitUntil(lambda: state["finished"], timeout=TIMEOUT_MS)
    assert state["aborted"] and state["closed"] and "result" not in state
    assert worker.progress_adapter.closed


# ---------------------------------------------------------------------------- the widget
def test_widget_docks_and_image_box_follows_the_active_layer(make_napari_viewer: Any) -> None:
    viewer = make_napari_viewer()
    a = viewer.add_image(squares(), name="a")
    b = viewer.add_image(squares(seed=1), name="b")
    viewer.add_labels(np.zeros((40, 50), np.uint8), name="some labels")
    viewer.layers.selection.active = b
    widget = SegmentWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="Segment with U-Net")
    assert dock is not None and widget.native.parent() is not None
    assert widget.image_layer is b
    assert [name for name, _ in widget._image_choices()] == ["a", "b"]  # Image layers only
    viewer.layers.selection.active = a
    assert widget.image_layer is a
    viewer.layers.selection.active = viewer.layers["some labels"]
    assert widget.image_layer is a  # non-image selections are ignored
    c = viewer.add_image(squares(seed=2), name="c")  # a new layer becomes active
    assert widget.image_layer is c
    viewer.layers.remove(c)
    assert widget.image_layer in (a, b)
    assert "c" not in [name for name, _ in widget._image_choices()]
    # the bundled nuclei model is the first entry and selected by default
    assert widget._model.value.endswith("nuclei.safetensors")
    assert "DSB2018" in flat(widget._model_info.value)
    assert widget._advanced.native.isHidden()
    widget.show_advanced(True)
    assert not widget._advanced.native.isHidden()


def test_axes_line_says_when_axes_are_guessed_and_can_be_corrected(make_napari_viewer: Any, model_2d: str) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(squares((3, 40, 50)), name="stack")
    widget = SegmentWidget(viewer)
    assert "CYX" in flat(widget._axes_info.value) and "guessed" in flat(widget._axes_info.value)
    widget.configure(axes="ZYX")
    assert "ZYX" in flat(widget._axes_info.value) and "typed" in flat(widget._axes_info.value)
    widget.set_model(model_2d)
    assert "iterating over Z" in flat(widget._axes_info.value)
    assert widget.model_path == model_2d and "1 channel(s)" in flat(widget._model_info.value)
    assert parse_channels(" 0, 1 ") == [0, 1] and parse_channels("DNA,membrane") == ["DNA", "membrane"]
    assert parse_channels("") is None


def test_run_on_2d_image_adds_calibrated_labels_and_rerun_replaces(
    make_napari_viewer: Any, qtbot: Any, model_2d: str, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    img = viewer.add_image(squares(), name="nuclei", scale=SCALE, translate=TRANSLATE)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_model(model_2d)
    assert not widget._cancel_button.enabled
    assert widget._extra.native.isHidden(), "no other layer to combine: the list is hidden"
    worker = run_and_wait(qtbot, widget)
    assert worker.progress_adapter.closed

    result = viewer.layers["nuclei labels"]
    assert isinstance(result, Labels)
    assert result.data.shape == img.data.shape
    assert result.data.dtype in (np.uint16, np.uint32)
    assert result.data.max() > 0
    np.testing.assert_allclose(result.scale, SCALE)
    np.testing.assert_allclose(result.translate, TRANSLATE)
    assert result.metadata["axes"] == "YX" and result.metadata["source"] == "nuclei"
    prov = result.metadata["provenance"]
    assert prov["model"] == model_2d and prov["options"]["output"] == "instances" and prov["napari_unet_version"]
    assert widget._run_button.enabled and not widget._cancel_button.enabled
    assert "done" in flat(widget._status.value)
    assert settings.recent_models()[0] == Path(model_2d)

    first = result.data.copy()
    widget.configure(min_size=10_000)  # removes every object
    run_and_wait(qtbot, widget)
    assert len(labels_layers(viewer)) == 1, "re-running added a second result layer"
    assert viewer.layers["nuclei labels"] is result
    assert result.data.max() == 0 and first.max() > 0
    assert result.metadata["provenance"]["options"]["min_size"] == 10_000
    assert not errors(notes)
    assert any("Console equivalent" in m for m in infos(notes))


def test_a_layer_not_made_by_the_widget_is_never_replaced(make_napari_viewer: Any, qtbot: Any, model_2d: str) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="img")
    mine = viewer.add_labels(np.full((40, 50), 7, np.uint8), name="img labels")
    widget = SegmentWidget(viewer)
    widget.select_image(viewer.layers["img"])
    widget.set_model(model_2d)
    run_and_wait(qtbot, widget)
    run_and_wait(qtbot, widget)
    assert [layer.name for layer in labels_layers(viewer)] == ["img labels", "img labels [1]"]
    assert (mine.data == 7).all()
    assert viewer.layers["img labels [1]"].metadata["source"] == "img"


def test_zcyx_layer_with_metadata_axes_and_two_channel_model(
    make_napari_viewer: Any, qtbot: Any, model_2ch: str
) -> None:
    viewer = make_napari_viewer()
    data = squares((3, 2, 40, 50))
    img = viewer.add_image(
        data,
        name="cells",
        scale=(2.0, 1.0, *SCALE),
        translate=(1.0, 0.0, *TRANSLATE),
        metadata={"axes": "ZCYX", "channel_names": ["DNA", "membrane"]},
        axis_labels=("z", "c", "y", "x"),
        units=("um", "pixel", "um", "um"),
    )
    widget = SegmentWidget(viewer)
    widget.set_model(model_2ch)
    assert "channels C[0, 1]" in flat(widget._axes_info.value) and "iterating over Z" in flat(widget._axes_info.value)
    run_and_wait(qtbot, widget)
    result = viewer.layers["cells labels"]
    assert result.data.shape == (3, 40, 50)
    np.testing.assert_allclose(result.scale, (2.0, *SCALE))
    np.testing.assert_allclose(result.translate, (1.0, *TRANSLATE))
    assert result.metadata["axes"] == "ZYX"
    assert tuple(result.axis_labels) == ("z", "y", "x")
    assert tuple(result.units) == (img.units[0], img.units[2], img.units[3])


def test_channels_by_name_pick_from_a_wider_layer(make_napari_viewer: Any, qtbot: Any, model_2ch: str) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(
        squares((3, 40, 50)), name="three", metadata={"axes": "CYX", "channel_names": ["a", "DNA", "membrane"]}
    )
    widget = SegmentWidget(viewer)
    widget.set_model(model_2ch)
    widget.configure(channels="DNA, membrane")
    assert "channels C[1, 2]" in flat(widget._axes_info.value)
    run_and_wait(qtbot, widget)
    assert viewer.layers["three labels"].data.shape == (40, 50)
    assert "channels=['DNA', 'membrane']" in widget.last_console_call


def test_channel_mismatch_is_a_notification_and_adds_no_layer(
    make_napari_viewer: Any, model_2ch: str, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(squares((3, 40, 50)), name="x", metadata={"axes": "CYX"})
    widget = SegmentWidget(viewer)
    widget.set_model(model_2ch)
    assert "model expects 2 channels" in flat(widget._axes_info.value)  # shown before running
    n_layers = len(viewer.layers)
    assert widget.run() is None
    assert len(viewer.layers) == n_layers
    msgs = errors(notes)
    assert len(msgs) == 1
    assert "model expects 2 channels (DNA, membrane)" in msgs[0] and "'x' gives 3" in msgs[0]
    assert "\n" not in msgs[0]
    assert not widget.running and widget._run_button.enabled


def test_bad_axes_and_bad_model_file_are_notifications(
    make_napari_viewer: Any, tmp_path: Path, model_2d: str, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="img")
    widget = SegmentWidget(viewer)
    widget.set_model(model_2d)
    widget.configure(axes="ZYX")
    assert widget.run() is None
    assert any("axes 'ZYX' name 3 dimensions" in m for m in errors(notes))
    bad = tmp_path / "not_a_model.safetensors"
    bad.write_bytes(b"PK\x03\x04 definitely not safetensors")
    widget.browse(bad)
    assert any("not a napari-unet model file" in m for m in errors(notes))
    assert widget.model_path == model_2d  # the bad file was not selected
    assert Path(bad) not in settings.recent_models()
    assert len(viewer.layers) == 1


def test_error_inside_the_worker_is_one_notification(
    make_napari_viewer: Any, qtbot: Any, model_2d: str, notes: list[Any]
) -> None:
    from napari.utils.notifications import ErrorNotification

    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="img")
    widget = SegmentWidget(viewer)
    widget.set_model(model_2d)
    # a device this machine does not have: the error is raised in the worker thread
    widget.configure(device="mps" if torch.cuda.is_available() else "cuda")
    run_and_wait(qtbot, widget)
    msgs = errors(notes)
    assert (
        len(msgs) == 1
        and "available" in msgs[0]
        and "device" in msgs[0]
        and msgs[0].startswith("Segment with U-Net failed")
    )  # noqa: E501
    assert not any(isinstance(n, ErrorNotification) for n in notes)
    assert len(viewer.layers) == 1 and flat(widget._status.value).startswith("failed")


def test_cancel_mid_run_adds_nothing_and_returns_to_idle(
    make_napari_viewer: Any, qtbot: Any, model_2d: str, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(squares((1024, 1024)), name="big")
    widget = SegmentWidget(viewer)
    widget.set_model(model_2d)
    widget.configure(tile_size=32, halo=4, batch_size=1)
    worker = widget.run()
    assert worker is not None and widget._cancel_button.enabled and not widget._run_button.enabled
    qtbot.waitUntil(
        lambda: getattr(widget.last_event, "stage", None) == "tiles" or not widget.running, timeout=TIMEOUT_MS
    )
    assert widget.running, "finished before it could be cancelled"
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert widget.last_event.step < widget.last_event.total
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert flat(widget._status.value) == "cancelled"
    assert widget._run_button.enabled and not widget._cancel_button.enabled
    assert worker.progress_adapter.closed
    assert not errors(notes)


def test_probabilities_output_is_an_image_layer_with_one_channel_per_class(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path
) -> None:
    model = make_model(tmp_path / "three.safetensors", 1, 3)
    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="img", scale=SCALE, translate=TRANSLATE)
    widget = SegmentWidget(viewer)
    widget.set_model(model)
    widget.configure(output="probabilities")
    run_and_wait(qtbot, widget)
    probs = viewer.layers["img probabilities"]
    assert isinstance(probs, Image) and not labels_layers(viewer)
    assert probs.data.shape == (3, 40, 50)
    np.testing.assert_allclose(probs.data.sum(axis=0), 1.0, atol=1e-4)
    np.testing.assert_allclose(probs.scale, (1.0, *SCALE))
    np.testing.assert_allclose(probs.translate, (0.0, *TRANSLATE))
    assert probs.metadata["axes"] == "CYX"
    assert probs.metadata["channel_names"] == ["background", "class 1", "class 2"]
    assert widget.image_layer is viewer.layers["img"], "the result layer must not become the input"
    assert widget.last_console_call.startswith("from napari_unet import predict")


def test_console_call_reproduces_the_labels(make_napari_viewer: Any, qtbot: Any, model_2d: str) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="nuclei")
    widget = SegmentWidget(viewer)
    widget.set_model(model_2d)
    widget.configure(min_size=3, device="cpu")
    run_and_wait(qtbot, widget)
    call = widget.last_console_call
    assert "viewer.layers['nuclei']" in call and repr(model_2d) in call
    assert "min_size=3" in call and "device='cpu'" in call and "mode=" not in call
    exec(call, {"viewer": viewer})  # noqa: S102 - the line the widget shows the user
    widget_labels = viewer.layers["nuclei labels"].data
    console_labels = viewer.layers[-1].data
    assert viewer.layers[-1] is not viewer.layers["nuclei labels"]
    assert widget_labels.max() > 0
    np.testing.assert_array_equal(console_labels, widget_labels)


def test_extra_channel_layers_are_stacked_as_channels(make_napari_viewer: Any, qtbot: Any, model_2ch: str) -> None:
    viewer = make_napari_viewer()
    dna = viewer.add_image(squares(), name="dna", scale=SCALE)
    membrane = viewer.add_image(squares(seed=3), name="membrane", scale=SCALE)
    viewer.add_image(squares((30, 30)), name="other size")
    widget = SegmentWidget(viewer)
    widget.select_image(dna)
    widget.set_model(model_2ch)
    assert [name for name, _ in widget._extra_choices()] == ["membrane"]
    assert not widget._extra.native.isHidden()
    assert "model expects 2 channels" in flat(widget._axes_info.value)
    with pytest.raises(ValueError, match=r"\['other size'\] cannot be stacked after 'dna'"):
        widget.select_image(dna, extra=[viewer.layers["other size"]])
    widget.select_image(dna, extra=[membrane])
    assert "axes CYX" in flat(widget._axes_info.value)
    run_and_wait(qtbot, widget)
    result = viewer.layers["dna labels"]
    assert result.data.shape == (40, 50)
    np.testing.assert_allclose(result.scale, SCALE)
    exec(widget.last_console_call, {"viewer": viewer})  # noqa: S102
    np.testing.assert_array_equal(viewer.layers[-1].data, result.data)


# ---------------------------------------------------------------------------- Layers > Segment
def test_menu_command_is_in_the_manifest() -> None:
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-unet")
    items = manifest.contributions.menus["napari/layers/segment"]
    assert "napari-unet.segment_selected" in [item.command for item in items]
    command = next(c for c in manifest.contributions.commands if c.id == "napari-unet.segment_selected")
    assert command.python_name == "napari_unet._napari.menu:segment_selected_layer"
    widget_cmd = next(c for c in manifest.contributions.commands if c.id == "napari-unet.segment_widget")
    assert widget_cmd.python_name == "napari_unet._napari.segment_widget:SegmentWidget"


def test_menu_runs_the_panel_on_the_selected_layer(
    make_napari_viewer: Any, qtbot: Any, model_2d: str, notes: list[Any]
) -> None:
    settings.add_recent_model(model_2d)
    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="first")
    second = viewer.add_image(squares(seed=1), name="second", scale=SCALE)
    viewer.layers.selection.active = second
    segment_selected_layer(viewer)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Segment with U-Net")
    assert isinstance(widget, SegmentWidget)
    # the first entry of the model list is the bundled nuclei model, ahead of recent files
    assert widget.image_layer is second and widget.model_path.endswith("nuclei.safetensors")
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert not errors(notes)
    result = viewer.layers["second labels"]
    assert result.data.shape == (40, 50)
    np.testing.assert_allclose(result.scale, SCALE)

    # again, through napari's command registry (as the menu item does): the panel is reused
    from napari._app_model import get_app_model

    viewer.layers.selection.active = viewer.layers["first"]
    get_app_model().commands.execute_command("napari-unet.segment_selected").result()
    _dock2, widget2 = viewer.window.add_plugin_dock_widget("napari-unet", "Segment with U-Net")
    assert widget2 is widget
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert "first labels" in [layer.name for layer in viewer.layers]


def test_menu_without_a_model_asks_for_one(
    make_napari_viewer: Any, notes: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_unet._napari import model_choice

    monkeypatch.setattr(model_choice, "builtin_models", lambda: [])  # an install without its model file
    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="img")
    segment_selected_layer(viewer)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Segment with U-Net")
    assert widget.image_layer is viewer.layers["img"] and not widget.running
    assert any("choose a model file" in m for m in infos(notes))
    assert not errors(notes)


def test_menu_on_a_non_image_layer_is_an_error(make_napari_viewer: Any, notes: list[Any]) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="img")
    viewer.add_points([[1, 2]], name="spots")
    segment_selected_layer(viewer)
    msgs = errors(notes)
    assert len(msgs) == 1 and "'spots'" in msgs[0] and "Points" in msgs[0]
    assert len(viewer.layers) == 2


def test_object_size_zooms_and_is_in_the_console_call(make_napari_viewer: Any, qtbot: Any, tmp_path: Path) -> None:
    model = make_model(tmp_path / "sized.safetensors", object_size=20.0)
    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="cells")
    widget = SegmentWidget(viewer)
    widget.set_model(model)
    assert "20 px diameter" in flat(widget._model_info.value)
    widget.configure(object_size=10)
    run_and_wait(qtbot, widget)
    labels = viewer.layers["cells labels"]
    assert labels.data.shape == (40, 50)
    assert "object_size=10.0" in widget.last_console_call
    assert labels.metadata["provenance"]["options"]["object_size"] == 10.0


def test_object_size_with_a_model_that_lacks_one_is_refused(
    make_napari_viewer: Any, model_2d: str, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="cells")
    widget = SegmentWidget(viewer)
    widget.set_model(model_2d)
    widget.configure(object_size=12)
    n_layers = len(viewer.layers)
    assert widget.run() is None
    assert len(viewer.layers) == n_layers
    assert any("does not record the object size" in m for m in errors(notes))


def test_tta_checkbox_reaches_the_job_the_provenance_and_the_console_call(
    make_napari_viewer: Any, qtbot: Any, model_2d: str, notes: list[Any]
) -> None:
    from napari_unet._napari.segment_job import console_call

    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="cells")
    widget = SegmentWidget(viewer)
    widget.set_model(model_2d)
    assert any(w is widget._tta for w in widget._advanced), "an advanced option"
    assert widget._tta.value is False and "8×" in widget._tta.text
    job = widget._make_job()
    assert job.tta is False and job.core_options()["tta"] is False and "tta=" not in console_call(job)
    widget.configure(tta=True, device="cpu")
    job = widget._make_job()
    assert job.tta is True and job.core_options()["tta"] is True and job.options()["tta"] is True
    run_and_wait(qtbot, widget)
    assert not errors(notes)
    labels = viewer.layers["cells labels"]
    assert labels.metadata["provenance"]["options"]["tta"] is True
    assert "tta=True" in widget.last_console_call
    exec(widget.last_console_call, {"viewer": viewer})  # noqa: S102 - the line the widget shows the user
    np.testing.assert_array_equal(viewer.layers[-1].data, labels.data)


def test_the_default_model_is_named_not_located(make_napari_viewer: Any) -> None:
    from napari_unet._napari.segment_job import console_call
    from napari_unet.core.options import PRECISIONS

    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="cells")
    widget = SegmentWidget(viewer)  # the built-in nuclei model, selected by default
    assert tuple(widget._precision.choices) == PRECISIONS  # the one list of precisions
    widget.configure(device="cpu")
    job = widget._make_job()
    call = console_call(job)
    assert "model=" not in call and "site-packages" not in call and ".safetensors" not in call
    assert job.provenance()["model"] == "nuclei"
    exec(call, {"viewer": viewer})  # noqa: S102 - the line works on any machine
    assert viewer.layers[-1].data.shape == (40, 50)


def test_options_and_configure_by_name(make_napari_viewer: Any, model_2d: str) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="cells")
    widget = SegmentWidget(viewer)
    defaults = widget.options()
    assert defaults["model"].endswith("nuclei.safetensors")
    assert {k: v for k, v in defaults.items() if k != "model"} == {
        "axes": None,
        "channels": None,
        "output": "instances",
        "tile_size": None,
        "device": "auto",
        "min_size": 0,
        "object_size": None,
        "halo": None,
        "batch_size": None,
        "precision": "auto",
        "tta": False,
        "track": True,
        "tracks_layer": False,
        "z_mode": "3d",
        "anisotropy": None,
        "block_wise": False,  # a numpy layer: in memory
        "large_results_to": Path.home() / "napari-unet-results" / "cells_labels.zarr",
        "resume": False,
        "block_size": None,
    }
    widget.configure(
        model=model_2d,
        axes="YX",
        channels=[0],
        tile_size=64,
        halo=8,
        batch_size=2,
        device="cpu",
        precision="float32",
        tta=True,
        min_size=5,
        object_size=12.0,
        output="semantic",
    )
    options = widget.options()
    assert options["model"] == model_2d and widget.model_path == model_2d
    assert options["axes"] == "YX" and options["channels"] == [0] and widget._channels.value == "0"
    assert (options["tile_size"], options["halo"], options["batch_size"]) == (64, 8, 2)
    assert options["tta"] is True and options["precision"] == "float32" and options["output"] == "semantic"
    widget.configure(axes=None, channels=None, tile_size=None, object_size=None)
    options = widget.options()
    assert options["axes"] is None and options["channels"] is None
    assert options["tile_size"] is None and options["object_size"] is None
    widget.configure(**options)  # a round trip changes nothing
    assert widget.options() == options
    with pytest.raises(KeyError, match="unknown option.*'tile'"):
        widget.configure(tile=3)
