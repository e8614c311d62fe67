"""napari reader, writer and sample data on a real (headless) viewer."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet._napari.display import robust_contrast_limits
from napari_unet._napari.reader import file_stem, image_file_to_layer_data, napari_get_reader, read_tiff
from napari_unet._napari.writer import default_axes, write_labels_layer
from napari_unet.core.image.io import ImageFile, read_image, read_provenance

PLUGIN = "napari-unet"

# file -> layer names (None: "<stem> ch<i>" / "<stem>"), per-layer shape, layer axes, scale, units
REAL_STACKS = {
    "xyc_8bit__dapi_tublin.tif": (["DAPI", "EGFP"], (730, 968), "YX", (0.4540, 0.4540), ("micrometer",) * 2),
    "xyc_16bit__nuclei_golgi.tif": (2, (220, 204), "YX", (0.5158, 0.5158), ("micrometer",) * 2),
    "xyc_16bit__hela-cells.tif": (3, (512, 672), "YX", (0.05149, 0.05149), ("micrometer",) * 2),
    "xyzc_16bit__dna_conf_wf.tif": (
        ["Ch1-T1", "TV1-T3"],
        (45, 130, 133),
        "ZYX",
        (0.4994, 0.5119, 0.5119),
        ("micrometer",) * 3,
    ),
    "xyz_8bit__nuclei_autothresh.tif": (1, (37, 118, 132), "ZYX", (4.0, 0.8286, 0.8286), ("micrometer",) * 3),
    "xyz_8bit__chromosomes.tif": (1, (40, 152, 126), "ZYX", (0.15, 0.03385, 0.03385), ("micrometer",) * 3),
    "xyt_calibrated_16bit__golgi_bfa_sum_projection.tif": (
        1,
        (30, 137, 147),
        "TYX",
        (59.86, 0.3514, 0.3514),
        ("second", "micrometer", "micrometer"),
    ),
}


def _expected_names(stem: str, spec: list[str] | int) -> list[str]:
    if isinstance(spec, list):
        return spec
    return [stem] if spec == 1 else [f"{stem} ch{i}" for i in range(spec)]


def _is_lazy(data: object) -> bool:
    return isinstance(data, np.memmap)


# ---------------------------------------------------------------------------------------------
# napari_get_reader: None for everything it cannot read, never raises
# ---------------------------------------------------------------------------------------------


def _png(tmp_path: Path) -> str:
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return str(path)


def _missing(tmp_path: Path) -> str:
    return str(tmp_path / "missing.tif")


def _corrupt(tmp_path: Path) -> str:
    path = tmp_path / "corrupt.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 60)  # TIFF magic, then garbage where the IFD should be
    return str(path)


def _not_a_tiff(tmp_path: Path) -> str:
    path = tmp_path / "notes.tif"
    path.write_text("this is text, not an image", encoding="utf-8")
    return str(path)


def _truncated(tmp_path: Path) -> str:
    path = tmp_path / "truncated.tif"
    tifffile.imwrite(path, np.arange(64 * 80, dtype=np.uint16).reshape(64, 80))
    path.write_bytes(path.read_bytes()[:4000])  # header intact, pixels cut short
    return str(path)


def _directory(tmp_path: Path) -> str:
    path = tmp_path / "folder.tif"
    path.mkdir()
    return str(path)


def _two_paths(tmp_path: Path) -> list[str]:
    paths = [tmp_path / "a.tif", tmp_path / "b.tif"]
    for p in paths:
        tifffile.imwrite(p, np.zeros((8, 8), np.uint8))
    return [str(p) for p in paths]


@pytest.mark.parametrize(
    "make",
    [_png, _missing, _corrupt, _not_a_tiff, _truncated, _directory, _two_paths],
    ids=lambda f: f.__name__.strip("_"),
)
def test_get_reader_returns_none_for_what_it_cannot_read(tmp_path: Path, make, caplog) -> None:
    path = make(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="napari_unet._napari.reader"):
        assert napari_get_reader(path) is None
    assert caplog.records, "the reason for refusing should be logged"


def test_get_reader_logs_why_a_corrupt_tiff_is_refused(tmp_path: Path, caplog) -> None:
    path = _truncated(tmp_path)
    with caplog.at_level(logging.WARNING, logger="napari_unet._napari.reader"):
        assert napari_get_reader(path) is None
    assert "truncated" in caplog.text and "truncated.tif" in caplog.text


def test_get_reader_accepts_one_path_or_a_list_of_one(tmp_path: Path) -> None:
    path = tmp_path / "IMAGE.TIFF"
    tifffile.imwrite(path, np.ones((5, 6), np.uint16))
    assert napari_get_reader(str(path)) is read_tiff
    assert napari_get_reader(path) is read_tiff
    assert napari_get_reader([str(path)]) is read_tiff
    ((data, kwargs, layer_type),) = read_tiff([str(path)])
    assert layer_type == "image" and data.shape == (5, 6) and kwargs["name"] == "IMAGE"


def test_file_stem_strips_tiff_extensions() -> None:
    assert file_stem("/a/b/cells.ome.tif") == "cells"
    assert file_stem("cells.TIFF") == "cells"
    assert file_stem("x.y.tif") == "x.y"


def test_contrast_limits_are_robust_percentiles_of_a_subsample() -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(100, 200, size=(3000, 2000), dtype=np.uint16)
    data[5, 7] = 65535  # a hot pixel must not set the upper limit
    low, high = robust_contrast_limits(data)
    assert 100 <= low < 102 and 197 < high <= 200
    assert robust_contrast_limits(np.full((4, 4), 7, np.uint8)) == (7.0, 8.0)
    assert robust_contrast_limits(np.array([[np.nan, 1.0], [2.0, np.inf]])) == pytest.approx((1.001, 1.999))


# ---------------------------------------------------------------------------------------------
# The real stacks, opened through napari
# ---------------------------------------------------------------------------------------------


def test_every_real_stack_is_covered(data_dir: Path) -> None:
    assert sorted(p.name for p in (data_dir / "stacks").glob("*.tif")) == sorted(REAL_STACKS)


@pytest.mark.parametrize("name", sorted(REAL_STACKS))
def test_open_real_stack(make_napari_viewer, data_dir: Path, name: str) -> None:
    path = data_dir / "stacks" / name
    names_spec, shape, axes, scale, units = REAL_STACKS[name]
    names = _expected_names(file_stem(path), names_spec)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert [layer.name for layer in layers] == names
    assert len(viewer.layers) == len(names)
    source_axes = read_image(path).axes
    for i, layer in enumerate(layers):
        assert layer.__class__.__name__ == "Image" and not layer.rgb
        assert layer.data.shape == shape
        assert _is_lazy(layer.data), f"{name}: layer data was loaded ({type(layer.data).__name__})"
        np.testing.assert_allclose(layer.scale, scale, rtol=1e-3)
        assert tuple(layer.axis_labels) == tuple(axes.lower())
        assert tuple(str(u) for u in layer.units) == units
        meta = layer.metadata
        assert meta["axes"] == axes
        assert meta["source_axes"] == source_axes
        assert meta["path"] == str(path)
        assert len(meta["scale"]) == len(axes) == len(meta["units"])
        if len(names) > 1:
            assert meta["channel_names"] == [names[i]] and meta["channel_index"] == i
            assert layer.blending == "additive"
        low, high = layer.contrast_limits
        assert high > low


def test_dna_conf_wf_calibration_and_channels(make_napari_viewer, data_dir: Path) -> None:
    viewer = make_napari_viewer()
    layers = viewer.open(str(data_dir / "stacks" / "xyzc_16bit__dna_conf_wf.tif"), plugin=PLUGIN)
    for layer in layers:
        assert layer.scale[0] == pytest.approx(0.4994, abs=1e-4)
        assert layer.scale[1] == pytest.approx(0.5119, abs=1e-4) == layer.scale[2]
    assert [layer.colormap.name for layer in layers] == ["magenta", "green"]
    assert tuple(viewer.dims.axis_labels) == ("z", "y", "x")
    # each channel is a view of the one memory map: channel 1 of plane 10 is the file's [10, 1]
    np.testing.assert_array_equal(np.asarray(layers[1].data[10]), read_image(layers[1].metadata["path"]).data[10, 1])


def test_dapi_tubulin_names_and_contrast(make_napari_viewer, data_dir: Path) -> None:
    viewer = make_napari_viewer()
    dapi, egfp = viewer.open(str(data_dir / "stacks" / "xyc_8bit__dapi_tublin.tif"), plugin=PLUGIN)
    assert (dapi.name, egfp.name) == ("DAPI", "EGFP")
    assert dapi.metadata["source_channel_names"] == ["DAPI", "EGFP"]
    data = np.asarray(dapi.data)
    assert dapi.contrast_limits[1] <= data.max() and dapi.contrast_limits[0] >= data.min()
    assert dapi.contrast_limits[1] == pytest.approx(np.percentile(data[::2, ::1], 99.9), rel=0.05)


def test_uint16_rgb_style_samples_are_split_into_channels(make_napari_viewer, data_dir: Path) -> None:
    viewer = make_napari_viewer()
    layers = viewer.open(str(data_dir / "stacks" / "xyc_16bit__hela-cells.tif"), plugin=PLUGIN)
    assert [layer.colormap.name for layer in layers] == ["red", "green", "blue"]
    assert all(layer.metadata["source_axes"] == "YXS" and layer.metadata["axes"] == "YX" for layer in layers)


def test_open_dsb2018_image(make_napari_viewer, data_dir: Path) -> None:
    image_path = sorted((data_dir / "dsb2018_fluo" / "images").glob("*.tif"))[0]
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(image_path), plugin=PLUGIN)
    assert layer.name == image_path.stem and layer.data.ndim == 2 and layer.data.dtype == np.uint8
    assert layer.metadata["axes"] == "YX" and tuple(layer.axis_labels) == ("y", "x")
    assert tuple(layer.scale) == (1.0, 1.0)
    assert all(str(u) == "pixel" for u in layer.units)


# ---------------------------------------------------------------------------------------------
# Small files written here
# ---------------------------------------------------------------------------------------------


def test_open_imagej_tzcyx_with_channel_labels(make_napari_viewer, tmp_path: Path) -> None:
    t, z, c, y, x = 2, 3, 3, 16, 20
    data = np.arange(t * z * c * y * x, dtype=np.uint16).reshape(t, z, c, y, x)
    channel = ["DAPI", "GFP", "mCherry"]
    labels = [channel[ci] for _ in range(t) for _ in range(z) for ci in range(c)]
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"axes": "TZCYX", "spacing": 1.5, "finterval": 30.0, "unit": "um", "Labels": labels},
    )
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert [layer.name for layer in layers] == channel
    assert [layer.colormap.name for layer in layers] == ["cyan", "magenta", "yellow"]
    for ci, layer in enumerate(layers):
        assert layer.data.shape == (t, z, y, x)
        assert _is_lazy(layer.data)
        np.testing.assert_array_equal(np.asarray(layer.data), data[:, :, ci])
        np.testing.assert_allclose(layer.scale, (30.0, 1.5, 0.25, 0.25))
        assert tuple(layer.axis_labels) == ("t", "z", "y", "x")
        assert tuple(str(u) for u in layer.units) == ("second", "micrometer", "micrometer", "micrometer")
        assert layer.metadata["axes"] == "TZYX" and layer.metadata["source_axes"] == "TZCYX"
        assert layer.metadata["units"] == ("sec", "micron", "micron", "micron")


def test_open_ome_tiff_with_channel_names(make_napari_viewer, tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 4000, size=(2, 4, 24, 32), dtype=np.uint16)
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "CZYX",
            "Channel": {"Name": ["nuclei", "membrane"]},
            "PhysicalSizeX": 0.3,
            "PhysicalSizeY": 0.3,
            "PhysicalSizeZ": 1.0,
        },
    )
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert [layer.name for layer in layers] == ["nuclei", "membrane"]
    for layer in layers:
        assert layer.data.shape == (4, 24, 32)
        assert layer.metadata["axes"] == "ZYX" and layer.metadata["source_axes"] == "CZYX"
        np.testing.assert_allclose(layer.scale, (1.0, 0.3, 0.3))
        assert tuple(layer.axis_labels) == ("z", "y", "x")


def test_open_plain_2d_uint16(make_napari_viewer, tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(500, 1500, size=(40, 50), dtype=np.uint16)
    data[0, 0] = 65535
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, data)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.name == "plain" and layer.data.shape == (40, 50) and _is_lazy(layer.data)
    assert not layer.rgb and layer.metadata["axes"] == "YX" and layer.metadata["channel_names"] is None
    assert tuple(layer.scale) == (1.0, 1.0)
    assert layer.contrast_limits[1] < 1500  # robust, not the hot pixel
    np.testing.assert_array_equal(np.asarray(layer.data), data)


def test_open_uint8_rgb(make_napari_viewer, tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(0, 255, size=(30, 40, 3), dtype=np.uint8)
    path = tmp_path / "photo.tif"
    tifffile.imwrite(path, data, photometric="rgb")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.rgb and layer.data.shape == (30, 40, 3)
    assert layer.metadata["axes"] == "YXS"
    assert tuple(layer.axis_labels) == ("y", "x")


def test_three_planes_of_width_three_are_not_rgb(tmp_path: Path) -> None:
    path = tmp_path / "narrow.tif"
    tifffile.imwrite(path, np.zeros((4, 5, 3), np.uint8), imagej=True, metadata={"axes": "ZYX"})
    ((data, kwargs, _),) = read_tiff(str(path))
    assert kwargs["rgb"] is False and kwargs["metadata"]["axes"] == "ZYX"


def test_single_channel_axis_is_dropped(tmp_path: Path) -> None:
    # tifffile squeezes length-1 axes of ImageJ/OME files; shaped TIFFs (and ImageFiles made in code) keep them
    path = tmp_path / "one_channel.tif"
    tifffile.imwrite(path, np.ones((3, 1, 8, 9), np.uint16), metadata={"axes": "ZCYX"})
    assert read_image(path).axes == "ZCYX"
    ((data, kwargs, _),) = read_tiff(str(path))
    assert "channel_axis" not in kwargs and data.shape == (3, 8, 9) and _is_lazy(data)
    assert kwargs["metadata"]["axes"] == "ZYX" and kwargs["metadata"]["source_axes"] == "ZCYX"

    image = ImageFile(
        data=np.ones((3, 1, 8, 9), np.uint16),
        axes="ZCYX",
        scale=(2.0, 1.0, 0.5, 0.5),
        units=("micron", None, "micron", "micron"),
        channel_names=["DAPI"],
        path=path,
    )
    ((data, kwargs, _),) = image_file_to_layer_data(image, name="dapi only")
    assert kwargs["name"] == "dapi only" and kwargs["scale"] == (2.0, 0.5, 0.5)
    assert kwargs["metadata"]["channel_names"] == ["DAPI"]


# ---------------------------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------------------------


def _labels(shape: tuple[int, ...]) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.int32)
    labels[..., 2:6, 3:9] = 7
    labels[..., 10:14, 1:4] = 300
    return labels


def test_writer_round_trip_through_napari(make_napari_viewer, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    labels = _labels((4, 17, 19))
    viewer.add_labels(
        labels,
        name="cells",
        scale=(2.0, 0.5, 0.5),
        units=("micrometer",) * 3,
        metadata={"axes": "ZYX", "provenance": {"model": "nuclei.safetensors"}},
    )
    path = tmp_path / "cells.tif"
    written = viewer.layers.save(str(path), plugin=PLUGIN)
    assert written == [str(path)]
    image = read_image(path)
    np.testing.assert_array_equal(image.data, labels)
    assert image.axes == "ZYX"
    np.testing.assert_allclose(image.scale, (2.0, 0.5, 0.5))
    assert image.units == ("micron",) * 3
    provenance = read_provenance(path)
    assert provenance["layer_name"] == "cells" and provenance["model"] == "nuclei.safetensors"

    # and napari-unet opens it again as an editable Labels layer with the same geometry
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.__class__.__name__ == "Labels"
    np.testing.assert_array_equal(layer.data, labels)
    assert layer.data.flags.writeable
    np.testing.assert_allclose(layer.scale, (2.0, 0.5, 0.5))
    assert layer.metadata["axes"] == "ZYX" and layer.metadata["provenance"]["layer_name"] == "cells"


def test_writer_appends_tif_and_uses_axis_labels_or_default_axes(tmp_path: Path) -> None:
    labels = _labels((2, 3, 17, 19))
    meta = {"name": "t", "scale": (5.0, 1.0, 0.2, 0.2), "metadata": {}, "axis_labels": ("t", "z", "y", "x")}
    (written,) = write_labels_layer(str(tmp_path / "out"), labels, meta)
    assert written == str(tmp_path / "out.tif")
    image = read_image(written)
    assert image.axes == "TZYX" and image.data.dtype == np.uint16
    np.testing.assert_allclose(image.scale, (5.0, 1.0, 0.2, 0.2))

    meta = {"name": "q", "scale": (1.0,) * 4, "metadata": {"axes": "YX"}, "axis_labels": ("0", "1", "2", "3")}
    (written,) = write_labels_layer(str(tmp_path / "q.tiff"), labels, meta)
    assert read_image(written).axes == default_axes(4) == "TZYX"


def test_writer_keeps_big_label_values(tmp_path: Path) -> None:
    labels = _labels((17, 19)).astype(np.int64) * 1000  # up to 300000: too big for uint16
    (written,) = write_labels_layer(str(tmp_path / "big.tif"), labels, {"name": "big", "scale": (1.0, 1.0)})
    image = read_image(written)
    assert image.axes == "YX" and image.data.dtype == np.uint32
    np.testing.assert_array_equal(image.data, labels)
    assert read_provenance(written)["layer_name"] == "big"


# ---------------------------------------------------------------------------------------------
# Sample data
# ---------------------------------------------------------------------------------------------


def test_nuclei_sample(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "nuclei")
    assert [layer.__class__.__name__ for layer in viewer.layers] == ["Image", "Labels"]
    image, truth = viewer.layers
    assert image.name == "nuclei_dsb2018" and image.data.shape == (520, 696) and image.data.dtype == np.uint8
    assert image.metadata["axes"] == "YX"
    assert truth.name == "nuclei ground truth" and truth.data.shape == (520, 696)
    assert len(np.unique(truth.data)) - 1 == int(truth.data.max()) == 135
    assert truth.metadata["axes"] == "YX" and truth.metadata["licence"] == "CC0-1.0"


def test_nuclei_golgi_sample(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "nuclei_golgi")
    assert len(viewer.layers) == 2
    for i, layer in enumerate(viewer.layers):
        assert layer.name == f"xyc_16bit__nuclei_golgi ch{i}"
        assert layer.data.shape == (220, 204) and layer.metadata["axes"] == "YX"
        np.testing.assert_allclose(layer.scale, (0.51575, 0.51575), rtol=1e-4)
        assert tuple(str(u) for u in layer.units) == ("micrometer", "micrometer")
