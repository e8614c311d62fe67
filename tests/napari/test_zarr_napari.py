"""OME-Zarr labels in napari: the ``.zarr`` writer (File > Save Selected Layer(s)) on a real viewer,
and a dask-backed result shown as a Labels layer without being loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

from napari_unet._napari.result_layers import show_result  # noqa: E402
from napari_unet._napari.writer import write_labels_zarr  # noqa: E402
from napari_unet.core.image.ngff import ome_attrs  # noqa: E402
from napari_unet.core.image.zarr_copy import write_image  # noqa: E402
from napari_unet.core.image.zarr_write import labels_names, read_zarr_provenance  # noqa: E402

PLUGIN = "napari-unet"


def _labels(shape: tuple[int, ...]) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.int32)
    labels[..., 2:6, 3:9] = 7
    labels[..., 10:14, 1:4] = 300
    return labels


def _add(viewer, labels) -> None:
    viewer.add_labels(
        labels,
        name="cells",
        scale=(2.0, 0.5, 0.5),
        units=("micrometer",) * 3,
        metadata={"axes": "ZYX", "provenance": {"model": "nuclei"}},
    )


def test_save_labels_layer_to_a_new_zarr(make_napari_viewer, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    labels = _labels((4, 17, 19))
    _add(viewer, labels)
    path = tmp_path / "cells.zarr"
    assert viewer.layers.save(str(path), plugin=PLUGIN) == [str(path)]
    group = zarr.open_group(str(path))
    np.testing.assert_array_equal(group["0"][:], labels)
    assert group["0"].dtype == np.uint16  # as for TIFFs: the smallest dtype that holds the labels
    (ms,) = ome_attrs(group)["multiscales"]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"] and ms["axes"][1]["unit"] == "micrometer"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.5, 0.5]
    prov = read_zarr_provenance(path)
    assert prov["layer_name"] == "cells" and prov["model"] == "nuclei" and "napari_unet_version" in prov
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.zarr"]


def test_save_labels_layer_into_an_ome_zarr_image(make_napari_viewer, tmp_path: Path) -> None:
    image = tmp_path / "img.zarr"
    write_image(image, np.zeros((4, 17, 19), np.uint8), axes="ZYX", scale=(2.0, 0.5, 0.5), zarr_format=2)
    viewer = make_napari_viewer()
    labels = _labels((4, 17, 19))
    _add(viewer, labels)
    viewer.layers.save(str(image), plugin=PLUGIN)
    viewer.layers.save(str(image), plugin=PLUGIN)  # again: replaces labels of that name
    assert labels_names(image) == ["cells"]
    group = zarr.open_group(str(image / "labels" / "cells"))
    np.testing.assert_array_equal(group["0"][:], labels)
    assert ome_attrs(group)["image-label"] == {"version": "0.4", "source": {"image": "../../"}}
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")  # a zarr group that is no image: refused
    with pytest.raises(ValueError, match="not an OME-Zarr image to add labels to"):
        write_labels_zarr(str(tmp_path / "plain.zarr"), labels, {"name": "cells"})


class Planes:
    """An array that records which planes are read."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim, self.read = data, data.shape, data.dtype, data.ndim, set()

    def __getitem__(self, key):
        z = key[0] if isinstance(key, tuple) else key
        self.read.update(range(*z.indices(self.shape[0])) if isinstance(z, slice) else [int(z)])
        return self.data[key]


def test_a_dask_backed_result_is_shown_without_loading(make_napari_viewer, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 32, 32), np.float32), name="stack", scale=(2.0, 0.5, 0.5))
    source = Planes(_labels((40, 32, 32)).astype(np.uint32))
    lazy = da.from_array(source, chunks=(1, 32, 32))
    layer = show_result(viewer, lazy, image=image, image_axes="ZYX", out_axes="ZYX", provenance={"model": "m"})
    assert layer.name == "stack labels" and layer.data is lazy
    assert tuple(layer.scale) == (2.0, 0.5, 0.5)
    assert 0 < len(source.read) < 40  # the planes shown, not the whole stack
    (written,) = write_labels_zarr(str(tmp_path / "lazy"), lazy, {"name": "x", "metadata": layer.metadata})
    np.testing.assert_array_equal(zarr.open_group(written)["0"][:], source.data)  # chunk by chunk, uint32 kept
