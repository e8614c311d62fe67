"""Model files with absurd architectures or non-finite weights, and ``load_model``'s device option.

Every test file is a valid small model whose JSON config (in the safetensors header) or tensor
data was then edited. Each reader (``read_model_info``, ``describe_model``, ``load_model``,
``napari_unet.load_model``, ``napari-unet info`` and ``segment``) must refuse it with one clear
``ModelFileError`` / ``napari-unet: error:`` line, before any network is built.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file

import napari_unet
from napari_unet.cli import main
from napari_unet.core.model.check import MAX_PARAMETERS, check_architecture, expected_shapes
from napari_unet.core.model.file import ModelFileError, describe_model, load_model, read_model_info, save_model
from napari_unet.core.model.unet import UNet

READERS = {
    "read_model_info": read_model_info,
    "describe_model": describe_model,
    "load_model": load_model,
    "api.load_model": napari_unet.load_model,
}


# ---------------------------------------------------------------------------- helpers
@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A valid 2D model file: 1 channel, 3 classes, depth 2, 4 base features, a distance head."""
    torch.manual_seed(0)
    return save_model(UNet(1, 3, depth=2, base_features=4, heads=["distance"]), tmp_path / "small.safetensors")


def edit_architecture(src: Path, dst: Path, section: str = "architecture", **changes) -> Path:
    """``src`` with its config's architecture (or spec) changed (the tensor data is kept as it is)."""
    raw = src.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    config = json.loads(header["__metadata__"]["napari_unet"])
    config[section].update(changes)
    header["__metadata__"]["napari_unet"] = json.dumps(config)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    dst.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    return dst


def with_bad_weight(src: Path, dst: Path, value: float, dtype: str) -> Path:
    """``src`` with its weights cast to ``dtype`` and one value of ``outc.weight`` set to ``value``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cast = getattr(torch, dtype)
    tensors = {k: (t.to(cast) if t.is_floating_point() else t) for k, t in tensors.items()}
    tensors["outc.weight"].view(-1)[1] = value
    save_file(tensors, str(dst), metadata=metadata)
    return dst


def one_error(capsys, *argv) -> str:
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err.splitlines()
    assert status == 1
    assert len(err) == 1 and err[0].startswith("napari-unet: error:"), err
    return err[0]


# ---------------------------------------------------------------------------- shapes without building
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("upsampling", ["interpolate", "transpose"])
@pytest.mark.parametrize("heads", [[], ["distance"]])
def test_expected_shapes_are_those_of_the_built_network(ndim, norm, upsampling, heads):
    net = UNet(2, 3, depth=3, base_features=4, ndim=ndim, norm=norm, upsampling=upsampling, heads=heads)
    built = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert expected_shapes(net.config) == built


# ---------------------------------------------------------------------------- absurd architectures
ABSURD = {
    "depth 12": ({"depth": 12}, "depth must be an integer in 1..8, got 12"),
    "depth 100": ({"depth": 100}, "depth must be an integer in 1..8, got 100"),
    "1e9 features (int)": ({"base_features": 10**9}, "base_features must be an integer in 1..1024, got 1000000000"),
    "1e9 features (float)": ({"base_features": 1e9}, "base_features must be an integer in 1..1024, got 1000000000.0"),
    "depth as text": ({"depth": "4"}, "depth must be an integer in 1..8, got '4' (str)"),
    "0 in_channels": ({"in_channels": 0}, "in_channels must be an integer in 1..1024, got 0"),
    "10^6 classes": ({"n_classes": 10**6}, "n_classes must be an integer in 1..128, got 1000000"),
    "ndim 4": ({"ndim": 4}, "ndim must be 2 or 3, got 4"),
    "ndim 2.0": ({"ndim": 2.0}, "ndim must be 2 or 3, got 2.0"),
    "norm as text": ({"norm": "yes"}, "norm must be true or false, got 'yes'"),
    "heads as text": ({"heads": "distance"}, "heads must be a list of names"),
    "unknown head": ({"heads": ["flow"]}, "heads must be distinct names"),
    "too many parameters": ({"depth": 8, "base_features": 1024}, "parameters, more than the"),
}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize("change, message", ABSURD.values(), ids=ABSURD.keys())
def test_absurd_architecture_is_refused_before_anything_is_built(tmp_path, small, monkeypatch, reader, change, message):
    path = edit_architecture(small, tmp_path / "absurd.safetensors", **change)

    def no_building(*args, **kwargs):
        raise AssertionError("a network was built from an invalid model file")

    monkeypatch.setattr(UNet, "__init__", no_building)
    with pytest.raises(ModelFileError) as info:
        reader(path)
    text = str(info.value)
    assert "absurd.safetensors: invalid architecture: " in text and message in text


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize(
    "change",
    [
        {"base_features": 8},
        {"depth": 3},
        {"in_channels": 2},
        {"heads": []},
        {"upsampling": "transpose"},
        {"norm": False},
    ],
)
def test_plausible_edit_is_caught_by_the_stored_tensor_shapes(tmp_path, small, reader, change):
    path = edit_architecture(small, tmp_path / "edited.safetensors", **change)
    with pytest.raises(ModelFileError, match="edited.safetensors: the weights do not match the architecture"):
        reader(path)


@pytest.mark.parametrize("command", ["info", "segment"])
@pytest.mark.parametrize(
    "change, message", [ABSURD["depth 100"], ABSURD["1e9 features (int)"]], ids=["depth 100", "1e9 features"]
)
def test_cli_refuses_an_absurd_model_with_one_line(tmp_path, capsys, small, command, change, message):
    path = edit_architecture(small, tmp_path / "absurd.safetensors", **change)
    image = tmp_path / "a.tif"
    import tifffile

    tifffile.imwrite(image, np.zeros((32, 32), np.uint8))
    argv = ["info", path] if command == "info" else ["segment", image, "-m", path, "-o", tmp_path / "out"]
    line = one_error(capsys, *argv)
    assert "invalid architecture: " in line and message in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
@pytest.mark.parametrize(
    "change, message",
    [
        ({"object_size": -5}, "object_size must be a positive number of pixels or null, got -5"),
        ({"object_size": "big"}, "object_size must be a positive number of pixels or null, got 'big'"),
        ({"object_size": float("nan")}, "object_size must be a positive number of pixels or null, got nan"),
        ({"pixel_size": [0.0, 0.3]}, "pixel_size must be a list of positive numbers or null"),
        ({"pixel_size": "0.3 um"}, "pixel_size must be a list of positive numbers or null"),
    ],
)
def test_absurd_spec_values_are_refused(tmp_path, small, reader, change, message):
    path = edit_architecture(small, tmp_path / "spec.safetensors", section="spec", **change)
    with pytest.raises(ModelFileError, match=f"spec.safetensors: invalid spec: {message}"):
        reader(path)


def test_new_networks_have_the_same_limits():
    with pytest.raises(ValueError, match="depth must be an integer in 1..8, got 12"):
        UNet(depth=12)
    with pytest.raises(ValueError, match="base_features must be an integer in 1..1024"):
        UNet(base_features=10**9)
    with pytest.raises(ValueError, match=f"more than the {MAX_PARAMETERS:,} supported"):
        UNet(depth=6, base_features=512, ndim=3)
    check_architecture({"depth": 8, "base_features": 8})  # partial: only the values present are checked


# ---------------------------------------------------------------------------- NaN / infinite weights
@pytest.mark.parametrize(
    "reader",
    [describe_model, load_model, napari_unet.load_model],
    ids=["describe_model", "load_model", "api.load_model"],
)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_are_refused(tmp_path, small, reader, dtype, value):
    path = with_bad_weight(small, tmp_path / "diverged.safetensors", value, dtype)
    with pytest.raises(
        ModelFileError,
        match=r"diverged.safetensors: the weights hold NaN or infinite values "
        r"\(1 in outc.weight\)",
    ):
        reader(path)
    assert read_model_info(path)["architecture"]["depth"] == 2  # the cheap header read stays cheap


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_finite_weights_of_every_float_type_load(tmp_path, small, dtype):
    path = with_bad_weight(small, tmp_path / "fine.safetensors", 0.25, dtype)
    assert load_model(path).config["depth"] == 2
    assert "fine.safetensors" in describe_model(path)


def test_cli_info_refuses_non_finite_weights(tmp_path, capsys, small):
    path = with_bad_weight(small, tmp_path / "diverged.safetensors", float("nan"), "float32")
    line = one_error(capsys, "info", path)
    assert "weights hold NaN or infinite values" in line and "retrain" in line


def test_numpy_written_model_with_nan_is_refused(tmp_path, small):
    tensors = np_load_file(str(small))
    tensors["inc.0.weight"] = tensors["inc.0.weight"].copy()
    tensors["inc.0.weight"][0, 0, 0, 0] = np.nan
    tensors["outc.bias"] = np.full_like(tensors["outc.bias"], np.inf)
    from safetensors import safe_open

    with safe_open(str(small), framework="np") as f:
        metadata = f.metadata()
    np_save_file(tensors, str(tmp_path / "two.safetensors"), metadata=metadata)
    with pytest.raises(ModelFileError, match=r"and 1 more tensor"):
        load_model(tmp_path / "two.safetensors")


# ---------------------------------------------------------------------------- load_model(device=...)
NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize("load", [load_model, napari_unet.load_model], ids=["core", "api"])
@pytest.mark.parametrize(
    "device, message",
    [
        ("nonsense", "unknown device 'nonsense'"),
        (True, "device must be a device name .* got True \\(bool\\)"),
        (1.5, "device must be a device name .* got 1.5 \\(float\\)"),
        (-1, "device must be a CUDA device index >= 0"),
        ([0], "device must be a device name .* got \\[0\\] \\(list\\)"),
        pytest.param(
            "cuda",
            "device 'cuda' asked for, but no CUDA GPU is available",
            marks=pytest.mark.skipif(not NO_CUDA, reason="a GPU is present"),
        ),
        pytest.param(
            1,
            "device 1: CUDA device 1 is not available",
            marks=pytest.mark.skipif(not NO_CUDA, reason="a GPU is present"),
        ),
    ],
)
def test_load_model_checks_its_device_like_segment(small, load, device, message):
    with pytest.raises(ValueError, match=message):
        load(small, device=device)


@pytest.mark.parametrize("device", [None, "cpu", "auto", " CPU "])
def test_load_model_good_devices(small, device):
    assert load_model(small, device=device).config["depth"] == 2
