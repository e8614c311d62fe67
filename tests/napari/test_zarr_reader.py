"""The zarr / OME-Zarr reader on a real (headless) viewer: lazy multiscale layers with axes, channel
names and scale, segmented from level 0 through the console API."""

from __future__ import annotations

import builtins
import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

from napari_unet import segment  # noqa: E402
from napari_unet._napari.zarr_reader import napari_get_zarr_reader, read_zarr_layers  # noqa: E402

PLUGIN = "napari-unet"
HERE = Path(__file__).parent


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE.parent / "core" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


files = _module("ome_zarr_files")


def czyx() -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 100, (2, 3, 64, 80)).astype(np.uint16)
    data[0, :, 5:15, 6:16] += 900
    data[1, :, 20:30, 25:37] += 900
    return data


@pytest.fixture
def ome_zarr(tmp_path: Path) -> Path:
    return files.write_ome_zarr(
        tmp_path / "cells.ome.zarr",
        files.halves(czyx(), "CZYX", 3),
        "CZYX",
        version="0.5",
        scale=(1.0, 2.0, 0.5, 0.5),
        units={a: "micrometer" for a in "zyx"},
        channel_names=["DNA", "membrane"],
        chunks=(1, 1, 32, 32),
    )


def test_open_ome_zarr_as_lazy_multiscale_layers(make_napari_viewer, ome_zarr: Path) -> None:
    viewer = make_napari_viewer()
    layers = viewer.open(str(ome_zarr), plugin=PLUGIN)
    assert [layer.name for layer in layers] == ["DNA", "membrane"]
    for i, layer in enumerate(layers):
        assert layer.multiscale and len(layer.data) == 3
        assert [tuple(level.shape) for level in layer.data] == [(3, 64, 80), (3, 32, 40), (3, 16, 20)]
        assert all(isinstance(level, da.Array) for level in layer.data)  # nothing loaded
        np.testing.assert_allclose(layer.scale, (2.0, 0.5, 0.5))
        assert tuple(layer.axis_labels) == ("z", "y", "x")
        assert tuple(str(u) for u in layer.units) == ("micrometer",) * 3
        meta = layer.metadata
        assert meta["axes"] == "ZYX" and meta["source_axes"] == "CZYX"
        assert meta["channel_names"] == [["DNA", "membrane"][i]] and meta["channel_index"] == i
        assert meta["kind"] == "ome-zarr" and meta["level"] == 0 and len(meta["levels"]) == 3
        low, high = layer.contrast_limits
        assert high > low


def test_a_layer_from_the_reader_is_segmented_from_level_0(make_napari_viewer, ome_zarr: Path, tmp_path) -> None:
    known = _module("known_nets")
    viewer = make_napari_viewer()
    dna = viewer.open(str(ome_zarr), plugin=PLUGIN)[0]
    labels = segment(dna, known.threshold_net(1), device="cpu", z_mode="planes")
    assert labels.shape == (3, 64, 80)  # level 0, axes ZYX from the layer's metadata
    expected = segment(czyx()[0], known.threshold_net(1), axes="ZYX", device="cpu", z_mode="planes")
    np.testing.assert_array_equal(labels, expected)


def test_plain_zarr_array_opens_as_one_level(tmp_path: Path) -> None:
    arr = zarr.create_array(str(tmp_path / "plain.zarr"), shape=(48, 40), chunks=(16, 16), dtype="uint8")
    arr[...] = 9
    reader = napari_get_zarr_reader(str(tmp_path / "plain.zarr"))
    assert reader is read_zarr_layers
    [(data, kwargs, kind)] = reader([str(tmp_path / "plain.zarr")])
    assert kind == "image" and isinstance(data, da.Array) and "multiscale" not in kwargs
    assert kwargs["metadata"]["axes"] == "YX" and kwargs["metadata"]["kind"] == "zarr"


def test_get_zarr_reader_refuses_what_it_cannot_read(tmp_path: Path, ome_zarr: Path, monkeypatch, caplog) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "empty.zarr").mkdir()
    (tmp_path / "a.tif").write_bytes(b"II*\x00")
    for path in (tmp_path / "folder", tmp_path / "a.tif", tmp_path / "missing.zarr", 42, [ome_zarr, ome_zarr]):
        assert napari_get_zarr_reader(path) is None
    with caplog.at_level(logging.WARNING):
        assert napari_get_zarr_reader(str(tmp_path / "empty.zarr")) is None
    assert "no zarr array or group there" in caplog.text

    real_import = builtins.__import__

    def no_zarr(name, *args, **kwargs):
        if name == "zarr":
            raise ModuleNotFoundError("No module named 'zarr'", name="zarr")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zarr)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert napari_get_zarr_reader(str(ome_zarr)) is None  # never raises
    assert 'pip install "napari-unet[zarr]"' in caplog.text
