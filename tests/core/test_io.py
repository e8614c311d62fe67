"""Tests for napari_unet.core.image.io: reading real and synthetic TIFFs, writing labels atomically."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_unet.core.image.files import atomic_write
from napari_unet.core.image.io import ImageFile, ImageReadError, read_image, read_provenance, write_labels

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _data_dir() -> pathlib.Path:
    """The shared data folder: $NAPARI_UNET_DATA, else <repo>/../shared/data."""
    env = os.environ.get("NAPARI_UNET_DATA")
    return pathlib.Path(env) if env else REPO_ROOT.parent / "shared" / "data"


STACKS = _data_dir() / "stacks"
needs_stacks = pytest.mark.skipif(not STACKS.is_dir(), reason=f"real microscopy stacks not found at {STACKS}")

# file name -> shape, axes, dtype (native byte order), Z spacing / T interval from the file's metadata
REAL_FILES = {
    "xyc_8bit__dapi_tublin.tif": ((2, 730, 968), "CYX", np.uint8),
    "xyc_16bit__nuclei_golgi.tif": ((2, 220, 204), "CYX", np.uint16),
    "xyc_16bit__hela-cells.tif": ((512, 672, 3), "YXS", np.uint16),
    "xyzc_16bit__dna_conf_wf.tif": ((45, 2, 130, 133), "ZCYX", np.uint16),
    "xyz_8bit__nuclei_autothresh.tif": ((37, 118, 132), "ZYX", np.uint8),
    "xyz_8bit__chromosomes.tif": ((40, 152, 126), "ZYX", np.uint16),  # uint16 despite the "8bit" name
    "xyt_calibrated_16bit__golgi_bfa_sum_projection.tif": ((30, 137, 147), "TYX", np.float32),
}
# X/Y pixel size = 1 / (XResolution tag); every file is calibrated in microns (two spell it "\u00B5m")
REAL_XY_SIZE = {
    "xyc_8bit__dapi_tublin.tif": 1e6 / 2202643,
    "xyc_16bit__nuclei_golgi.tif": 1e6 / 1938918,
    "xyc_16bit__hela-cells.tif": 1e6 / 19420064,
    "xyzc_16bit__dna_conf_wf.tif": 1e6 / 1953591,
    "xyz_8bit__nuclei_autothresh.tif": 1e6 / 1206792,
    "xyz_8bit__chromosomes.tif": 1e6 / 29538460,
    "xyt_calibrated_16bit__golgi_bfa_sum_projection.tif": 1e6 / 2845474,
}


@needs_stacks
@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_stack_shape_axes_dtype_and_lazy_data(name: str) -> None:
    shape, axes, dtype = REAL_FILES[name]
    image = read_image(STACKS / name)
    assert isinstance(image, ImageFile)
    assert image.path == STACKS / name
    assert image.data.shape == shape
    assert image.axes == axes
    assert image.data.dtype.newbyteorder("=") == np.dtype(dtype)  # ImageJ files are big-endian
    assert isinstance(image.data, np.memmap)
    assert not image.data.flags.writeable
    np.testing.assert_array_equal(image.data, tifffile.imread(STACKS / name))
    assert image.metadata["kind"] == "imagej"
    assert isinstance(image.metadata["imagej"], dict)


@needs_stacks
@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_stack_xy_calibration(name: str) -> None:
    image = read_image(STACKS / name)
    y, x = image.axes.index("Y"), image.axes.index("X")
    assert image.scale[x] == pytest.approx(REAL_XY_SIZE[name])
    assert image.scale[y] == pytest.approx(REAL_XY_SIZE[name])
    assert image.units[x] == image.units[y] == "micron"
    for i, ax in enumerate(image.axes):
        if ax in "CS":
            assert image.scale[i] == 1.0
            assert image.units[i] is None


@needs_stacks
def test_real_z_spacing_and_frame_interval() -> None:
    dna = read_image(STACKS / "xyzc_16bit__dna_conf_wf.tif")
    assert dna.scale[0] == pytest.approx(0.4994126016284111)
    assert dna.units[0] == "micron"
    chromosomes = read_image(STACKS / "xyz_8bit__chromosomes.tif")
    assert chromosomes.scale[0] == pytest.approx(0.15)
    assert chromosomes.units == ("micron",) * 3  # stored as the escaped "\u00B5m"
    nuclei = read_image(STACKS / "xyz_8bit__nuclei_autothresh.tif")
    assert nuclei.scale[0] == pytest.approx(4.0)  # its 'finterval' is ignored: there is no T axis
    golgi = read_image(STACKS / "xyt_calibrated_16bit__golgi_bfa_sum_projection.tif")
    assert golgi.scale[0] == pytest.approx(59.86)  # its 'spacing' is ignored: there is no Z axis
    assert golgi.units[0] == "sec"


@needs_stacks
def test_real_channel_names() -> None:
    # Bio-Formats slice labels ("c:1/2 - Snap-03.czi #1") are positions, not names; the Zeiss
    # channel names live in the ImageJ 'Info' text.
    assert read_image(STACKS / "xyc_8bit__dapi_tublin.tif").channel_names == ["DAPI", "EGFP"]
    assert read_image(STACKS / "xyzc_16bit__dna_conf_wf.tif").channel_names == ["Ch1-T1", "TV1-T3"]
    # Olympus Info lists more channels than the file has; the hela 'Labels' is one slice label
    assert read_image(STACKS / "xyc_16bit__nuclei_golgi.tif").channel_names is None
    assert read_image(STACKS / "xyc_16bit__hela-cells.tif").channel_names is None


def test_imagej_hyperstack_with_labels(tmp_path: pathlib.Path) -> None:
    data = np.arange(2 * 3 * 2 * 9 * 11, dtype=np.uint16).reshape(2, 3, 2, 9, 11)
    labels = [name for _t in range(2) for _z in range(3) for name in ("nuclei", "membrane")]
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(4.0, 2.0),
        metadata={"axes": "TZCYX", "spacing": 0.75, "unit": "micron", "finterval": 12.5, "Labels": labels},
    )
    image = read_image(path)
    assert image.axes == "TZCYX"
    assert image.data.shape == (2, 3, 2, 9, 11)
    assert isinstance(image.data, np.memmap)
    np.testing.assert_array_equal(image.data, data)
    assert image.scale == pytest.approx((12.5, 0.75, 1.0, 0.5, 0.25))
    assert image.units == ("sec", "micron", None, "micron", "micron")
    assert image.channel_names == ["nuclei", "membrane"]


def test_imagej_labels_varying_with_z_are_not_channel_names(tmp_path: pathlib.Path) -> None:
    data = np.zeros((3, 2, 9, 11), np.uint8)
    labels = [f"z{z} c{c}" for z in range(3) for c in range(2)]
    path = tmp_path / "zc.tif"
    tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZCYX", "Labels": labels})
    image = read_image(path)
    assert image.axes == "ZCYX"
    assert image.channel_names is None


def test_ome_tiff(tmp_path: pathlib.Path) -> None:
    data = np.random.default_rng(0).integers(0, 4000, (3, 2, 9, 11), dtype=np.uint16)
    path = tmp_path / "image.ome.tif"
    tifffile.imwrite(
        path,
        data,
        metadata={
            "axes": "ZCYX",
            "PhysicalSizeX": 0.2,
            "PhysicalSizeY": 0.3,
            "PhysicalSizeZ": 1.5,
            "PhysicalSizeZUnit": "nm",
            "Channel": {"Name": ["DAPI", "GFP"]},
        },
    )
    image = read_image(path)
    assert image.axes == "ZCYX"
    np.testing.assert_array_equal(image.data, data)
    assert image.scale == pytest.approx((1.5, 1.0, 0.3, 0.2))
    assert image.units == ("nm", None, "micron", "micron")
    assert image.channel_names == ["DAPI", "GFP"]
    assert "<OME" in image.metadata["ome_xml"]


def test_plain_tiff_without_metadata(tmp_path: pathlib.Path) -> None:
    single = np.arange(9 * 11, dtype=np.uint8).reshape(9, 11)
    stack = np.arange(5 * 9 * 11, dtype=np.float32).reshape(5, 9, 11)
    tifffile.imwrite(tmp_path / "single.tif", single, metadata=None)
    tifffile.imwrite(tmp_path / "stack.tif", stack)  # tifffile's default "shaped" JSON: {"shape": [...]}
    image = read_image(tmp_path / "single.tif")
    assert (image.axes, image.scale, image.units, image.channel_names) == ("YX", (1.0, 1.0), (None, None), None)
    np.testing.assert_array_equal(image.data, single)
    image = read_image(tmp_path / "stack.tif")
    assert image.axes == "QYX"
    assert image.scale == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(image.data, stack)


def test_write_labels_imagej_round_trip(tmp_path: pathlib.Path) -> None:
    labels = np.random.default_rng(1).integers(0, 300, (4, 9, 11), dtype=np.uint16)
    provenance = {"model": "nuclei-2d", "threshold": np.float32(0.5), "tile": np.array([64, 64])}
    path = write_labels(
        tmp_path / "labels.tif",
        labels,
        axes="ZYX",
        scale=(2.0, 0.25, 0.25),
        units=("µm", "µm", "µm"),
        provenance=provenance,
    )
    assert path == tmp_path / "labels.tif"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif"]
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej  # so Fiji opens it as a calibrated hyperstack
        assert tif.imagej_metadata["spacing"] == pytest.approx(2.0)
    image = read_image(path)
    assert image.axes == "ZYX"
    np.testing.assert_array_equal(image.data, labels)
    assert image.scale == pytest.approx((2.0, 0.25, 0.25))
    assert image.units == ("micron",) * 3
    assert read_provenance(path) == {"model": "nuclei-2d", "threshold": 0.5, "tile": [64, 64]}


def test_write_labels_imagej_time_axis_keeps_its_unit(tmp_path: pathlib.Path) -> None:
    labels = np.ones((3, 9, 11), np.uint8)
    path = write_labels(tmp_path / "t.tif", labels, axes="TYX", scale=(5.0, 1.0, 1.0), units=("min", "nm", "nm"))
    image = read_image(path)
    assert image.axes == "TYX"
    assert image.scale == pytest.approx((5.0, 1.0, 1.0))
    assert image.units == ("min", "nm", "nm")
    assert read_provenance(path) is None


@pytest.mark.parametrize(
    ("axes", "shape", "dtype"),
    [("TYX", (3, 9, 11), np.uint32), ("QYX", (2, 9, 11), np.uint16), ("TYX", (1, 9, 11), np.int64)],
)
def test_write_labels_shaped_round_trip(tmp_path: pathlib.Path, axes: str, shape: tuple, dtype: type) -> None:
    labels = np.random.default_rng(2).integers(0, 70000, shape).astype(dtype)
    scale, units = (7.5, 0.5, 0.4), ("sec", "micron", "micron")
    path = write_labels(
        tmp_path / "labels.tif",
        labels,
        axes=axes,
        scale=scale,
        units=units,
        provenance={"source": "cells.tif", "axes": axes},
    )
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_imagej
        assert json.loads(tif.pages[0].description)["axes"] == axes
    image = read_image(path)
    assert image.axes == axes
    assert image.data.shape == shape  # length-1 axes survive
    assert image.data.dtype == dtype
    np.testing.assert_array_equal(image.data, labels)
    assert image.scale == pytest.approx(scale)
    assert image.units == units
    assert read_provenance(path) == {"source": "cells.tif", "axes": axes}


def test_write_labels_rejects_wrong_axes(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match=r"'ZYX'.*3 letters.*2 dimensions"):
        write_labels(tmp_path / "bad.tif", np.zeros((9, 11), np.uint16), axes="ZYX")
    with pytest.raises(ValueError, match=r"scale"):
        write_labels(tmp_path / "bad.tif", np.zeros((9, 11), np.uint16), axes="YX", scale=(1.0,))
    assert list(tmp_path.iterdir()) == []


def test_not_a_tiff_raises_image_read_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notes_about_cells.tif"
    path.write_text("this is not an image")
    with pytest.raises(ImageReadError, match="notes_about_cells.tif"):
        read_image(path)


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_tiff_raises_image_read_error(tmp_path: pathlib.Path, keep: float) -> None:
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, np.ones((6, 40, 50), np.uint16), imagej=True, metadata={"axes": "ZYX"})
    raw = full.read_bytes()
    path = tmp_path / "truncated_stack.tif"
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ImageReadError, match="truncated_stack.tif"):
        read_image(path)


def test_truncated_plain_tiff_raises_image_read_error(tmp_path: pathlib.Path) -> None:
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, np.ones((40, 50), np.uint16), metadata=None)
    path = tmp_path / "cut.tif"
    path.write_bytes(full.read_bytes()[:2000])
    with pytest.raises(ImageReadError, match="cut.tif"):
        read_image(path)


def test_missing_file_raises_file_not_found(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError, match="no_such_image.tif"):
        read_image(tmp_path / "no_such_image.tif")


def test_atomic_write_success_replaces_target(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_write(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp != target
        tmp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_failure_leaves_nothing(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "out.tif"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_failure_keeps_existing_file(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "out.tif"
    target.write_bytes(b"precious")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_io_does_not_import_torch_or_gui() -> None:
    code = (
        "import sys, napari_unet.core.image.io\n"
        "bad = [m for m in ('torch', 'napari', 'qtpy', 'magicgui') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
