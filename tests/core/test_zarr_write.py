"""OME-Zarr labels written block by block (core/image/zarr_write.py, ngff.py, zarr_copy.py):
layout, pyramid, NGFF metadata (0.4 on zarr v2, 0.5 on zarr v3), provenance, the ``labels`` list,
nothing left behind on failure, and ome-zarr-py's reader finding the labels."""

from __future__ import annotations

import json
import pickle
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core.image import ngff
from napari_unet.core.image.io import read_provenance
from napari_unet.core.image.zarr_copy import write_image, write_labels_array
from napari_unet.core.image.zarr_write import LabelsWriter, create_labels, labels_names, read_zarr_provenance

zarr = pytest.importorskip("zarr")  # the zarr extra (Python >= 3.11)

SHAPE = (3, 70, 90)  # ZYX


def labels3d() -> np.ndarray:
    return (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 251).astype(np.uint16)


def image_zarr(tmp_path: Path, fmt: int) -> Path:
    """An OME-Zarr image CZYX (2 channels), Z 2 micron, XY 0.5 micron."""
    data = np.random.default_rng(0).random((SHAPE[0], 2, *SHAPE[1:]), dtype=np.float32)  # ZCYX
    path = tmp_path / f"img{fmt}.zarr"
    write_image(path, data, axes="ZCYX", scale=[2, 1, 0.5, 0.5], units=["µm", None, "µm", "µm"], zarr_format=fmt)
    return path


def attrs(path: Path) -> dict:
    """NGFF attributes of a group (top level on v2, under "ome" on v3)."""
    return ngff.ome_attrs(zarr.open_group(str(path)))


def reader_nodes(path: Path) -> list:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    return [
        (str(n.zarr.path).rstrip("/"), bool(n.load(Label)), bool(n.load(Multiscales)), [d.shape for d in n.data])
        for n in Reader(parse_url(str(path)))()
    ]


def blocks(writer: LabelsWriter, data: np.ndarray, reverse: bool = False) -> None:
    regions = list(ngff.chunk_regions(writer.shape, writer.chunks))
    for region in reversed(regions) if reverse else regions:
        writer.write(region, data[region])


@pytest.mark.parametrize(("fmt", "version"), [(2, "0.4"), (3, "0.5")])
def test_labels_into_an_image_pyramid_metadata_and_reader(tmp_path: Path, fmt: int, version: str) -> None:
    root = image_zarr(tmp_path, fmt)
    data = labels3d()
    prov = {"command": "test", "model": "nuclei", "values": np.arange(2)}
    writer = create_labels(
        root,
        "cells",
        shape=SHAPE,
        axes="ZYX",
        dtype="uint16",
        chunks=(1, 32, 32),
        scale=(2.0, 0.5, 0.5),
        units=("micron", "µm", "um"),
        provenance=prov,
        colors={1: (255, 0, 0, 255)},
    )
    assert not (root / "labels" / "cells").exists() and labels_names(root) == []  # not there until finished
    blocks(writer, data, reverse=True)
    out = writer.finish(levels=3)
    assert out == root / "labels" / "cells" and labels_names(root) == ["cells"]
    group = zarr.open_group(str(out))
    assert group.metadata.zarr_format == fmt
    for k in range(3):
        level = group[str(k)]
        assert level.dtype == np.uint16 and level.chunks == tuple(min(c, n) for c, n in zip((1, 32, 32), level.shape))
        np.testing.assert_array_equal(level[:], data[:, :: 2**k, :: 2**k])
    meta = attrs(out)
    (ms,) = meta["multiscales"]
    assert ms["axes"] == [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    assert [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]] == [
        [2.0, 0.5, 0.5],
        [2.0, 1.0, 1.0],
        [2.0, 2.0, 2.0],
    ]
    assert meta["image-label"]["source"] == {"image": "../../"}
    assert meta["image-label"]["colors"] == [{"label-value": 1, "rgba": [255, 0, 0, 255]}]
    if fmt == 2:
        assert ms["version"] == version and meta["image-label"]["version"] == version
        assert json.loads((out / "0" / ".zarray").read_text())["dimension_separator"] == "/"
    else:
        assert group.attrs["ome"]["version"] == version and "version" not in ms
        assert group["0"].metadata.dimension_names == ("z", "y", "x")
    assert read_zarr_provenance(out) == {"command": "test", "model": "nuclei", "values": [0, 1]}
    assert read_provenance(out) == read_zarr_provenance(out)  # the one reader of provenance, TIFF or zarr
    assert group.attrs["napari_unet"]["axes"] == "ZYX"
    nodes = {p.rsplit("/", 1)[-1]: rest for p, *rest in reader_nodes(root)}
    assert nodes["cells"][:2] == [True, True]  # a labels node with its multiscales
    assert nodes["cells"][2] == [(3, 70, 90), (3, 35, 45), (3, 18, 23)]
    assert not list((root / "labels").glob("*.partial"))  # no partial group left


@pytest.mark.parametrize("fmt", [2, 3])
def test_labels_in_a_new_ome_zarr_are_the_root_label_image(tmp_path: Path, fmt: int) -> None:
    data = labels3d()[0]
    out = write_labels_array(tmp_path / "new.zarr", "seg", data, axes="YX", levels=2, zarr_format=fmt)
    assert out == tmp_path / "new.zarr" and sorted(p.name for p in tmp_path.iterdir()) == ["new.zarr"]
    meta = attrs(out)
    assert "source" not in meta["image-label"] and meta["multiscales"][0]["name"] == "seg"
    np.testing.assert_array_equal(zarr.open_group(str(out))["1"][:], data[::2, ::2])
    ((_, is_label, is_multiscales, shapes),) = reader_nodes(out)
    assert is_label and is_multiscales and shapes == [(70, 90), (35, 45)]


def test_default_levels_and_chunks(tmp_path: Path) -> None:
    writer = create_labels(tmp_path / "big.zarr", "big", shape=(2, 1100, 600), axes="TYX", dtype=np.uint32)
    assert writer.chunks == (1, 1024, 600)
    out = writer.finish()  # nothing written: all zeros, levels until max(Y, X) <= 256
    assert [zarr.open_group(str(out))[str(k)].shape for k in range(4)] == [
        (2, 1100, 600),
        (2, 550, 300),
        (2, 275, 150),
        (2, 138, 75),
    ]
    assert "4" not in zarr.open_group(str(out))
    assert attrs(out)["multiscales"][0]["axes"][0] == {"name": "t", "type": "time"}


def test_second_labels_are_appended_and_a_clash_is_refused_unless_overwrite(tmp_path: Path) -> None:
    root = image_zarr(tmp_path, 3)
    data = labels3d()
    write_labels_array(root, "a", data, axes="ZYX")
    write_labels_array(root, "b", data + 1, axes="ZYX")
    assert labels_names(root) == ["a", "b"]
    with pytest.raises(FileExistsError, match="labels 'a' already exist"):
        write_labels_array(root, "a", data, axes="ZYX")
    write_labels_array(root, "a", data * 0 + 7, axes="ZYX", overwrite=True)
    assert labels_names(root) == ["a", "b"]
    assert (zarr.open_group(str(root / "labels" / "a"))["0"][:] == 7).all()
    assert not [p.name for p in (root / "labels").iterdir() if p.name.startswith(".")]


class Flaky:
    """An array whose third block cannot be read."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, 0

    def __getitem__(self, region: tuple) -> np.ndarray:
        self.reads += 1
        if self.reads == 3:
            raise OSError("read failed")
        return self.data[region]


def test_a_failure_leaves_nothing_and_the_labels_list_unchanged(tmp_path: Path) -> None:
    root = image_zarr(tmp_path, 3)
    with pytest.raises(RuntimeError, match="engine died"):
        with create_labels(root, "x", shape=SHAPE, axes="ZYX", dtype="uint8") as writer:
            writer.write((slice(0, 1), slice(None), slice(None)), np.ones(SHAPE[1:], np.uint8)[None])
            raise RuntimeError("engine died")
    assert not (root / "labels").exists()  # the labels group it made is gone too
    write_labels_array(root, "kept", labels3d(), axes="ZYX")
    before = sorted(p.name for p in (root / "labels").iterdir())
    with pytest.raises(OSError, match="read failed"):  # fails half way through the blocks
        write_labels_array(root, "y", Flaky(labels3d()), axes="ZYX", chunks=(1, 32, 32))
    assert sorted(p.name for p in (root / "labels").iterdir()) == before and labels_names(root) == ["kept"]


def test_a_failure_in_finish_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = create_labels(tmp_path / "n.zarr", "n", shape=(64, 64), axes="YX", dtype="uint8")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ngff, "downsample_level", broken)
    with pytest.raises(OSError, match="disk full"):
        writer.finish(levels=2)
    assert list(tmp_path.iterdir()) == []


def test_regions_must_be_chunk_aligned_and_blocks_fit(tmp_path: Path) -> None:
    writer = create_labels(tmp_path / "a.zarr", "a", shape=(70, 90), axes="YX", dtype="uint8", chunks=(32, 32))
    with pytest.raises(ValueError, match=r"not aligned to the chunks \(32, 32\)"):
        writer.write((slice(0, 16), slice(0, 32)), np.zeros((16, 32)))
    with pytest.raises(ValueError, match=r"does not fill region"):
        writer.write((slice(64, 70), slice(64, 90)), np.zeros((6, 32)))
    with pytest.raises(ValueError, match="one slice per axis"):
        writer.write((slice(0, 32),), np.zeros(32))
    writer.write((slice(64, 70), slice(64, 90)), np.full((6, 26), 3, np.int64))  # the edge; values fit
    assert writer.array[65, 70] == 3
    writer.abort()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "float32"}, "integer dtype"),
        ({"axes": "YXZ", "shape": (4, 4, 2)}, "transpose the labels to 'ZYX'"),
        ({"axes": "CQYX", "shape": (1, 1, 4, 4)}, "one channel or other axis"),
        ({"scale": (0, 1)}, "positive"),
        ({"units": ("micron",)}, "units"),
        ({"colors": {1: (1, 2, 3)}}, "RGBA"),
    ],
)
def test_bad_options_name_the_value(tmp_path: Path, kwargs: dict, match: str) -> None:
    options = {"shape": (4, 4), "axes": "YX", "dtype": "uint8", **kwargs}
    with pytest.raises(ValueError, match=match):
        create_labels(tmp_path / "a.zarr", "a", **options)
    assert not list(tmp_path.iterdir())


def test_root_must_be_an_ome_zarr_image(tmp_path: Path) -> None:
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    with pytest.raises(ValueError, match="not an OME-Zarr image"):
        create_labels(tmp_path / "plain.zarr", "a", shape=(4, 4), axes="YX", dtype="uint8")
    with pytest.raises(ValueError, match="labels name '.x'"):
        create_labels(tmp_path / "new.zarr", ".x", shape=(4, 4), axes="YX", dtype="uint8")


def test_without_zarr_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(ImportError, match=r'pip install "napari-unet\[zarr\]"'):
        create_labels(tmp_path / "a.zarr", "a", shape=(4, 4), axes="YX", dtype="uint8")


def test_an_interrupted_write_is_refused_or_resumed(tmp_path: Path) -> None:
    options = {"shape": (64, 64), "axes": "YX", "dtype": "uint16", "chunks": (32, 32)}
    first = create_labels(tmp_path / "r.zarr", "r", **options)
    first.write((slice(0, 32), slice(0, 32)), np.full((32, 32), 5))  # then the run "dies"
    with pytest.raises(FileExistsError, match="unfinished write"):
        create_labels(tmp_path / "r.zarr", "r", **options)
    with pytest.raises(ValueError, match="another shape"):
        create_labels(tmp_path / "r.zarr", "r", **{**options, "shape": (64, 65)}, resume=True)
    again = create_labels(tmp_path / "r.zarr", "r", **options, resume=True)
    again.write((slice(32, 64), slice(32, 64)), np.full((32, 32), 6))
    out = again.finish(levels=1)
    level0 = zarr.open_group(str(out))["0"][:]
    assert level0[0, 0] == 5 and level0[63, 63] == 6 and level0[0, 63] == 0


def _write_in_worker(writer: LabelsWriter, region: tuple[slice, ...], value: int) -> None:
    writer.write(region, np.full(tuple(s.stop - s.start for s in region), value))


def test_blocks_written_from_other_processes(tmp_path: Path) -> None:
    writer = create_labels(tmp_path / "p.zarr", "p", shape=(2, 64), axes="YX", dtype="uint8", chunks=(1, 64))
    assert pickle.loads(pickle.dumps(writer)).path == writer.path  # pickles as LabelsWriter.open(path)
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_write_in_worker, writer, (slice(y, y + 1), slice(0, 64)), y + 1) for y in range(2)]
        for future in futures:
            future.result()
    out = writer.finish(levels=1)
    np.testing.assert_array_equal(zarr.open_group(str(out))["0"][:, 0], [1, 2])


def test_write_image_reorders_axes_and_keeps_values(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 4000, (3, 2, 40, 50)).astype(np.uint16)  # ZCYX
    out = write_image(tmp_path / "i.zarr", data, axes="ZCYX", scale=[2, 1, 0.5, 0.5], levels=2, chunks=(1, 1, 16, 16))
    group = zarr.open_group(str(out))
    np.testing.assert_array_equal(group["0"][:], data.transpose(1, 0, 2, 3))
    np.testing.assert_array_equal(group["1"][:], data.transpose(1, 0, 2, 3)[..., ::2, ::2])
    (ms,) = attrs(out)["multiscales"]
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"] and ms["name"] == "i"
    assert ms["datasets"][1]["coordinateTransformations"][0]["scale"] == [1.0, 2.0, 1.0, 1.0]
    with pytest.raises(FileExistsError):
        write_image(out, data, axes="ZCYX")
