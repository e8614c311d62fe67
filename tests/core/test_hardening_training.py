"""Training that cannot give a model says so: non-finite images, a diverging loss, no model written,
negative label ids; through ``train``/``iter_train``, ``evaluate`` and ``napari-unet train``/``evaluate``.

Tiny networks (depth 2, 4 base features, 32-px patches) on synthetic discs, on the CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
from skimage.draw import disk

from napari_unet.cli import main
from napari_unet.core.model.file import load_model, save_model
from napari_unet.core.model.spec import ModelSpec
from napari_unet.core.model.unet import UNet
from napari_unet.core.training import loop
from napari_unet.core.training.checkpoints import last_paths
from napari_unet.core.training.data import prepare
from napari_unet.core.training.evaluate import evaluate
from napari_unet.core.training.guards import TrainingError
from napari_unet.core.training.loop import iter_train, train
from napari_unet.core.training.targets import INSTANCE_CLASSES

QUICK: dict[str, Any] = dict(
    depth=2,
    base_features=4,
    patch_size=32,
    batch_size=2,
    steps_per_epoch=2,
    epochs=1,
    device="cpu",
    lr=1e-2,
    warmup_steps=1,
    seed=0,
    val_fraction=0,
    object_size=None,
)
CLI_QUICK = (
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
    "--object-size",
    "none",
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def discs(seed: int = 0, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs on noise (float32) and their instance labels (int32)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0.1, 0.05, (size, size)).astype(np.float32)
    lab = np.zeros((size, size), np.int32)
    for i, centre in enumerate([(12, 12), (12, 35), (35, 12), (35, 35)]):
        rr, cc = disk(centre, int(rng.integers(5, 8)), shape=lab.shape)
        lab[rr, cc] = i + 1
        img[rr, cc] += 1.0
    return img, lab


def pairs(n: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    return [discs(seed) for seed in range(n)]


def folders(
    tmp_path: Path, image_dtype: Any = np.float32, mask_dtype: Any = np.uint16, edit: Any = None
) -> tuple[Path, Path]:
    """Three image/mask TIFF pairs; ``edit(k, image, mask)`` may change pair ``k`` in place."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for k in range(3):
        img, lab = discs(k)
        img, lab = img.astype(image_dtype), lab.astype(mask_dtype)
        if edit is not None:
            edit(k, img, lab)
        tifffile.imwrite(images / f"im{k}.tif", img, imagej=True, metadata={"axes": "YX"})
        tifffile.imwrite(masks / f"im{k}.tif", lab, imagej=True, metadata={"axes": "YX"})
    return images, masks


def run_cli(capsys, *argv) -> tuple[int, list[str], list[str]]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


def one_error(err: list[str], *fragments: str) -> None:
    assert len(err) == 1 and err[0].startswith("napari-unet: error:"), err
    for fragment in fragments:
        assert fragment in err[0], err


# ---------------------------------------------------------------------------- non-finite training images
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("mode", ["instances", "semantic"])
def test_non_finite_training_image_is_refused_before_any_step(tmp_path, bad, mode):
    data = pairs()
    data[1][0][5, 7] = bad
    gen = iter_train(data, output=tmp_path / "m.safetensors", **dict(QUICK, mode=mode))
    assert next(gen).kind == "start"  # options checked; now the data
    with pytest.raises(
        ValueError,
        match=r"image 1 holds 1 NaN or infinite pixel value\(s\), the first at y=5, x=7; "
        r"training needs finite values",
    ):
        next(gen)
    assert list(tmp_path.iterdir()) == []


def test_non_finite_validation_image_and_plane_are_named():
    stack = np.stack([discs(0)[0], discs(1)[0]])
    labels = np.stack([discs(0)[1], discs(1)[1]])
    stack[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"image 0 \(z=1\) holds 1 NaN"):
        prepare([(stack, labels)], axes="ZYX")
    val = [discs(2)]
    val[0][0][3, 3] = np.inf
    with pytest.raises(ValueError, match="image 0 holds 1 NaN or infinite"):
        train(pairs(2), val_pairs=val, **QUICK)


def test_only_the_channels_trained_on_must_be_finite():
    img, lab = discs(0)
    two = np.stack([img, img])
    two[1, 4, 4] = np.nan
    prepare([(two, lab)], axes="CYX", channels=[0])  # channel 1 is not used
    with pytest.raises(ValueError, match="image 0 holds 1 NaN"):
        prepare([(two, lab)], axes="CYX", channels=[1])


def test_cli_train_on_a_nan_image_writes_nothing_and_says_which_file(tmp_path, capsys):
    def poison(k, img, lab):
        if k == 2:
            img[10:12, 10:12] = np.nan

    images, masks = folders(tmp_path, edit=poison)
    out = tmp_path / "m.safetensors"
    status, lines, err = run_cli(capsys, "train", "--images", images, "--masks", masks, "-o", out, *CLI_QUICK)
    assert status == 1
    one_error(err, "im2.tif holds 4 NaN or infinite pixel value(s)")
    assert not any("model written" in line for line in lines)
    assert not out.exists() and not last_paths(out)[0].exists()


# ---------------------------------------------------------------------------- a loss that becomes NaN
@pytest.fixture
def nan_loss_from(monkeypatch):
    """``nan_loss_from(k)``: from the k-th training step on, the loss is NaN (its graph kept)."""

    def arm(first: int) -> None:
        real, calls = loop.ce_dice_loss, []

        def poisoned(*args, **kwargs):
            calls.append(1)
            loss = real(*args, **kwargs)
            return loss * float("nan") if len(calls) >= first else loss

        monkeypatch.setattr(loop, "ce_dice_loss", poisoned)

    return arm


def test_diverging_loss_stops_training_and_keeps_the_last_good_model(tmp_path, nan_loss_from):
    nan_loss_from(3)  # epoch 1 (steps 1-2) is fine, step 3 of epoch 2 is not
    out = tmp_path / "m.safetensors"
    events: list = []
    with pytest.raises(
        TrainingError,
        match=r"training diverged: the loss became nan at epoch 2, step 3 "
        r"\(peak learning rate 0.01\).*try a lower learning rate",
    ):
        train(pairs(), output=out, progress=events.append, **dict(QUICK, epochs=3))
    assert [e.epoch for e in events if e.kind == "epoch"] == [1]
    model = load_model(out)  # epoch 1's model, finite (load_model refuses NaN weights)
    assert model.spec.training["epochs_done"] == 1


def test_cli_train_with_a_diverging_loss_fails_with_one_line(tmp_path, capsys, nan_loss_from):
    nan_loss_from(1)
    images, masks = folders(tmp_path)
    out = tmp_path / "m.safetensors"
    status, lines, err = run_cli(capsys, "train", "--images", images, "--masks", masks, "-o", out, *CLI_QUICK)
    assert status == 1
    one_error(err, "training diverged: the loss became nan at epoch 1, step 1")
    assert not any("model written" in line for line in lines) and not out.exists()


# ---------------------------------------------------------------------------- no model written
@pytest.fixture
def never_improves(monkeypatch):
    """Validation scores are NaN: no epoch ever counts as an improvement, so no best model is written."""
    nan = float("nan")
    monkeypatch.setattr(loop, "evaluate_samples", lambda *a, **k: (nan, {"AP50": nan, "mAP": nan, "mIoU": nan}))


def test_training_that_writes_no_model_says_so(tmp_path, never_improves):
    out = tmp_path / "m.safetensors"
    with pytest.raises(TrainingError, match=f"training ended without writing a model to {out}"):
        train(pairs(4), output=out, **dict(QUICK, val_fraction=0.5))
    assert not out.exists()


def test_cli_never_reports_a_model_file_that_is_not_there(tmp_path, capsys, never_improves):
    images, masks = folders(tmp_path)
    out = tmp_path / "m.safetensors"
    options = list(CLI_QUICK)
    options[options.index("--val-fraction") + 1] = "0.4"
    status, lines, err = run_cli(capsys, "train", "--images", images, "--masks", masks, "-o", out, *options)
    assert status == 1
    one_error(err, "training ended without writing a model to")
    assert not any("model written" in line for line in lines) and not out.exists()


def test_cli_checks_the_file_even_when_the_core_does_not(tmp_path, capsys, monkeypatch):
    def finishes_without_a_file(pairs, **kwargs):
        return None
        yield

    monkeypatch.setattr(loop, "iter_train", finishes_without_a_file)
    images, masks = folders(tmp_path)
    out = tmp_path / "m.safetensors"
    status, lines, err = run_cli(capsys, "train", "--images", images, "--masks", masks, "-o", out, *CLI_QUICK)
    assert status == 1 and lines == []
    one_error(err, f"training finished but no model file was written to {out}")


# ---------------------------------------------------------------------------- negative label ids
def negative(lab: np.ndarray) -> np.ndarray:
    lab = lab.copy()
    lab[0, 0:3] = -3
    lab[1, 0] = -1
    return lab


@pytest.mark.parametrize("mode", ["instances", "semantic"])
@pytest.mark.parametrize("dtype", [np.int32, np.int16, np.float32])
def test_train_refuses_negative_label_ids_naming_the_value(tmp_path, mode, dtype):
    data = pairs(2)
    data[1] = (data[1][0], negative(data[1][1]).astype(dtype))
    with pytest.raises(
        ValueError,
        match=r"labels of image 1 hold negative values \(smallest -3, 4 pixel\(s\)\); "
        r"labels must be 0 \(background\) or positive ids",
    ):
        train(data, output=tmp_path / "m.safetensors", **dict(QUICK, mode=mode))
    assert not (tmp_path / "m.safetensors").exists()


def test_cli_train_refuses_negative_label_ids(tmp_path, capsys):
    def poison(k, img, lab):
        if k == 0:
            lab[:] = negative(lab)

    images, masks = folders(tmp_path, mask_dtype=np.int16, edit=poison)
    status, _, err = run_cli(
        capsys, "train", "--images", images, "--masks", masks, "-o", tmp_path / "m.safetensors", *CLI_QUICK
    )
    assert status == 1
    one_error(err, "labels of im0.tif hold negative values (smallest -3, 4 pixel(s))")


@pytest.fixture
def instance_model(tmp_path) -> Path:
    spec = ModelSpec(channel_names=["c"], class_names=list(INSTANCE_CLASSES), target="instances", boundary_class=2)
    torch.manual_seed(0)
    return save_model(UNet(1, 3, depth=2, base_features=4, spec=spec), tmp_path / "inst.safetensors")


def test_evaluate_refuses_negative_ground_truth(instance_model):
    img, lab = discs(0)
    with pytest.raises(ValueError, match=r"ground truth labels of image 0 hold negative values \(smallest -3"):
        evaluate(load_model(instance_model), [(img, negative(lab))], device="cpu")


def test_cli_evaluate_refuses_negative_ground_truth(tmp_path, capsys, instance_model):
    def poison(k, img, lab):
        if k == 1:
            lab[:] = negative(lab)

    images, masks = folders(tmp_path, mask_dtype=np.int16, edit=poison)
    status, lines, err = run_cli(
        capsys, "evaluate", "-m", instance_model, "--images", images, "--masks", masks, "--device", "cpu"
    )
    assert status == 1 and lines == []
    one_error(err, "ground truth labels of im1.tif hold negative values (smallest -3, 4 pixel(s))")
