"""The Segment panel on a time-lapse: labels matched across frames, the Tracks layer, and turning both off.

Runs headless (pytest-xvfb) with the hand-set threshold network of tests/core/known_nets.py, whose
labels are known exactly: a square moving right and a square moving down.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.layers import Labels, Tracks  # noqa: E402
from notifications import errors  # noqa: E402

from napari_unet import save_model, tracks_from_labels  # noqa: E402
from napari_unet._napari.segment_widget import SegmentWidget  # noqa: E402

TIMEOUT_MS = 180_000
N_FRAMES = 5
SCALE, TRANSLATE = (30.0, 0.5, 0.25), (0.0, 3.0, -7.0)


@pytest.fixture
def threshold_model(tmp_path: Path) -> str:
    spec = importlib.util.spec_from_file_location("known_nets", Path(__file__).parents[1] / "core" / "known_nets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "threshold.safetensors"
    save_model(module.threshold_net(1), path)
    return str(path)


def timelapse() -> np.ndarray:
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 100, (N_FRAMES, 40, 48)).astype(np.float32)
    for t in range(N_FRAMES):
        stack[t, 5:15, 4 + 2 * t : 14 + 2 * t] = 950
        stack[t, 20 + t : 30 + t, 30:40] = 950
    return stack


def run_and_wait(qtbot: Any, widget: SegmentWidget) -> None:
    assert widget.run() is not None, widget._status.value
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def test_time_lapse_labels_are_matched_and_a_tracks_layer_overlays_them(
    make_napari_viewer: Any, qtbot: Any, threshold_model: str, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(timelapse(), name="movie", scale=SCALE, translate=TRANSLATE, metadata={"axes": "TYX"})
    widget = SegmentWidget(viewer)
    assert widget.options()["track"] is True and widget.options()["tracks_layer"] is False
    advanced = list(widget._advanced)
    assert any(w is widget._track for w in advanced) and any(w is widget._tracks_layer for w in advanced)
    widget.configure(model=threshold_model, device="cpu", tracks_layer=True)
    run_and_wait(qtbot, widget)
    assert not errors(notes)

    labels = viewer.layers["movie labels"]
    assert isinstance(labels, Labels)
    assert [int(labels.data[t, 10, 9 + 2 * t]) for t in range(N_FRAMES)] == [1] * N_FRAMES
    assert [int(labels.data[t, 25 + t, 35]) for t in range(N_FRAMES)] == [2] * N_FRAMES
    assert "2 tracks" in " ".join(widget._status.value.split())
    options = labels.metadata["provenance"]["options"]
    assert options["track"] is True and options["track_max_gap"] == 2

    tracks = viewer.layers["movie tracks"]
    assert isinstance(tracks, Tracks) and widget.tracks_layer is tracks
    np.testing.assert_allclose(tracks.data, tracks_from_labels(labels.data, axes="TYX"))
    assert sorted(set(tracks.data[:, 0].astype(int))) == [1, 2]
    np.testing.assert_allclose(tracks.scale, labels.scale)
    np.testing.assert_allclose(tracks.translate, labels.translate)
    np.testing.assert_allclose(labels.scale, SCALE)
    assert tracks.metadata["source"] == "movie"

    # the tracks layer is replaced, not piled up; without it, the earlier one goes
    run_and_wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["movie", "movie labels", "movie tracks"]
    widget.configure(tracks_layer=False)
    run_and_wait(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == ["movie", "movie labels"] and widget.tracks_layer is None


def test_track_off_gives_per_frame_labels_and_says_so_in_the_console_line(
    make_napari_viewer: Any, qtbot: Any, threshold_model: str, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(timelapse(), name="movie", metadata={"axes": "TYX"})
    widget = SegmentWidget(viewer)
    widget.configure(model=threshold_model, device="cpu", track=False, tracks_layer=True)
    run_and_wait(qtbot, widget)
    assert not errors(notes)
    labels = viewer.layers["movie labels"]
    assert len(np.unique(labels.data)) - 1 == 2 * N_FRAMES, "every object of every frame its own label"
    assert labels.metadata["provenance"]["options"]["track"] is False
    assert not any(isinstance(layer, Tracks) for layer in viewer.layers), "no matching: no tracks layer"
    assert "track=False" in widget.last_console_call
    exec(widget.last_console_call, {"viewer": viewer})  # noqa: S102 - the line the panel shows
    np.testing.assert_array_equal(viewer.layers[-1].data, labels.data)
