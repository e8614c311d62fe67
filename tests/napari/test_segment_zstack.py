"""The Segment panel's "Z-stacks" options (``z_mode``, ``anisotropy``) on a real viewer (pytest-xvfb).

The model is the hand-set threshold network of ``tests/core/known_nets.py`` (foreground where the
normalised image is above 0.5), so the objects of every result are known.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from notifications import errors  # noqa: E402

from napari_unet import save_model  # noqa: E402
from napari_unet._napari.segment_job import console_call  # noqa: E402
from napari_unet._napari.segment_widget import SegmentWidget  # noqa: E402

TIMEOUT_MS = 180_000


@pytest.fixture
def threshold_model(tmp_path: Path) -> str:
    spec = importlib.util.spec_from_file_location("known_nets", Path(__file__).parents[1] / "core" / "known_nets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "threshold.safetensors"
    save_model(module.threshold_net(1), path)
    return str(path)


def stack() -> np.ndarray:
    """ZYX, 5 planes: two squares through every plane (2 objects in 3D, 10 in the planes)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 100, (5, 40, 50)).astype(np.float32)
    img[:, 5:15, 6:16] += 800
    img[:, 22:34, 25:40] += 800
    return img


def run_and_wait(qtbot: Any, widget: SegmentWidget) -> None:
    assert widget.run() is not None, widget._status.value
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def test_z_stack_options_reach_the_job_the_labels_the_provenance_and_the_console_call(
    make_napari_viewer: Any, qtbot: Any, threshold_model: str, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(stack(), name="nuclei", scale=(2.0, 0.5, 0.5), metadata={"axes": "ZYX"})
    widget = SegmentWidget(viewer)
    widget.set_model(threshold_model)
    assert any(w is widget._z_mode for w in widget._advanced), "an advanced option"
    assert tuple(widget._z_mode.choices) == ("3d", "stitch", "planes", "3d-ortho")
    widget.configure(device="cpu")
    job = widget._make_job()
    assert job.z_mode == "3d" and job.anisotropy is None and job.used_anisotropy == 4.0  # from the layer's scale
    assert "z_mode=" not in console_call(job) and "anisotropy=" not in console_call(job)

    run_and_wait(qtbot, widget)
    labels = viewer.layers["nuclei labels"]
    assert labels.data.shape == (5, 40, 50) and labels.data.max() == 2  # 3D objects
    options = labels.metadata["provenance"]["options"]
    assert options["z_mode"] == "3d" and options["anisotropy"] == 4.0

    widget.configure(z_mode="planes")
    run_and_wait(qtbot, widget)
    assert viewer.layers["nuclei labels"].data.max() == 10  # one object per plane and square
    call = widget.last_console_call
    assert "z_mode='planes'" in call and "anisotropy=" not in call
    exec(call, {"viewer": viewer})  # noqa: S102 - the line the widget shows the user
    np.testing.assert_array_equal(viewer.layers[-1].data, viewer.layers["nuclei labels"].data)

    widget.configure(z_mode="stitch", anisotropy=1.5)
    assert widget.options()["z_mode"] == "stitch" and widget.options()["anisotropy"] == 1.5
    run_and_wait(qtbot, widget)
    result = viewer.layers["nuclei labels"]
    assert result.data.max() == 2
    assert result.metadata["provenance"]["options"]["anisotropy"] == 1.5
    assert "z_mode='stitch'" in widget.last_console_call and "anisotropy=1.5" in widget.last_console_call
    widget.configure(anisotropy=None)
    assert widget.options()["anisotropy"] is None and widget._anisotropy.value == 0
    assert not errors(notes)


def test_a_bad_z_mode_is_refused_before_anything_starts(make_napari_viewer: Any, threshold_model: str) -> None:
    from napari_unet._napari.segment_job import SegmentJob

    viewer = make_napari_viewer()
    viewer.add_image(stack(), name="nuclei", metadata={"axes": "ZYX"})
    widget = SegmentWidget(viewer)
    widget.set_model(threshold_model)
    job = widget._make_job()
    with pytest.raises(ValueError, match=r"z_mode must be one of '3d', 'stitch', 'planes', '3d-ortho', got '4d'"):
        SegmentJob(source=job.source, layout=job.layout, model_path=job.model_path, z_mode="4d")
    with pytest.raises(ValueError, match=r"anisotropy must be a positive number"):
        SegmentJob(source=job.source, layout=job.layout, model_path=job.model_path, anisotropy=-1.0)
    assert job.used_anisotropy is None  # a layer without scale: unknown, not isotropic
