"""Every public option is checked once, in ``napari_unet.core.options``, with its name in the message.

A matrix of bad values per entry point: the console API (``segment``, ``predict``,
``estimate_object_size``, ``load_model``), the core generators the CLI and the panels run
(``iter_predict``, ``iter_segment``, ``iter_train``, ``evaluate``) and the ``napari-unet`` command.
The API checks its options before it loads the model: the model path given does not exist, so a
check that came later would raise FileNotFoundError instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import torch
from known_nets import threshold_net

from napari_unet import api
from napari_unet.cli import main
from napari_unet.core.inference.run import iter_predict
from napari_unet.core.model.file import save_model
from napari_unet.core.options import check_device, check_ints, resolve_device
from napari_unet.core.progress import drain
from napari_unet.core.segment import iter_segment
from napari_unet.core.training.evaluate import evaluate
from napari_unet.core.training.loop import iter_train

NO_CUDA = not torch.cuda.is_available()
MISSING = "no-such-model.safetensors"
IMAGE = np.zeros((37, 41), np.float32)

# (parameter, bad value, what the message says besides the name and the value)
PREDICT_BAD = [
    ("tile_size", "64", "must be an integer >= 1 or a sequence of integers >= 1"),
    ("tile_size", [64, "64"], "must be an integer >= 1 or a sequence"),
    ("tile_size", 0, "must be an integer >= 1"),
    ("tile_size", 2.5, "must be an integer >= 1"),
    ("halo", "3", "must be an integer >= 0"),
    ("halo", -1, "must be an integer >= 0"),
    ("batch_size", "2", "must be an integer >= 1"),
    ("batch_size", 2.5, "must be an integer >= 1"),
    ("batch_size", True, "must be an integer >= 1"),
    ("object_size", "10", "must be a positive number of pixels"),
    ("object_size", -1.0, "must be a positive number of pixels"),
    ("object_size", float("nan"), "must be a positive number of pixels"),
    ("object_size", float("inf"), "must be a positive number of pixels"),
    ("device", True, "must be a device name"),
    ("device", 1.5, "must be a device name"),
    ("device", [0], "must be a device name"),
    ("device", -1, "must be a CUDA device index >= 0"),
    ("device", "nonsense", "unknown device"),
    ("precision", 5, "must be one of 'auto', 'float32', 'bfloat16', 'float16'"),
    ("precision", "half", "must be one of"),
    ("compile", 1, "must be True, False or 'auto'"),
    ("compile", "yes", "must be True, False or 'auto'"),
    ("tta", "yes", "must be True or False"),
    ("tta", 1, "must be True or False"),
    ("channels", 1.5, "must be a channel index, a channel name or a list of them"),
    ("channels", [True], "must be a channel index"),
    ("channels", [0.0], "must be a channel index"),
    ("axes", 5, "must be a string such as 'ZCYX'"),
    ("progress", "yes", "must be a callable, True"),
]
SEGMENT_BAD = PREDICT_BAD + [
    ("min_size", "3", "must be an integer >= 0"),
    ("min_size", -1, "must be an integer >= 0"),
    ("mode", 3, "must be one of 'instances', 'semantic'"),
    ("mode", "objects", "must be one of 'instances', 'semantic'"),
]


def ids(cases: list[tuple]) -> list[str]:
    return [f"{name}={value!r}" for name, value, _ in cases]


def check_message(err: BaseException, name: str, value: Any, what: str) -> None:
    text = str(err)
    assert name in text and repr(value) in text and what in text, text


# ---------------------------------------------------------------------------- the console API
@pytest.mark.parametrize("name, value, what", SEGMENT_BAD, ids=ids(SEGMENT_BAD))
def test_segment_refuses_bad_options_before_loading_the_model(name, value, what):
    with pytest.raises(ValueError) as info:
        api.segment(IMAGE, MISSING, **{name: value})
    check_message(info.value, name, value, what)


@pytest.mark.parametrize("name, value, what", PREDICT_BAD, ids=ids(PREDICT_BAD))
def test_predict_refuses_bad_options_before_loading_the_model(name, value, what):
    with pytest.raises(ValueError) as info:
        api.predict(IMAGE, MISSING, **{name: value})
    check_message(info.value, name, value, what)


@pytest.mark.parametrize(
    "name, value, what",
    [c for c in PREDICT_BAD if c[0] in ("axes", "channels")],
    ids=ids([c for c in PREDICT_BAD if c[0] in ("axes", "channels")]),
)
def test_estimate_object_size_refuses_bad_options(name, value, what):
    with pytest.raises(ValueError) as info:
        api.estimate_object_size(IMAGE, MISSING, **{name: value})
    check_message(info.value, name, value, what)


def test_the_exact_messages_of_the_issue():
    with pytest.raises(
        ValueError,
        match=r"^tile_size must be an integer >= 1 or a sequence of integers >= 1 "
        r"\(one per spatial axis\), got '64' \(str\)$",
    ):
        api.segment(IMAGE, MISSING, tile_size="64")
    with pytest.raises(ValueError, match=r"^object_size must be a positive number of pixels, got '10' \(str\)$"):
        api.segment(IMAGE, MISSING, object_size="10")


@pytest.mark.skipif(not NO_CUDA, reason="a GPU is present")
@pytest.mark.parametrize("device", [0, 1, np.int64(1), "1"])
def test_integer_devices_mean_cuda_devices(device):
    shown = repr(device if isinstance(device, str) else int(device))
    with pytest.raises(ValueError, match=rf"device {shown}: CUDA device {int(device)} is not available"):
        api.segment(IMAGE, threshold_net(), axes="YX", device=device)
    with pytest.raises(ValueError, match=f"CUDA device {int(device)} is not available"):
        resolve_device(device)


@pytest.mark.skipif(NO_CUDA, reason="needs a GPU")
def test_integer_device_zero_is_the_first_gpu():
    assert resolve_device(0) == torch.device("cuda:0")


def test_good_values_of_other_types_are_accepted_and_give_the_same_result():
    img = np.random.default_rng(0).random((37, 41)).astype(np.float32)
    net = threshold_net()
    plain = api.segment(img, net, axes="YX", device="cpu", tile_size=32, halo=4, batch_size=2)
    other = api.segment(
        img,
        net,
        axes="YX",
        device=" CPU ",
        tile_size=np.int64(32),
        halo=(4.0, np.int32(4)),
        batch_size=2.0,
        tta=np.bool_(False),
        min_size=np.int16(0),
        compile=np.bool_(False),
    )
    np.testing.assert_array_equal(plain, other)
    assert check_ints("tile_size", [64.0, np.int64(32)], 1) == (64, 32)
    assert check_device(np.int64(1)) == 1 and check_device(None) is None


# ---------------------------------------------------------------------------- the core (CLI and panels run it)
CORE_BAD = [
    ("tile_size", "64", "tile_size must be"),
    ("halo", "3", "halo must be"),
    ("batch_size", 2.5, "batch_size must be"),
    ("object_size", "10", "object_size must be"),
    ("device", 1.5, "device must be"),
    ("compile", 1, "compile must be"),
]


@pytest.mark.parametrize("name, value, what", CORE_BAD, ids=ids(CORE_BAD))
@pytest.mark.parametrize("entry", ["iter_predict", "iter_segment", "evaluate"])
def test_core_entry_points_check_the_same_options(entry, name, value, what):
    net = threshold_net()
    with pytest.raises(ValueError) as info:
        if entry == "iter_predict":
            drain(iter_predict(IMAGE, net, axes="YX", **{name: value}))
        elif entry == "iter_segment":
            drain(iter_segment(IMAGE, net, axes="YX", **{name: value}))
        else:
            evaluate(net, [(IMAGE, np.zeros((37, 41), np.uint16))], axes="YX", **{name: value})
    check_message(info.value, name, value, what)


TRAIN_BAD = [
    ("epochs", "5", "must be an integer >= 1"),
    ("epochs", 2.5, "must be an integer >= 1"),
    ("steps_per_epoch", "2", "must be an integer >= 1"),
    ("patch_size", "32", "must be an integer >= 8"),
    ("batch_size", "8", "must be an integer >= 1"),
    ("lr", "0.001", "must be a learning rate such as 0.001"),
    ("lr", float("nan"), "must be a learning rate"),
    ("lr", -1.0, "must be a learning rate"),
    ("weight_decay", -1.0, "must be a finite number (>= 0)"),
    ("dice_weight", "1", "must be a finite number (>= 0)"),
    ("patience", 0, "must be an integer >= 1"),
    ("warmup_steps", -1, "must be an integer >= 0"),
    ("val_fraction", "0.1", "must be a fraction"),
    ("val_fraction", 1.0, "must be a fraction in 0..1"),
    ("seed", -1, "must be an integer >= 0"),
    ("seed", "0", "must be an integer >= 0"),
    ("preview_every", "1", "must be an integer >= 0"),
    ("ndim", 4, "must be an integer in 2..3"),
    ("depth", 12, "must be an integer in 1..8"),
    ("depth", "4", "must be an integer in 1..8"),
    ("base_features", 10**9, "must be an integer in 1..1024"),
    ("device", 1.5, "must be a device name"),
    ("device", True, "must be a device name"),
    ("device", "nonsense", "unknown device"),
    ("precision", "half", "must be one of"),
    ("augmentation", "yes", "must be True or False"),
    ("elastic", 1, "must be True or False"),
    ("noise", None, "must be True or False"),
    ("resume", "no", "must be True or False"),
    ("channels", 0.5, "must be a channel index"),
    ("axes", 3, "must be a string"),
]


@pytest.mark.parametrize("name, value, what", TRAIN_BAD, ids=ids(TRAIN_BAD))
def test_iter_train_checks_every_option_before_touching_the_data(tmp_path, name, value, what):
    options: dict[str, Any] = dict(device="cpu", epochs=1, output=tmp_path / "m.safetensors")
    options[name] = value
    gen = iter_train([("not an image", "not labels")], **options)
    with pytest.raises(ValueError) as info:
        next(gen)  # the first event comes after the checks, before the data is read
    check_message(info.value, name, value, what)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- the command line
@pytest.fixture
def model1(tmp_path) -> Path:
    return save_model(threshold_net(1), tmp_path / "one.safetensors")


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for k in range(2):
        img = np.zeros((32, 32), np.uint16)
        lab = np.zeros((32, 32), np.uint16)
        img[8:20, 8:20], lab[8:20, 8:20] = 900, 1
        tifffile.imwrite(images / f"im{k}.tif", img, imagej=True, metadata={"axes": "YX"})
        tifffile.imwrite(masks / f"im{k}.tif", lab, imagej=True, metadata={"axes": "YX"})
    return images, masks


def one_error(capsys, argv: list) -> str:
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err.splitlines()
    assert status == 1
    assert len(err) == 1 and err[0].startswith("napari-unet: error:"), err
    return err[0]


@pytest.mark.skipif(not NO_CUDA, reason="a GPU is present")
@pytest.mark.parametrize("command", ["segment", "evaluate", "train", "demo"])
def test_cli_device_given_as_a_number(tmp_path, capsys, model1, folders, command):
    images, masks = folders
    argv = {
        "segment": ["segment", images / "im0.tif", "-m", model1, "-o", tmp_path / "out"],
        "evaluate": ["evaluate", "-m", model1, "--images", images, "--masks", masks],
        "train": ["train", "--images", images, "--masks", masks, "-o", tmp_path / "m.safetensors"],
        "demo": ["demo", "-o", tmp_path / "out"],
    }[command]
    line = one_error(capsys, argv + ["--device", "1"])
    assert "device '1': CUDA device 1 is not available" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize(
    "option, fragment",
    [
        (["--lr", "nan"], "lr must be a learning rate such as 0.001 (>= 0), got nan"),
        (["--lr", "-0.1"], "lr must be a learning rate"),
        (["--val-fraction", "1.5"], "val_fraction must be a fraction in 0..1"),
        (["--seed", "-1"], "seed must be an integer >= 0, got -1"),
        (["--depth", "12"], "depth must be an integer in 1..8, got 12"),
        (["--features", "100000"], "base_features must be an integer in 1..1024, got 100000"),
    ],
)
def test_cli_train_options_checked_by_the_core(tmp_path, capsys, folders, option, fragment):
    images, masks = folders
    line = one_error(
        capsys,
        [
            "train",
            "--images",
            images,
            "--masks",
            masks,
            "-o",
            tmp_path / "m.safetensors",
            "--device",
            "cpu",
            "--no-progress",
            *option,
        ],
    )
    assert fragment in line
    assert not (tmp_path / "m.safetensors").exists()


def test_one_list_of_precisions_for_the_cli_and_the_checks():
    from napari_unet._cli_parser import build_parser
    from napari_unet.core.options import PRECISIONS, check_inference_options

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "segment" in a.choices).choices
    for command in ("segment", "train"):
        action = next(a for a in subparsers[command]._actions if a.dest == "precision")
        assert tuple(action.choices) == PRECISIONS
    for precision in PRECISIONS:
        check_inference_options(precision=precision)
    with pytest.raises(ValueError, match="precision"):
        check_inference_options(precision="float64")
