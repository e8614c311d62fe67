"""Segmenting a zarr-backed image never loads it whole: every chunk read from the store is counted
(zarr's LocalStore), and every result dask computes is measured (a dask callback)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from known_nets import threshold_net
from ome_zarr_files import halves, write_ome_zarr

from napari_unet import api
from napari_unet.core.image.io import read_image

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")
callbacks = pytest.importorskip("dask.callbacks")

SHAPE = (20, 512, 512)  # ZYX, 5.2 M voxels: more than the 4 M values percentiles sample
CHUNKS = (1, 128, 128)
METADATA = (".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json")


def stack() -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 100, SHAPE).astype(np.uint8)
    data[:, 100:140, 200:260] += 150
    data[5:15, 300:340, 40:90] += 150
    return data


@pytest.fixture
def chunk_reads(monkeypatch):
    """Counter of chunk keys read from any LocalStore, and the largest result dask computes (bytes)."""
    from zarr.storage import LocalStore

    reads: Counter = Counter()
    real_get = LocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        if not key.endswith(METADATA):
            reads[key] += 1
        return await real_get(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", counting_get)
    largest = {"bytes": 0}

    def posttask(key, result, dsk, state, worker_id):
        largest["bytes"] = max(largest["bytes"], int(getattr(result, "nbytes", 0)))

    with callbacks.Callback(posttask=posttask):
        yield reads, largest


def test_segmenting_an_ome_zarr_reads_each_chunk_a_few_times_and_never_the_whole_image(tmp_path, chunk_reads):
    data = stack()
    path = write_ome_zarr(tmp_path / "big.zarr", halves(data, "ZYX", 2), "ZYX", version="0.5", chunks=CHUNKS)
    reads, largest = chunk_reads
    image = read_image(path)
    assert not reads  # opening reads metadata only
    options = {"device": "cpu", "tile_size": 256, "halo": 8, "z_mode": "planes"}
    labels = api.segment(image, threshold_net(), **options)

    level0 = [k for k in reads if k.startswith("0/")]
    n_chunks = np.prod([s // c for s, c in zip(SHAPE, CHUNKS)])
    assert len(level0) == n_chunks  # every chunk of level 0 read ...
    assert max(reads[k] for k in level0) <= 6  # ... a bounded number of times (percentiles, overlapping tiles)
    assert not [k for k in reads if k.startswith("1/")]  # the other level is never touched
    assert 0 < largest["bytes"] <= data.nbytes // 8  # no computation ever held the whole image
    np.testing.assert_array_equal(labels, api.segment(data, threshold_net(), axes="ZYX", **options))
    assert labels.max() > 0


def test_a_multiscale_layer_is_segmented_from_level_0_lazily(tmp_path, chunk_reads):
    data = stack()[:4]
    path = write_ome_zarr(tmp_path / "ms.zarr", halves(data, "ZYX", 3), "ZYX", version="0.4", chunks=CHUNKS)
    group = zarr.open_group(str(path), mode="r")

    class Layer:  # what napari-ome-zarr gives: a multiscale list of dask arrays, axis labels
        name = "ms"
        multiscale = True
        rgb = False
        metadata: dict = {}
        axis_labels = ("z", "y", "x")
        scale = (1.0, 1.0, 1.0)
        data = [da.from_zarr(group[str(i)]) for i in range(3)]

    reads, largest = chunk_reads
    labels = api.segment(Layer(), threshold_net(), device="cpu", tile_size=256, halo=8, z_mode="planes")
    assert labels.shape == data.shape
    assert {k.split("/")[0] for k in reads} == {"0"}  # level 0 only
    assert max(reads.values()) <= 6
    np.testing.assert_array_equal(
        labels, api.segment(data, threshold_net(), axes="ZYX", device="cpu", halo=8, tile_size=256, z_mode="planes")
    )
