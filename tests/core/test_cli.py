"""The ``napari-unet`` command: in-process through ``napari_unet.cli.main`` and once through the
installed console script.

The model is a *threshold network* whose weights are set by hand (see ``threshold_net``), so
the number and place of objects in every output is known exactly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from known_nets import threshold_net

from napari_unet import __version__
from napari_unet.cli import main, output_stem
from napari_unet.core.image.io import read_image, read_provenance
from napari_unet.core.model.file import save_model

ONE = ((slice(5, 15), slice(6, 16)),)  # one 10x10 square
TWO = ONE + ((slice(20, 30), slice(25, 37)),)  # plus a 10x12 square
SHAPE = (37, 41)


# ---------------------------------------------------------------------------- fixtures
def plane(squares, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 100, SHAPE).astype(np.uint16)
    for sl in squares:
        img[sl] = rng.integers(900, 1000, img[sl].shape)
    return img


def mask(squares) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    for sl in squares:
        m[sl] = True
    return m


@pytest.fixture
def model2(tmp_path) -> Path:
    """2-channel model ("nuclei", "membrane") that looks only at the first channel it is fed."""
    path = tmp_path / "models" / "two.safetensors"
    path.parent.mkdir()
    save_model(
        threshold_net(2),
        path,
        channel_names=["nuclei", "membrane"],
        class_names=["background", "nucleus"],
        description="threshold test model",
    )
    return path


@pytest.fixture
def model1(tmp_path) -> Path:
    path = tmp_path / "models1" / "one.safetensors"
    path.parent.mkdir()
    save_model(threshold_net(1), path)
    return path


def write_zcyx(path: Path, channel_names=("nucA", "nucB"), n_z=3) -> np.ndarray:
    """ImageJ hyperstack ZCYX: channel 0 holds one square per plane, channel 1 two squares.

    Z spacing 2.5 micron, XY pixel 0.5 micron; channel names as ImageJ slice labels."""
    data = np.stack([np.stack([plane(ONE, seed=z), plane(TWO, seed=10 + z)]) for z in range(n_z)])
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "ZCYX", "spacing": 2.5, "unit": "um", "Labels": list(channel_names) * n_z},
    )
    return data


def run_cli(capsys, *argv):
    """(status, stdout lines, stderr lines) of an in-process ``napari-unet`` call."""
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


def assert_one_error(err_lines, *fragments):
    assert len(err_lines) == 1, err_lines
    assert err_lines[0].startswith("napari-unet: error:"), err_lines
    for fragment in fragments:
        assert fragment in err_lines[0], err_lines


def leftovers(folder: Path) -> list[str]:
    """Label files and temporary files in ``folder``."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.endswith("_labels.tif") or ".tmp" in p.name)


# ---------------------------------------------------------------------------- segment
def test_segment_zcyx_hyperstack_keeps_shape_axes_scale_and_records_provenance(tmp_path, capsys, model2):
    write_zcyx(tmp_path / "stack.tif")
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "stack.tif", "--model", model2, "--output", out, "--no-progress"
    )
    assert status == 0, err
    assert err == []
    result = out / "stack_labels.tif"
    assert sorted(p.name for p in out.iterdir()) == ["stack_labels.tif"]

    labels = read_image(result)
    assert labels.axes == "ZYX"
    assert labels.data.shape == (3, *SHAPE)
    assert labels.data.dtype == np.uint16
    np.testing.assert_allclose(labels.scale, (2.5, 0.5, 0.5))
    assert labels.units == ("micron", "micron", "micron")
    # default channels (0, 1): the model looks at channel 0, one square per plane, linked over Z (z-mode 3d)
    data = np.asarray(labels.data)
    assert data.max() == 1
    for z in range(3):
        np.testing.assert_array_equal(data[z] > 0, mask(ONE))

    prov = read_provenance(result)
    assert prov["model"] == str(model2)
    assert prov["mode"] == "instances"
    assert prov["input"] == str(tmp_path / "stack.tif")
    assert prov["axes"] == "ZCYX"
    assert prov["software"] == f"napari-unet {__version__}"
    assert prov["model_description"] == "threshold test model"
    assert prov["device"] in ("cpu", "cuda", "mps")  # the device used, not "auto"

    assert len(lines) == 1
    assert str(tmp_path / "stack.tif") in lines[0] and str(result) in lines[0]
    assert "1 objects (z-mode 3d)" in lines[0] and "ZYX" in lines[0]
    assert prov["options"]["z_mode"] == prov["z_mode"] == "3d"
    assert prov["options"]["anisotropy"] == pytest.approx(5.0)  # 2.5 micron / 0.5 micron, from the file


@pytest.mark.parametrize("channels", ["1,0", "nucB,nucA", "1,nucA"])
def test_channels_option_reorders_channels(tmp_path, capsys, model2, channels):
    write_zcyx(tmp_path / "stack.tif")
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "stack.tif", "-m", model2, "-o", out, "--channels", channels, "--no-progress"
    )
    assert status == 0, err
    data = np.asarray(read_image(out / "stack_labels.tif").data)
    assert data.max() == 2  # now channel 1 (two squares per plane, linked over Z) comes first
    for z in range(3):
        np.testing.assert_array_equal(data[z] > 0, mask(TWO))
    assert "2 objects" in lines[0]
    expected = [1, 0] if channels == "1,0" else ["nucB", "nucA"] if channels == "nucB,nucA" else [1, "nucA"]
    assert read_provenance(out / "stack_labels.tif")["channels"] == expected


def test_semantic_mode_and_min_size(tmp_path, capsys, model1):
    img = plane(TWO + ((slice(33, 35), slice(2, 4)),))  # plus a 4 px speck
    tifffile.imwrite(tmp_path / "a.tif", img, imagej=True, metadata={"axes": "YX"})
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys,
        "segment",
        tmp_path / "a.tif",
        "-m",
        model1,
        "-o",
        out,
        "--mode",
        "semantic",
        "--min-size",
        "5",
        "--no-progress",
    )
    assert status == 0, err
    result = read_image(out / "a_labels.tif")
    np.testing.assert_array_equal(np.asarray(result.data), mask(TWO).astype(result.data.dtype))
    prov = read_provenance(out / "a_labels.tif")
    assert prov["mode"] == "semantic" and prov["min_size"] == 5
    assert "a.tif" in lines[0]


def test_ome_tif_output_name_and_several_inputs(tmp_path, capsys, model1):
    tifffile.imwrite(
        tmp_path / "a.ome.tif",
        plane(TWO)[None],
        ome=True,
        metadata={
            "axes": "CYX",
            "PhysicalSizeX": 0.3,
            "PhysicalSizeY": 0.3,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm",
        },
    )
    tifffile.imwrite(tmp_path / "b.tiff", plane(ONE), imagej=True, metadata={"axes": "YX"})
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "a.ome.tif", tmp_path / "b.tiff", "-m", model1, "-o", out, "--no-progress"
    )
    assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "b_labels.tif"]
    a = read_image(out / "a_labels.tif")
    assert a.axes == "YX" and a.data.shape == SHAPE
    np.testing.assert_allclose(a.scale, (0.3, 0.3))
    assert np.asarray(a.data).max() == 2
    assert np.asarray(read_image(out / "b_labels.tif").data).max() == 1
    assert len(lines) == 2
    assert "a.ome.tif" in lines[0] and "a_labels.tif" in lines[0] and "2 objects" in lines[0]
    assert "b.tiff" in lines[1] and "b_labels.tif" in lines[1] and "1 objects" in lines[1]


@pytest.mark.parametrize(
    ("name", "stem"),
    [("a.ome.tif", "a"), ("a.OME.TIFF", "a"), ("b.tif", "b"), ("c.tiff", "c"), ("d.v2.tif", "d.v2"), ("e.png", "e")],
)
def test_output_stem(name, stem):
    assert output_stem(Path(name)) == stem


def test_axes_option_for_a_file_without_metadata(tmp_path, capsys, model2):
    data = np.stack([plane(ONE), plane(TWO, seed=1)])  # 2 x Y x X, no metadata: read as IYX
    tifffile.imwrite(tmp_path / "raw.tif", data, metadata=None)
    assert read_image(tmp_path / "raw.tif").axes != "CYX"
    out = tmp_path / "out"

    status, lines, err = run_cli(capsys, "segment", tmp_path / "raw.tif", "-m", model2, "-o", out, "--no-progress")
    assert status == 1
    assert_one_error(err, "raw.tif", "expects 2 channels", "no channel axis")
    assert lines == []
    assert leftovers(out) == []

    status, lines, err = run_cli(
        capsys,
        "segment",
        tmp_path / "raw.tif",
        "-m",
        model2,
        "-o",
        out,
        "--axes",
        "cyx",
        "--channels",
        "1,0",
        "--no-progress",
    )
    assert status == 0, err
    result = read_image(out / "raw_labels.tif")
    assert result.axes == "YX" and result.data.shape == SHAPE
    np.testing.assert_array_equal(np.asarray(result.data) > 0, mask(TWO))
    assert read_provenance(out / "raw_labels.tif")["axes"] == "CYX"


def test_progress_goes_to_stderr_and_summary_to_stdout(tmp_path, capsys, model1):
    tifffile.imwrite(tmp_path / "a.tif", plane(TWO), imagej=True, metadata={"axes": "YX"})
    status, lines, err = run_cli(capsys, "segment", tmp_path / "a.tif", "-m", model1, "-o", tmp_path / "out")
    assert status == 0
    assert len(lines) == 1 and "2 objects" in lines[0]
    assert any("tiles" in line for line in err)
    assert not any(line.startswith("napari-unet: error") for line in err)


def test_existing_output_folder_and_file_are_reused(tmp_path, capsys, model1):
    tifffile.imwrite(tmp_path / "a.tif", plane(TWO), imagej=True, metadata={"axes": "YX"})
    out = tmp_path / "deep" / "out"
    for _ in range(2):
        status, _, err = run_cli(capsys, "segment", tmp_path / "a.tif", "-m", model1, "-o", out, "--no-progress")
        assert status == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif"]


# ---------------------------------------------------------------------------- errors
def test_missing_input_fails_but_other_inputs_are_processed(tmp_path, capsys, model1):
    tifffile.imwrite(tmp_path / "good.tif", plane(TWO), imagej=True, metadata={"axes": "YX"})
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "missing.tif", tmp_path / "good.tif", "-m", model1, "-o", out, "--no-progress"
    )
    assert status == 1
    assert_one_error(err, "missing.tif", "not found")
    assert leftovers(out) == ["good_labels.tif"]
    assert len(lines) == 1 and "good.tif" in lines[0]


def test_non_image_file(tmp_path, capsys, model1):
    (tmp_path / "notes.tif").write_text("these are not pixels\n")
    tifffile.imwrite(tmp_path / "good.tif", plane(TWO), imagej=True, metadata={"axes": "YX"})
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "notes.tif", tmp_path / "good.tif", "-m", model1, "-o", out, "--no-progress"
    )
    assert status == 1
    assert_one_error(err, "notes.tif", "cannot read")
    assert leftovers(out) == ["good_labels.tif"]
    assert len(lines) == 1


def test_channel_mismatch_hint_names_the_cli_option(tmp_path, capsys, model2):
    data = np.stack([plane(ONE), plane(TWO), plane(ONE, seed=2)])
    tifffile.imwrite(tmp_path / "three.tif", data, imagej=True, metadata={"axes": "CYX"})
    write_zcyx(tmp_path / "good.tif")
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "three.tif", tmp_path / "good.tif", "-m", model2, "-o", out, "--no-progress"
    )
    assert status == 1
    assert_one_error(err, "three.tif", "expects 2 channels", "gives 3", "--channels")
    assert "channels=[" not in err[0]
    assert leftovers(out) == ["good_labels.tif"]
    assert len(lines) == 1


@pytest.mark.parametrize(
    ("channels", "fragment"),
    [
        ("0,5", "channel 5 does not exist"),
        ("nucA,nope", "no channel named 'nope'"),
        ("0,0", "twice"),
        ("0", "expects 2 channels"),
    ],
)
def test_bad_channels_for_a_file(tmp_path, capsys, model2, channels, fragment):
    write_zcyx(tmp_path / "stack.tif")
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "stack.tif", "-m", model2, "-o", out, "--channels", channels, "--no-progress"
    )
    assert status == 1
    assert_one_error(err, "stack.tif", fragment)
    assert lines == [] and leftovers(out) == []


@pytest.mark.parametrize("channels", [",", "0,,1", " "])
def test_malformed_channels_option(tmp_path, capsys, model2, channels):
    write_zcyx(tmp_path / "stack.tif")
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "stack.tif", "-m", model2, "-o", out, "--channels", channels, "--no-progress"
    )
    assert status == 1
    assert_one_error(err, "--channels")
    assert lines == [] and leftovers(out) == []


def test_missing_model_file(tmp_path, capsys):
    write_zcyx(tmp_path / "stack.tif")
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "stack.tif", "-m", tmp_path / "nope.safetensors", "-o", out, "--no-progress"
    )
    assert status == 1
    assert_one_error(err, "nope.safetensors")
    assert lines == [] and leftovers(out) == []


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"garbage that is not a safetensors header" * 3])
def test_corrupt_model_file(tmp_path, capsys, content):
    write_zcyx(tmp_path / "stack.tif")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    out = tmp_path / "out"
    status, lines, err = run_cli(capsys, "segment", tmp_path / "stack.tif", "-m", bad, "-o", out, "--no-progress")
    assert status == 1
    assert_one_error(err, "bad.safetensors")
    assert lines == [] and leftovers(out) == []


def test_truncated_model_file(tmp_path, capsys, model2):
    write_zcyx(tmp_path / "stack.tif")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(model2.read_bytes()[:-40])
    out = tmp_path / "out"
    status, lines, err = run_cli(capsys, "segment", tmp_path / "stack.tif", "-m", cut, "-o", out, "--no-progress")
    assert status == 1
    assert_one_error(err, "cut.safetensors", "truncated")
    assert leftovers(out) == []


def test_bad_axes_option(tmp_path, capsys, model2):
    write_zcyx(tmp_path / "stack.tif")
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "stack.tif", "-m", model2, "-o", out, "--axes", "CYX", "--no-progress"
    )
    assert status == 1
    assert_one_error(err, "stack.tif", "'CYX'", "4")
    assert leftovers(out) == []


def test_two_inputs_with_the_same_output_name(tmp_path, capsys, model1):
    (tmp_path / "x").mkdir()
    for p in (tmp_path / "a.tif", tmp_path / "x" / "a.ome.tif"):
        tifffile.imwrite(p, plane(ONE), imagej=True, metadata={"axes": "YX"})
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "a.tif", tmp_path / "x" / "a.ome.tif", "-m", model1, "-o", out, "--no-progress"
    )
    assert status == 1
    assert_one_error(err, "same name", "a.tif", "a.ome.tif", "a_labels.tif")
    assert lines == [] and leftovers(out) == []


@pytest.mark.parametrize("device", ["foo", "cuda:99"])
def test_bad_device_is_reported_once(tmp_path, capsys, model1, device):
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, plane(ONE), imagej=True, metadata={"axes": "YX"})
    out = tmp_path / "out"
    status, lines, err = run_cli(
        capsys,
        "segment",
        tmp_path / "a.tif",
        tmp_path / "b.tif",
        "-m",
        model1,
        "-o",
        out,
        "--device",
        device,
        "--no-progress",
    )
    assert status == 1
    assert_one_error(err, repr(device))
    assert lines == [] and leftovers(out) == []


@pytest.mark.parametrize(
    "option",
    [["--tile-size", "0"], ["--halo", "-1"], ["--batch-size", "0"], ["--min-size", "-2"], ["--tile-size", "big"]],
)
def test_bad_numbers_are_usage_errors(tmp_path, capsys, model1, option):
    tifffile.imwrite(tmp_path / "a.tif", plane(ONE), imagej=True, metadata={"axes": "YX"})
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(tmp_path / "a.tif"), "-m", str(model1), "-o", str(tmp_path / "out"), *option])
    assert exc.value.code == 2
    assert option[0] in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["segment", "a.tif"])  # --output missing
    assert exc.value.code == 2
    assert "--output" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["segment", "a.tif", "-m", "m", "-o", "o", "--mode", "blobs"])
    assert exc.value.code == 2


def test_failure_while_writing_leaves_no_partial_file(tmp_path, capsys, model1, monkeypatch):
    tifffile.imwrite(tmp_path / "a.tif", plane(TWO), imagej=True, metadata={"axes": "YX"})
    tifffile.imwrite(tmp_path / "b.tif", plane(ONE), imagej=True, metadata={"axes": "YX"})
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_labels.tif").write_bytes(b"previous result")  # an older output must survive intact
    real_imwrite = tifffile.imwrite
    calls = []

    def failing_imwrite(file, data, *args, **kwargs):
        calls.append(Path(file))
        if len(calls) == 1:  # the first output: write part of it, then fail
            Path(file).write_bytes(b"II*\x00half a tiff")
            raise OSError(28, "No space left on device")
        return real_imwrite(file, data, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", failing_imwrite)
    status, lines, err = run_cli(
        capsys, "segment", tmp_path / "a.tif", tmp_path / "b.tif", "-m", model1, "-o", out, "--no-progress"
    )
    assert status == 1
    assert_one_error(err, "a.tif", "No space left on device")
    assert calls[0].parent == out and calls[0].name != "a_labels.tif"  # written to a temporary file
    assert (out / "a_labels.tif").read_bytes() == b"previous result"
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "b_labels.tif"]  # no temp file left
    assert np.asarray(read_image(out / "b_labels.tif").data).max() == 1
    assert len(lines) == 1 and "b.tif" in lines[0]


def test_failure_while_writing_a_new_file(tmp_path, capsys, model1, monkeypatch):
    tifffile.imwrite(tmp_path / "a.tif", plane(TWO), imagej=True, metadata={"axes": "YX"})
    out = tmp_path / "out"

    def failing_imwrite(file, data, *args, **kwargs):
        Path(file).write_bytes(b"II*\x00partial")
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(tifffile, "imwrite", failing_imwrite)
    status, lines, err = run_cli(capsys, "segment", tmp_path / "a.tif", "-m", model1, "-o", out, "--no-progress")
    assert status == 1
    assert_one_error(err, "Input/output error")
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------------- info, version
def test_info_prints_channel_and_class_names(capsys, model2):
    status, lines, err = run_cli(capsys, "info", model2)
    assert status == 0 and err == []
    text = "\n".join(lines)
    assert "two.safetensors" in text
    assert "nuclei, membrane" in text
    assert "background, nucleus" in text
    assert "threshold test model" in text


def test_info_on_a_missing_or_corrupt_file(tmp_path, capsys):
    status, lines, err = run_cli(capsys, "info", tmp_path / "nope.safetensors")
    assert status == 1 and lines == []
    assert_one_error(err, "nope.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    status, lines, err = run_cli(capsys, "info", tmp_path / "bad.safetensors")
    assert status == 1 and lines == []
    assert_one_error(err, "bad.safetensors")


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"napari-unet {__version__}"


# ---------------------------------------------------------------------------- the installed command
def _console_script() -> Path:
    script = Path(sys.executable).with_name("napari-unet")
    if not script.exists():
        pytest.skip(f"console script not installed beside {sys.executable}")
    return script


def test_console_script(tmp_path, model2):
    script = _console_script()
    write_zcyx(tmp_path / "stack.tif")
    (tmp_path / "broken.tif").write_bytes(b"\x00" * 100)
    out = tmp_path / "out"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [
            str(script),
            "segment",
            str(tmp_path / "stack.tif"),
            str(tmp_path / "broken.tif"),
            "--model",
            str(model2),
            "--output",
            str(out),
            "--channels",
            "nucB,nucA",
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert proc.returncode == 1
    err = proc.stderr.splitlines()
    assert_one_error(err, "broken.tif")
    assert leftovers(out) == ["stack_labels.tif"]
    assert len(proc.stdout.splitlines()) == 1 and "2 objects (z-mode 3d)" in proc.stdout
    assert np.asarray(read_image(out / "stack_labels.tif").data).max() == 2  # two squares, each linked over Z

    proc = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == f"napari-unet {__version__}"


def test_segment_compile_option_is_validated(tmp_path, capsys):
    from napari_unet.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(tmp_path / "x.tif"), "--output", str(tmp_path / "out"), "--compile", "maybe"])
    assert exit_info.value.code == 2
    assert "--compile" in capsys.readouterr().err


# ---------------------------------------------------------------------------- test-time augmentation
@pytest.fixture
def tta_calls(monkeypatch) -> list:
    """The ``tta`` option of every tiled run the CLI starts."""
    from napari_unet.core.inference import run as inference

    calls: list = []
    real = inference.iter_tiled

    def spy(*args, **kwargs):
        calls.append(kwargs.get("tta"))
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "iter_tiled", spy)
    return calls


def test_segment_tta_option_reaches_the_core_and_is_recorded(tmp_path, capsys, model1, tta_calls):
    tifffile.imwrite(tmp_path / "a.tif", plane(TWO), imagej=True, metadata={"axes": "YX"})
    for extra, expected in (((), False), (("--tta",), True)):
        out = tmp_path / f"out_{expected}"
        status, lines, err = run_cli(
            capsys, "segment", tmp_path / "a.tif", "-m", model1, "-o", out, "--no-progress", *extra
        )
        assert status == 0, err
        assert tta_calls[-1] is expected
        assert read_provenance(out / "a_labels.tif")["tta"] is expected
        # the threshold network is equivariant: the same two objects either way
        assert np.asarray(read_image(out / "a_labels.tif").data).max() == 2


def test_evaluate_tta_option(tmp_path, capsys, model1, tta_calls):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", plane(TWO), imagej=True, metadata={"axes": "YX"})
    tifffile.imwrite(tmp_path / "masks" / "a.tif", mask(TWO).astype(np.uint8), imagej=True, metadata={"axes": "YX"})
    argv = ("evaluate", "-m", model1, "--images", tmp_path / "images", "--masks", tmp_path / "masks")
    status, lines, err = run_cli(capsys, *argv, "--tta")
    assert status == 0, err
    assert tta_calls == [True]
    assert "with test-time augmentation" in lines[0] and "mean IoU       1.000" in lines
    status, lines, err = run_cli(capsys, *argv)
    assert status == 0, err
    assert tta_calls == [True, False] and "augmentation" not in lines[0]


# ---------------------------------------------------------------------------- train: object size, distance head
@pytest.fixture
def disc_folders(tmp_path) -> tuple[Path, Path]:
    """Three 48x48 images of bright discs (diameters 9..15) and their instance masks."""
    from skimage.draw import disk

    images, masks = tmp_path / "train_images", tmp_path / "train_masks"
    images.mkdir()
    masks.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        img = rng.integers(0, 100, (48, 48)).astype(np.uint16)
        lab = np.zeros((48, 48), np.uint16)
        for i, centre in enumerate([(12, 12), (12, 35), (35, 12), (35, 35)]):
            rr, cc = disk(centre, int(rng.integers(5, 8)), shape=lab.shape)
            lab[rr, cc] = i + 1
            img[rr, cc] += 900
        tifffile.imwrite(images / f"im{k}.tif", img, imagej=True, metadata={"axes": "YX"})
        tifffile.imwrite(masks / f"im{k}.tif", lab, imagej=True, metadata={"axes": "YX"})
    return images, masks


TINY_TRAIN = (
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--patch-size",
    "32",
    "--batch-size",
    "2",
    "--depth",
    "2",
    "--features",
    "4",
    "--val-fraction",
    "0",
    "--device",
    "cpu",
    "--no-progress",
)


@pytest.fixture
def train_calls(monkeypatch) -> list:
    """The keyword arguments of every ``iter_train`` the CLI starts (nothing is trained; an empty
    file stands for the model, which the command checks was written)."""
    from napari_unet.core.training import loop

    calls: list = []

    def spy(pairs, **kwargs):
        calls.append(kwargs)
        Path(kwargs["output"]).touch()
        return None
        yield  # a generator that finishes at once

    monkeypatch.setattr(loop, "iter_train", spy)
    return calls


@pytest.mark.parametrize(
    "extra, expected",
    [
        (("--object-size", "none"), None),
        (("--object-size", "None"), None),
        (("--object-size", "12"), 12.0),
        (("--object-size", "12.5"), 12.5),
        (("--object-size", "AUTO"), "auto"),
        ((), "auto"),
    ],
)
def test_train_object_size_option_reaches_the_core(tmp_path, capsys, disc_folders, train_calls, extra, expected):
    images, masks = disc_folders
    out = tmp_path / "m.safetensors"
    status, _, err = run_cli(capsys, "train", "--images", images, "--masks", masks, "-o", out, *TINY_TRAIN, *extra)
    assert status == 0, err
    (kwargs,) = train_calls
    assert kwargs["object_size"] == expected and type(kwargs["object_size"]) is type(expected)
    # the defaults of the new recipe
    assert kwargs["scale_jitter"] == 1.25 and kwargs["distance_head"] is True and kwargs["noise"] is True


def test_train_ndim_and_its_patch_default_reach_the_core(tmp_path, capsys, disc_folders, train_calls):
    """``--ndim`` is the option name of the panel (``ndim``) and the API; the patch default follows it."""
    from napari_unet.core.training.config import TrainConfig

    images, masks = disc_folders
    out = tmp_path / "m.safetensors"
    quick = list(TINY_TRAIN)
    i = quick.index("--patch-size")
    del quick[i : i + 2]  # left to the default
    status, _, err = run_cli(capsys, "train", "--images", images, "--masks", masks, "-o", out, *quick, "--ndim", "3")
    assert status == 0, err
    (kwargs,) = train_calls
    assert kwargs["ndim"] == 3 and kwargs["patch_size"] is None
    assert TrainConfig(ndim=3).patch_size == 64 and TrainConfig().patch_size == 256


def test_train_writes_a_distance_model_without_zoom(tmp_path, capsys, disc_folders):
    from napari_unet.core.model.file import load_model

    images, masks = disc_folders
    out = tmp_path / "m.safetensors"
    status, lines, err = run_cli(
        capsys, "train", "--images", images, "--masks", masks, "-o", out, *TINY_TRAIN, "--object-size", "none"
    )
    assert status == 0, err
    assert lines[-1] == f"model written to {out}"
    model = load_model(out)
    assert model.heads == ["distance"]
    assert model.spec.training["rescaled"] is False and model.spec.training["scale_jitter"] == 1.0
    assert 9 <= model.spec.object_size <= 16  # the median disc diameter, recorded all the same


def test_train_no_distance_head_and_data_description(tmp_path, capsys, disc_folders):
    from napari_unet.core.model.file import load_model, read_model_info

    images, masks = disc_folders
    out = tmp_path / "plain.safetensors"
    status, _, err = run_cli(
        capsys,
        "train",
        "--images",
        images,
        "--masks",
        masks,
        "-o",
        out,
        *TINY_TRAIN,
        "--no-distance-head",
        "--no-noise",
        "--object-size",
        "none",
        "--data-description",
        "three disc images",
    )
    assert status == 0, err
    assert "heads" not in read_model_info(out)["architecture"]
    record = load_model(out).spec.training
    assert record["heads"] == [] and record["noise"] is False and record["data"] == "three disc images"


@pytest.mark.parametrize("value", ["-3", "0", "abc", "inf", "nan", ""])
def test_train_bad_object_size_is_a_usage_error(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "train",
                "--images",
                str(tmp_path),
                "--masks",
                str(tmp_path),
                "-o",
                str(tmp_path / "m.safetensors"),
                "--object-size",
                value,
            ]
        )
    assert exc.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1, errors
    assert "--object-size" in errors[0] and repr(value) in errors[0]
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("value", ["0.5", "9", "nan"])
def test_train_bad_scale_jitter_is_one_error_line(tmp_path, capsys, disc_folders, value):
    images, masks = disc_folders
    status, _, err = run_cli(
        capsys,
        "train",
        "--images",
        images,
        "--masks",
        masks,
        "-o",
        tmp_path / "m.safetensors",
        *TINY_TRAIN,
        "--scale-jitter",
        value,
    )
    assert status != 0
    assert_one_error(err, "scale_jitter must be a number in 1..4")
    assert not (tmp_path / "m.safetensors").exists()
