"""Reading zarr and OME-Zarr (NGFF 0.4 / 0.5) lazily: metadata, levels, bad inputs, missing extra,
and the same labels as from a TIFF of the same data (API and CLI)."""

from __future__ import annotations

import builtins
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tifffile
from known_nets import threshold_net
from ome_zarr_files import halves, write_ome_zarr

from napari_unet import api
from napari_unet.cli import main
from napari_unet.core.image.axes import AxesGuessWarning
from napari_unet.core.image.io import ImageReadError, read_image
from napari_unet.core.image.zarr_read import MissingExtraError, is_zarr_path
from napari_unet.core.model.file import save_model

zarr = pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")


def czyx(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 100, (2, 3, 40, 48)).astype(np.uint16)
    data[0, :, 5:15, 6:16] += 900
    data[1, :, 20:30, 25:37] += 900
    return data


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_axes_scale_units_channels_and_levels(tmp_path, version):
    data = czyx()
    path = write_ome_zarr(
        tmp_path / "img.ome.zarr",
        halves(data, "CZYX", 3),
        "CZYX",
        version=version,
        scale=(1.0, 2.0, 0.5, 0.25),
        units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
        channel_names=["DNA", "membrane"],
        chunks=(1, 1, 16, 16),
    )
    image = read_image(path)
    assert image.axes == "CZYX"
    assert image.scale == (1.0, 2.0, 0.5, 0.25)
    assert image.units == (None, "micron", "micron", "micron")
    assert image.channel_names == ["DNA", "membrane"]
    assert isinstance(image.data, da.Array)
    assert image.data.chunksize == (1, 1, 16, 16)  # the zarr chunks
    np.testing.assert_array_equal(image.data.compute(), data)
    meta = image.metadata
    assert meta["kind"] == "ome-zarr" and meta["ngff"] == version and meta["level"] == 0
    assert meta["zarr_format"] == (2 if version == "0.4" else 3)
    assert meta["levels"] == [(2, 3, 40, 48), (2, 3, 20, 24), (2, 3, 10, 12)]

    level2 = read_image(path, level=2)  # the level's own scale
    assert level2.data.shape == (2, 3, 10, 12) and level2.scale == (1.0, 2.0, 2.0, 1.0)
    np.testing.assert_array_equal(level2.data.compute(), data[:, :, ::4, ::4])
    assert level2.metadata["level"] == 2 and level2.channel_names == ["DNA", "membrane"]

    with pytest.raises(ValueError, match=r"level 3 is out of range .*3 levels \(0: \(2, 3, 40, 48\), 1: .*2: "):
        read_image(path, level=3)
    with pytest.raises(ValueError, match="level must be a non-negative integer"):
        read_image(path, level=-1)


def test_multiscale_coordinate_transformations_multiply(tmp_path):
    path = write_ome_zarr(
        tmp_path / "t.zarr",
        [np.zeros((4, 8, 8), np.uint8)],
        "TYX",
        version="0.5",
        scale=(1.0, 0.5, 0.5),
        global_scale=(30.0, 2.0, 2.0),
        units={"t": "second", "x": "micrometer", "y": "micrometer"},
    )
    image = read_image(path)
    assert image.axes == "TYX" and image.scale == (30.0, 1.0, 1.0)
    assert image.units == ("sec", "micron", "micron") and image.channel_names is None


def test_ome_zarr_written_by_ome_zarr_itself(tmp_path):
    writer = pytest.importorskip("ome_zarr.writer")
    fmt_mod = pytest.importorskip("ome_zarr.format")
    data = czyx()[:, 0]
    for fmt in (fmt_mod.FormatV04(), fmt_mod.FormatV05()):
        group = zarr.open_group(str(tmp_path / f"w{fmt.version}.zarr"), mode="w", zarr_format=fmt.zarr_format)
        writer.write_image(data, group, axes="cyx", fmt=fmt)
        image = read_image(tmp_path / f"w{fmt.version}.zarr")
        assert image.axes == "CYX" and image.metadata["ngff"] == fmt.version
        assert len(image.metadata["levels"]) > 1
        np.testing.assert_array_equal(np.asarray(image.data), data)


def test_plain_zarr_array_axes_are_guessed_with_a_warning(tmp_path):
    arr = zarr.create_array(str(tmp_path / "plain.zarr"), shape=(3, 20, 24), chunks=(1, 10, 12), dtype="uint16")
    arr[...] = 7
    with pytest.warns(AxesGuessWarning, match="guessed 'CYX'"):
        image = read_image(tmp_path / "plain.zarr")
    assert image.axes == "CYX" and image.metadata["kind"] == "zarr" and image.data.chunksize == (1, 10, 12)
    assert image.scale == (1.0, 1.0, 1.0) and image.units == (None, None, None)
    with pytest.raises(ValueError, match="one level"):
        read_image(tmp_path / "plain.zarr", level=1)
    # a group holding one array and no NGFF metadata reads that array; a 2D one needs no guess
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("only", shape=(20, 24), dtype="uint8")[...] = 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(tmp_path / "g.zarr")
    assert image.axes == "YX" and int(image.data.max()) == 3


def test_bioformats2raw_layout_reads_image_0(tmp_path):
    root = zarr.open_group(str(tmp_path / "b2r.zarr"), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    write_ome_zarr(tmp_path / "b2r.zarr" / "0", [czyx()[:, 0]], "CYX", channel_names=["a", "b"])
    image = read_image(tmp_path / "b2r.zarr")
    assert image.axes == "CYX" and image.channel_names == ["a", "b"]


def test_zarr_paths_are_recognised(tmp_path):
    write_ome_zarr(tmp_path / "noext", [np.zeros((8, 8), np.uint8)], "YX")
    assert is_zarr_path(tmp_path / "noext")  # a folder with zarr metadata, whatever its name
    assert is_zarr_path(tmp_path / "missing.zarr")
    assert not is_zarr_path(tmp_path)
    assert read_image(tmp_path / "noext").axes == "YX"


def _group(tmp_path, attrs, fmt=2, arrays=()):
    group = zarr.open_group(str(tmp_path / "bad.zarr"), mode="w", zarr_format=fmt)
    for name in arrays:
        group.create_array(name, shape=(4, 8, 8), dtype="uint8")
    group.attrs.update(attrs)
    return tmp_path / "bad.zarr"


def _ms(axes="cyx", version="0.4", path="0"):
    return {"version": version, "axes": [{"name": a} for a in axes], "datasets": [{"path": path}]}


@pytest.mark.parametrize(
    ("attrs", "arrays", "fragment"),
    [
        ({}, (), "without OME-Zarr 'multiscales' metadata and no arrays"),
        ({}, ("a", "b"), "2 arrays (a, b)"),
        (
            {"multiscales": [_ms(version="0.3")]},
            ("0",),
            "NGFF version '0.3' is not supported (napari-unet reads 0.4 and 0.5)",
        ),
        ({"multiscales": [_ms(axes="zcyx")]}, ("0",), "its axes 'ZCYX' name 4 dimensions but level 0 has 3"),
        ({"multiscales": [_ms(path="9")]}, ("0",), "level array '9' named in its multiscales is missing"),
        ({"multiscales": [_ms(axes="cyq")]}, ("0",), "axis 'q'"),
        ({"multiscales": []}, ("0",), "'multiscales' must be a non-empty list"),
    ],
)
def test_bad_zarr_groups_name_the_path_and_the_problem(tmp_path, attrs, arrays, fragment):
    path = _group(tmp_path, attrs, arrays=arrays)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_not_a_zarr_store(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(ImageReadError, match=r"empty.zarr' as zarr / OME-Zarr: no zarr array or group there"):
        read_image(tmp_path / "empty.zarr")
    (tmp_path / "file.zarr").write_text("not a store")
    with pytest.raises(ImageReadError, match="it is a file; a zarr store is a folder"):
        read_image(tmp_path / "file.zarr")
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        read_image(tmp_path / "missing.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ImageReadError, match="folder without zarr metadata"):
        read_image(tmp_path / "folder")
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="level= applies to OME-Zarr inputs"):
        read_image(tmp_path / "a.tif", level=1)


def test_missing_zarr_extra_names_the_install_command(tmp_path, monkeypatch, capsys):
    path = write_ome_zarr(tmp_path / "img.zarr", [np.zeros((8, 8), np.uint8)], "YX")
    real_import = builtins.__import__

    def no_zarr(name, *args, **kwargs):
        if name == "zarr" or name.startswith("zarr."):
            raise ModuleNotFoundError("No module named 'zarr'", name="zarr")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zarr)
    with pytest.raises(MissingExtraError, match=r'zarr extra: pip install "napari-unet\[zarr\]" .*Python >= 3.11'):
        read_image(path)
    status = main(["segment", str(path), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and 'pip install "napari-unet[zarr]"' in err[0]
    assert "unexpected error" not in err[0]


def test_importing_napari_unet_does_not_import_zarr():
    code = "import sys, napari_unet, napari_unet.core.image.io; print('zarr' in sys.modules, 'dask' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ---------------------------------------------------------------------------- same labels as a TIFF
def test_api_and_cli_give_the_tiff_labels(tmp_path, capsys):
    data = czyx()
    tifffile.imwrite(
        tmp_path / "img.tif",
        np.moveaxis(data, 0, 1),
        imagej=True,
        resolution=(4.0, 2.0),
        metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "um", "Labels": ["DNA", "membrane"] * 3},
    )
    write_ome_zarr(
        tmp_path / "img.zarr",
        halves(data, "CZYX", 2),
        "CZYX",
        version="0.5",
        scale=(1.0, 2.0, 0.5, 0.25),
        units={a: "micrometer" for a in "zyx"},
        channel_names=["DNA", "membrane"],
        chunks=(1, 1, 16, 16),
    )
    net = threshold_net(2)
    model = tmp_path / "m.safetensors"
    save_model(net, model, channel_names=["DNA", "membrane"])
    options = {"channels": ["DNA", "membrane"], "device": "cpu", "tile_size": 16, "halo": 4}
    tif_labels = api.segment(read_image(tmp_path / "img.tif"), net, **options)
    zarr_labels = api.segment(read_image(tmp_path / "img.zarr"), net, **options)
    np.testing.assert_array_equal(zarr_labels, tif_labels)
    np.testing.assert_array_equal(api.segment(str(tmp_path / "img.zarr"), net, **options), tif_labels)
    assert zarr_labels.max() == 1  # the one square of DNA, through all 3 planes

    argv = ["segment", "-m", model, "-o", tmp_path / "out", "--device", "cpu", "--no-progress"]
    assert main([str(a) for a in [*argv, tmp_path / "img.tif"]]) == 0
    (tmp_path / "out" / "img_labels.tif").rename(tmp_path / "tif_labels.tif")
    assert main([str(a) for a in [*argv, tmp_path / "img.zarr"]]) == 0
    out = capsys.readouterr().out
    assert "img.zarr -> " in out and "img_labels.tif" in out
    from_zarr, from_tif = read_image(tmp_path / "out" / "img_labels.tif"), read_image(tmp_path / "tif_labels.tif")
    np.testing.assert_array_equal(from_zarr.data, from_tif.data)
    assert from_zarr.axes == "ZYX" and from_zarr.scale == pytest.approx((2.0, 0.5, 0.25))

    assert main([str(a) for a in [*argv, "--level", "1", tmp_path / "img.zarr"]]) == 0
    assert read_image(tmp_path / "out" / "img_labels.tif").data.shape == (3, 20, 24)
    assert main([str(a) for a in [*argv, "--level", "5", tmp_path / "img.zarr"]]) == 1
    err = capsys.readouterr().err
    assert "level 5 is out of range" in err and "2 levels (0: (2, 3, 40, 48), 1: (2, 3, 20, 24))" in err


def test_real_image_as_ome_zarr_gives_the_tiff_result(tmp_path, data_dir):
    stack = data_dir / "stacks" / "xyzc_16bit__dna_conf_wf.tif"
    nuclei = sorted((data_dir / "dsb2018_fluo" / "images").glob("*.tif"))
    if not stack.is_file() or not nuclei:
        pytest.skip("real stacks / dsb2018 images not found")
    tif = read_image(stack)  # ZCYX, calibrated
    assert tif.axes == "ZCYX"
    zyx_scale = dict(zip(tif.axes, tif.scale))
    levels = halves(np.asarray(tif.data), tif.axes, 2)
    write_ome_zarr(
        tmp_path / "stack.zarr",
        levels,
        tif.axes,
        version="0.4",
        scale=tuple(zyx_scale[a] for a in tif.axes),
        units={a.lower(): "micrometer" for a in "ZYX"},
        channel_names=["confocal", "widefield"],
        chunks=(8, 1, 64, 64),
    )
    image = read_image(tmp_path / "stack.zarr")
    assert image.axes == "ZCYX" and image.scale == pytest.approx(tif.scale)
    assert image.units == ("micron", None, "micron", "micron")
    assert image.channel_names == ["confocal", "widefield"]
    np.testing.assert_array_equal(image.data[20].compute(), tif.data[20])

    first = read_image(nuclei[0])  # a real DSB2018 image through the bundled model
    write_ome_zarr(tmp_path / "n.zarr", [np.asarray(first.data)], first.axes, version="0.5", chunks=(128, 128))
    options = {"device": "cpu", "object_size": 18.0}
    np.testing.assert_array_equal(
        api.segment(read_image(tmp_path / "n.zarr"), **options), api.segment(first, **options)
    )


def test_read_zarr_metadata_is_json_friendly(tmp_path):
    path = write_ome_zarr(tmp_path / "j.zarr", [np.zeros((8, 8), np.uint8)], "YX", version="0.5")
    json.dumps(read_image(path).metadata)
