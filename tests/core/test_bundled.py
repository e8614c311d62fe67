"""The bundled default nuclei model on the bundled sample (both ship in the package)."""

import subprocess
import sys

import numpy as np
import pytest

from napari_unet import segment
from napari_unet.cli import main
from napari_unet.core.image.io import read_image, read_provenance
from napari_unet.core.image.samples import sample_path
from napari_unet.core.model.bundled import (
    DEFAULT_MODEL_NAME,
    builtin_name,
    builtin_names,
    bundled_model_path,
    bundled_models,
    load_default_model,
    model_label,
    resolve_model_file,
)
from napari_unet.core.model.file import read_model_info
from napari_unet.core.training.metrics import average_precision

# Measured 0.971 on this image (in the validation split, unseen in training) with the shipped model;
# the floor leaves room for CPU/BLAS differences without letting a broken model pass.
AP50_FLOOR = 0.85


@pytest.fixture(scope="module")
def sample():
    return read_image(sample_path("nuclei")), read_image(sample_path("nuclei_masks")).data


def test_bundled_model_ships_and_describes_itself():
    path = bundled_model_path()
    assert path.stat().st_size < 10_000_000
    info = read_model_info(path)
    spec = info["spec"]
    assert spec["target"] == "instances" and spec["boundary_class"] == 2
    assert spec["class_names"] == ["background", "interior", "boundary"]
    assert spec["object_size"] and 10 < spec["object_size"] < 60
    assert info["architecture"]["heads"] == ["distance"] and spec["size_model"]["weights"]
    assert set(spec["postprocess"]) == {
        "seed_threshold",
        "min_seed_size",
        "keep_seedless",
        "fill_holes",
        "foreground_threshold",
    }
    assert spec["channel_names"] == ["nuclei"] and spec["halo"]
    assert "DSB2018" in spec["description"] and "build" not in spec["description"]
    assert "nuclei" in bundled_models()
    with pytest.raises(ValueError, match="no bundled model named 'cells'"):
        bundled_model_path("cells")


def test_segment_without_a_model_uses_the_bundled_one(sample):
    image, truth = sample
    labels = segment(image.data)
    assert labels.shape == truth.shape and labels.dtype == np.uint16
    n_truth = len(np.unique(truth)) - 1
    assert 0.8 * n_truth <= labels.max() <= 1.2 * n_truth
    assert average_precision(truth, labels, (0.5,))[0.5] >= AP50_FLOOR
    np.testing.assert_array_equal(labels, segment(image.data, load_default_model()))


def test_object_size_option_keeps_working_on_a_zoomed_image(sample):
    image, truth = sample
    from skimage.transform import rescale

    small = rescale(np.asarray(image.data, np.float32), 0.5, order=1, preserve_range=True, anti_aliasing=True)
    spec_size = read_model_info(bundled_model_path())["spec"]["object_size"]
    labels = segment(small, object_size=spec_size / 2)
    assert labels.shape == small.shape
    n_truth = len(np.unique(truth)) - 1
    assert 0.7 * n_truth <= labels.max() <= 1.3 * n_truth


@pytest.mark.parametrize("factor", [3.0, 0.6])
def test_zoomed_sample_needs_no_object_size(sample, factor):
    """The sample magnified 3x (nuclei ~50 px) or shrunk to 0.6x gives about the native object
    count with no object size given: the model finds the size and says so."""
    from skimage.transform import rescale

    from napari_unet.core.progress import drain
    from napari_unet.core.segment import iter_segment

    image, truth = sample
    zoomed = rescale(np.asarray(image.data, np.float32), factor, order=1, preserve_range=True, anti_aliasing=factor < 1)
    events = []
    labels = drain(iter_segment(zoomed, load_default_model(), axes="YX", device="cpu"), events.append)
    assert labels.shape == zoomed.shape
    n_truth = len(np.unique(truth)) - 1
    assert 0.85 * n_truth <= labels.max() <= 1.15 * n_truth
    found = [e.value for e in events if e.stage == "size" and e.value is not None]
    native = read_model_info(bundled_model_path())["spec"]["object_size"]
    from napari_unet.core.training.targets import object_diameter

    true = factor * object_diameter(np.asarray(truth))
    assert found and abs(np.log(found[0] / true)) < np.log(1.5), (found, true, native)


def test_demo_command_writes_labels_and_overlay(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "nuclei found" in out and "AP at IoU 0.5" in out
    labels_file = tmp_path / "demo" / "nuclei_dsb2018_labels.tif"
    png = tmp_path / "demo" / "nuclei_dsb2018_overlay.png"
    assert labels_file.is_file() and png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = read_image(labels_file)
    assert labels.axes == "YX" and labels.data.max() > 100
    assert read_provenance(labels_file)["command"] == "napari-unet demo"
    ap = float(out.split("AP at IoU 0.5 = ")[1].split()[0])
    assert ap >= AP50_FLOOR


def test_cli_segment_without_model(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_unet.cli",
            "segment",
            str(sample_path("nuclei")),
            "-o",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "nuclei_dsb2018_labels.tif" in result.stdout
    assert read_provenance(tmp_path / "nuclei_dsb2018_labels.tif")["model"] == "nuclei"  # named, not located


def test_fine_tune_the_bundled_model_from_the_cli(tmp_path, capsys):
    import tifffile

    img_dir, mask_dir = tmp_path / "images", tmp_path / "masks"
    img_dir.mkdir()
    mask_dir.mkdir()
    image = np.asarray(read_image(sample_path("nuclei")).data)[:128, :128]
    truth = np.asarray(read_image(sample_path("nuclei_masks")).data)[:128, :128]
    for name in ("a", "b"):
        tifffile.imwrite(img_dir / f"{name}.tif", image)
        tifffile.imwrite(mask_dir / f"{name}.tif", truth)
    out = tmp_path / "tuned.safetensors"
    code = main(
        [
            "train",
            "--images",
            str(img_dir),
            "--masks",
            str(mask_dir),
            "--output",
            str(out),
            "--from",
            "nuclei",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--patch-size",
            "64",
            "--batch-size",
            "2",
            "--val-fraction",
            "0.5",
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    spec = read_model_info(out)["spec"]
    arch = read_model_info(out)["architecture"]
    assert arch["base_features"] == 16 and arch["depth"] == 4 and spec["channel_names"] == ["nuclei"]


def test_one_resolver_for_built_in_names_and_files(tmp_path):
    path = bundled_model_path()
    assert DEFAULT_MODEL_NAME == "nuclei" and "nuclei" in builtin_names()
    assert resolve_model_file(None) == path and resolve_model_file("nuclei") == path
    own = tmp_path / "mine.safetensors"
    own.write_bytes(b"")
    assert resolve_model_file(own) == own and resolve_model_file(str(own)) == own
    missing = tmp_path / "missing.safetensors"
    assert resolve_model_file(missing) == missing  # loading it gives the file's own error
    with pytest.raises(ValueError, match=r"no built-in model named 'cells'.*built-in models: nuclei"):
        resolve_model_file("cells")
    # the way back: a built-in model's file is named, never located
    assert builtin_name(path) == builtin_name(str(path)) == builtin_name("nuclei") == "nuclei"
    assert builtin_name(own) is None and builtin_name(None) is None
    assert builtin_name(tmp_path / "nuclei.safetensors") is None  # a user's file of the same name
    assert model_label(path) == model_label(None) == "nuclei" and model_label(own) == str(own)


def test_cli_names_built_in_models(tmp_path, capsys):
    import tifffile

    image = np.asarray(read_image(sample_path("nuclei")).data)[:96, :96]
    tifffile.imwrite(tmp_path / "a.tif", image)
    out = tmp_path / "out"
    assert (
        main(
            [
                "segment",
                str(tmp_path / "a.tif"),
                "--model",
                "nuclei",
                "-o",
                str(out),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert read_provenance(out / "a_labels.tif")["model"] == "nuclei"
    capsys.readouterr()
    assert main(["segment", str(tmp_path / "a.tif"), "--model", "cells", "-o", str(out), "--no-progress"]) == 1
    assert "built-in models: nuclei" in capsys.readouterr().err
