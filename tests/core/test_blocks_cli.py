"""``napari_unet.segment_blocks`` and ``napari-unet segment --scheduler/--workers/--resume``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")
pytest.importorskip("distributed")

from known_nets import threshold_net  # noqa: E402

import napari_unet  # noqa: E402
from napari_unet.cli import main  # noqa: E402
from napari_unet.core.model.file import save_model  # noqa: E402
from napari_unet.core.progress import drain  # noqa: E402
from napari_unet.core.segment import iter_segment  # noqa: E402

SRC = str(Path(__file__).resolve().parents[2] / "src")


def squares(shape: tuple[int, int] = (96, 128)) -> np.ndarray:
    """Bright squares of 10 px, several cut by the 32 px block borders."""
    img = np.full(shape, 10, np.uint16)
    for y in range(4, shape[0] - 12, 23):
        for x in range(6, shape[1] - 12, 19):
            img[y : y + 10, x : x + 10] = 1000
    return img


def as_zarr(image: np.ndarray, path: Path) -> Path:
    array = zarr.create_array(str(path), shape=image.shape, chunks=(40, 40), dtype=image.dtype)
    array[:] = image
    return path


def test_segment_blocks_in_the_public_api(dask_client, tmp_path: Path) -> None:
    image, net = squares(), threshold_net()
    expected = drain(iter_segment(image, net, axes="YX", device="cpu"))
    events = []
    result = napari_unet.segment_blocks(
        str(as_zarr(image, tmp_path / "in.zarr")), net, out=tmp_path / "out.zarr", axes="YX", block=32,
        client=dask_client, halo=0, max_object=16, progress=events.append,
    )  # fmt: skip
    assert result.n_objects == expected.max() == 24
    np.testing.assert_array_equal(result.out[:] > 0, expected > 0)
    assert len(np.unique(result.out[:])) == 25
    assert any(e.stage == "blocks" for e in events)


def test_cli_segments_a_zarr_input_block_wise_and_resumes(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([SRC, *filter(None, [os.environ.get("PYTHONPATH")])]))
    model = save_model(threshold_net(), tmp_path / "t.safetensors")
    source = as_zarr(squares(), tmp_path / "image.zarr")
    argv = ["segment", str(source), "--model", str(model), "--output", str(tmp_path / "out"), "--axes", "YX",
            "--scheduler", "local", "--workers", "1", "--block", "32", "--halo", "0", "--max-object", "16",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    line = capsys.readouterr().out
    assert "image_labels.zarr (12 blocks, 12 run, 0 resumed, 24 objects" in line
    labels = zarr.open_array(str(tmp_path / "out" / "image_labels.zarr"), mode="r")[:]
    assert labels.shape == (96, 128) and labels.max() == 24
    assert main([*argv, "--resume"]) == 0
    assert "(12 blocks, 0 run, 12 resumed, 24 objects" in capsys.readouterr().out
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out" / "image_labels.zarr"), mode="r")[:], labels)


def test_cli_refuses_a_bad_scheduler(tmp_path: Path, capsys) -> None:
    model = save_model(threshold_net(), tmp_path / "t.safetensors")
    source = as_zarr(squares(), tmp_path / "image.zarr")
    argv = ["segment", str(source), "--model", str(model), "--output", str(tmp_path), "--scheduler", "udp:/x"]
    assert main(argv) == 1
    assert "scheduler must be 'local' or an address like 'tcp://host:8786', got 'udp:/x'" in capsys.readouterr().err
