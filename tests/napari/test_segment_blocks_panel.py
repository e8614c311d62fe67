"""The Segment panel on large lazy images: block-wise on dask into OME-Zarr labels shown from their pyramid.

Real viewer (pytest-xvfb), the hand-set threshold network of ``tests/core/known_nets.py`` (foreground
where the normalised image is above 0.5, so the labels are known) and tiny images: "large" is the
monkeypatched :data:`~napari_unet._napari.block_job.LARGE_RESULT_PIXELS`. Blocks of 64 px with
``halo=0`` make the block-wise labels equal the in-memory ones up to relabelling. One test starts the
panel's own local cluster (one worker process) from napari's worker thread; the others share one
cluster (``client=``) to stay quick.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from napari.layers import Labels  # noqa: E402
from notifications import errors  # noqa: E402

import napari_unet  # noqa: E402
from napari_unet._napari import block_job  # noqa: E402
from napari_unet._napari.segment_widget import SegmentWidget  # noqa: E402
from napari_unet.core.blocks import run as blocks_run  # noqa: E402
from napari_unet.core.image.ngff import ome_attrs, read_zarr_provenance  # noqa: E402
from napari_unet.core.model.file import save_model  # noqa: E402

TIMEOUT_MS = 180_000
SRC = str(Path(__file__).resolve().parents[2] / "src")
SCALE = (0.5, 0.25)
SHAPE = (64, 520)  # 9 blocks of 64 px; a pyramid of 3 levels (520 -> 260 -> 130 px wide)


def _module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "core" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


known = _module("known_nets")
files = _module("ome_zarr_files")


def squares(shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """Bright 10 px squares, several cut by the 64 px block borders."""
    img = np.full(shape, 10, np.uint16)
    for y in range(4, shape[0] - 12, 23):
        for x in range(6, shape[1] - 12, 19):
            img[y : y + 10, x : x + 10] = 1000
    return img


def same_up_to_relabelling(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a.ravel(), b.ravel()], 1), axis=0)
    return len(np.unique(pairs[:, 0])) == len(pairs) == len(np.unique(pairs[:, 1]))


def flat(text: str) -> str:
    return " ".join(str(text).split())


def unwrapped(text: str) -> str:
    """``text`` without any white space (the panel breaks long paths inside its labels)."""
    return "".join(str(text).split())


@pytest.fixture(autouse=True)
def workers_import_this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])]))


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> None:
    """Labels of more than 1000 pixels count as large."""
    monkeypatch.setattr(block_job, "LARGE_RESULT_PIXELS", 1000)


@pytest.fixture(scope="module")
def client() -> Any:
    os.environ["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])])
    cluster = distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=2, dashboard_address=":0")
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def model(tmp_path: Path) -> str:
    return str(save_model(known.threshold_net(), tmp_path / "threshold.safetensors"))


@pytest.fixture
def ome_zarr(tmp_path: Path) -> Path:
    """``cells.ome.zarr``: the squares, 3 levels, NGFF 0.5, chunks of 32 px."""
    levels = files.halves(squares(), "YX", 3)
    return files.write_ome_zarr(tmp_path / "cells.ome.zarr", levels, "YX", version="0.5", scale=SCALE, chunks=(32, 32))


def expected(mode: str = "instances") -> np.ndarray:
    return napari_unet.segment(squares(), known.threshold_net(), axes="YX", mode=mode, device="cpu")


def panel(viewer: Any, model: str, **options: Any) -> SegmentWidget:
    widget = SegmentWidget(viewer)
    widget.set_model(model)
    widget.configure(device="cpu", block_size=64, **options)
    return widget


def run_and_wait(qtbot: Any, widget: SegmentWidget) -> None:
    assert widget.run() is not None, flat(widget._status.value)
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def test_a_large_lazy_layer_is_segmented_block_wise_into_a_zarr_pyramid_layer(
    make_napari_viewer: Any, qtbot: Any, large: None, model: str, ome_zarr: Path, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(ome_zarr), plugin="napari-unet")
    widget = panel(viewer, model)
    out = ome_zarr.parent / "cells_labels.zarr"  # beside the file, named after it
    assert widget.blocks.block_wise.value is True and widget.options()["large_results_to"] == out
    widget.blocks.workers = 1  # the panel's own local cluster, started from napari's worker thread
    said: list[str] = []  # the status line after each progress event
    on_event = widget._on_event
    widget._on_event = lambda event: (on_event(event), said.append(flat(widget._status.value)))
    run_and_wait(qtbot, widget)
    assert not errors(notes), errors(notes)
    status = flat(widget._status.value)
    assert status.startswith("done: 'cells labels', 81 objects, 9 blocks (0 resumed)") and str(out) in unwrapped(status)
    assert any(s.startswith("9/9 blocks: block") and "dashboard http://" in s for s in said), said

    layer = viewer.layers["cells labels"]
    assert isinstance(layer, Labels) and layer is widget.result_layer and layer.multiscale
    levels = list(layer.data)
    assert [tuple(level.shape) for level in levels] == [(64, 520), (32, 260), (16, 130)]
    assert all(isinstance(level, da.Array) for level in levels)  # read from disk as shown, never numpy
    labels = levels[0].compute()
    assert same_up_to_relabelling(labels, expected()) and labels.max() == 81
    np.testing.assert_array_equal(levels[1].compute(), labels[::2, ::2])
    np.testing.assert_allclose(layer.scale, SCALE)
    assert layer.metadata["provenance"]["options"]["block_wise"]["path"] == str(out)

    group = zarr.open_group(str(out), mode="r")  # the OME-Zarr label image on disk
    attrs = ome_attrs(group)
    assert "image-label" in attrs and [d["path"] for d in attrs["multiscales"][0]["datasets"]] == ["0", "1", "2"]
    assert attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == list(SCALE)
    assert read_zarr_provenance(out)["blocks"]["n_blocks"] == 9
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no unfinished names left

    call = widget.last_console_call
    assert call.startswith("import napari_unet; result = napari_unet.segment_blocks(viewer.layers['cells'].data[0], ")
    assert f"out={str(out)!r}" in call and "axes='YX'" in call and "block=64" in call
    assert call.endswith(f"viewer.add_labels(result.levels(), name='cells labels', scale={list(SCALE)!r})")
    compile(call, "console", "exec")


def test_small_lazy_and_numpy_layers_stay_in_memory_and_the_box_follows_the_rule(
    make_napari_viewer: Any, qtbot: Any, model: str, monkeypatch: pytest.MonkeyPatch, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    small = viewer.add_image(da.from_array(squares(), chunks=32), name="small", scale=SCALE)
    plain = viewer.add_image(squares(), name="plain")
    widget = panel(viewer, model)
    widget.select_image(small)
    assert widget.blocks.block_wise.value is False  # 33280 pixels: below the default 2**28
    monkeypatch.setattr(block_job, "LARGE_RESULT_PIXELS", 1000)
    widget.select_image(plain)
    assert widget.blocks.block_wise.value is False  # numpy: always in memory
    home = Path.home() / block_job.RESULTS_FOLDER / "plain_labels.zarr"  # no file: under the home folder
    assert widget.options()["large_results_to"] == home
    widget.select_image(small)
    assert widget.blocks.block_wise.value is True  # lazy and now "large"
    widget.configure(output="probabilities")
    assert widget.run() is None  # refused, with the reason
    assert "probabilities are made in memory" in errors(notes)[-1]
    monkeypatch.setattr(block_job, "LARGE_RESULT_PIXELS", 10**9)
    widget.select_image(plain)
    widget.select_image(small)  # the rule again, for this layer
    assert widget.blocks.block_wise.value is False
    widget.configure(output="instances")
    run_and_wait(qtbot, widget)
    layer = viewer.layers["small labels"]
    assert not layer.multiscale and same_up_to_relabelling(np.asarray(layer.data), expected())
    assert widget.last_console_call.startswith("from napari_unet import segment;")
    assert not home.exists()


def test_an_existing_output_is_refused_and_resume_continues_a_cancelled_run(
    make_napari_viewer: Any, qtbot: Any, large: None, model: str, client: Any, tmp_path: Path, monkeypatch, notes
) -> None:
    viewer = make_napari_viewer()
    image = viewer.add_image(da.from_array(squares(), chunks=32), name="cells")
    widget = panel(viewer, model)
    widget.blocks.client = client
    out = tmp_path / "mine.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    widget.configure(large_results_to=out)
    assert widget.run() is None
    assert f"'{out}' exists: napari-unet never overwrites it" in errors(notes)[-1]
    assert flat(widget._status.value).startswith("not started:")
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"

    out = tmp_path / "labels.zarr"
    widget.configure(large_results_to=out)
    real, quit_once = blocks_run.iter_segment_blocks, []

    def cancelled_after_a_block(*args: Any, **kwargs: Any) -> Any:  # Cancel, right after the first block
        gen = real(*args, **kwargs)
        try:
            for event in gen:
                if event.stage == "blocks" and event.step > 0 and not quit_once:
                    quit_once.append(event)
                    widget.worker.quit()
                yield event
        finally:
            gen.close()

    monkeypatch.setattr(blocks_run, "iter_segment_blocks", cancelled_after_a_block)
    refusals = len(errors(notes))
    run_and_wait(qtbot, widget)
    assert quit_once and len(errors(notes)) == refusals
    assert unwrapped(widget._status.value) == unwrapped(
        f"cancelled: the blocks done are kept; tick Resume and press Run to continue into '{out}'"
    )
    assert [layer.name for layer in viewer.layers] == ["cells"] and not out.exists()
    assert any(p.name.startswith(".") for p in tmp_path.iterdir())  # the unfinished labels, hidden

    monkeypatch.setattr(blocks_run, "iter_segment_blocks", real)
    assert widget.run() is None  # again without Resume: refused
    assert "tick Resume to continue it" in errors(notes)[-1]
    widget.configure(resume=True)
    refusals = len(errors(notes))
    run_and_wait(qtbot, widget)
    status = flat(widget._status.value)
    assert status.startswith("done: 'cells labels', 81 objects, 9 blocks (") and len(errors(notes)) == refusals
    resumed = int(status.split("9 blocks (")[1].split(" resumed")[0])
    assert resumed >= 1, status
    layer = viewer.layers["cells labels"]
    assert same_up_to_relabelling(np.asarray(layer.data[0]), expected())
    assert "resume=True" in widget.last_console_call
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left behind

    assert widget.run() is None  # complete: nothing to resume, never overwritten
    assert "it is complete, there is nothing to resume" in errors(notes)[-1]
    assert image.data is not None


def test_semantic_labels_of_a_numpy_layer_when_block_wise_is_ticked(
    make_napari_viewer: Any, qtbot: Any, model: str, client: Any, tmp_path: Path, notes: list[Any]
) -> None:
    viewer = make_napari_viewer()
    viewer.add_image(squares(), name="plain", scale=SCALE, translate=(3.0, -7.0))
    widget = panel(viewer, model, output="semantic")
    assert widget.blocks.block_wise.value is False
    widget.blocks.client = client
    out = tmp_path / "sub" / "semantic.zarr"
    widget.configure(block_wise=True, large_results_to=out)
    run_and_wait(qtbot, widget)
    assert not errors(notes), errors(notes)
    layer = viewer.layers["plain labels"]
    assert layer.multiscale and isinstance(layer.data[0], da.Array)
    np.testing.assert_array_equal(layer.data[0].compute(), expected("semantic"))
    np.testing.assert_allclose(layer.translate, (3.0, -7.0))
    assert zarr.open_group(str(out), mode="r")["0"].dtype == np.uint8
    call = widget.last_console_call
    assert "segment_blocks(viewer.layers['plain'].data, " in call and "mode='semantic'" in call
    assert "translate=[3.0, -7.0]" in call
    again = call.replace(f"out={str(out)!r}", f"out={str(tmp_path / 'console.zarr')!r}, client=client")
    exec(again, {"viewer": viewer, "client": client})  # noqa: S102 - the line the panel shows, on a new path
    console = viewer.layers[-1]
    assert console is not layer and console.multiscale and len(console.data) == len(layer.data)
    np.testing.assert_array_equal(console.data[0].compute(), layer.data[0].compute())
    np.testing.assert_allclose(console.translate, (3.0, -7.0))
