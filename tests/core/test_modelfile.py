"""The model file: round trips, atomic writes, precise errors, no code execution, no torch for info."""

from __future__ import annotations

import dataclasses
import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file as np_save_file

from napari_unet.core.model.file import (
    FORMAT_VERSION,
    ModelFileError,
    describe_model,
    load_model,
    read_model_info,
    save_model,
)
from napari_unet.core.model.spec import ModelSpec
from napari_unet.core.model.unet import UNet

TRAINING = {"epochs": 12, "data": "dsb2018 fluo subset", "metrics": {"val_iou": 0.8125, "val_loss": 0.21}}


def _trained_like(model: UNet, seed: int = 0) -> UNet:
    """Give weights and BatchNorm statistics non-default values so a round trip is a real test."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
    return model.eval()


@pytest.fixture
def model_2d() -> UNet:
    spec = ModelSpec(
        channel_names=["DAPI", "membrane"],
        class_names=["background", "nucleus", "boundary"],
        target="instances",
        boundary_class=2,
        pixel_size=[0.325, 0.325],
        object_size=18.0,
        description="tiny test nuclei model",
        training=TRAINING,
    )
    return _trained_like(UNet(2, 3, depth=2, base_features=8, spec=spec))


@pytest.fixture
def saved(tmp_path: Path, model_2d: UNet) -> Path:
    return save_model(model_2d, tmp_path / "nuclei.safetensors")


def _write_raw(path: Path, config: object, tensors: dict[str, np.ndarray] | None = None) -> Path:
    """A safetensors file written without save_model, with ``config`` as its napari_unet metadata."""
    text = config if isinstance(config, str) else json.dumps(config)
    np_save_file(tensors or {"w": np.zeros(2, np.float32)}, str(path), metadata={"napari_unet": text})
    return path


def _config_of(path: Path) -> dict:
    return read_model_info(path)


def _state_numpy(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


# ----------------------------------------------------------------------------- round trips
def test_round_trip_2d_same_weights_outputs_and_spec(saved: Path, model_2d: UNet) -> None:
    loaded = load_model(saved)
    assert not loaded.training
    assert loaded.config == model_2d.config
    assert loaded.spec == model_2d.spec
    original, restored = model_2d.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    x = torch.randn(1, 2, 37, 41, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model_2d(x), loaded(x))


def test_round_trip_3d_transposed_conv(tmp_path: Path) -> None:
    model = _trained_like(UNet(1, 2, depth=2, base_features=8, ndim=3, upsampling="transpose"), seed=3)
    path = save_model(model, tmp_path / "volume.safetensors")
    loaded = load_model(path, device="cpu")
    assert loaded.config["upsampling"] == "transpose" and loaded.ndim == 3
    assert loaded.spec.axes == "ZYX"
    assert any(k.startswith("ups.0.up.") for k in loaded.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    x = torch.randn(1, 1, 5, 9, 11, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_saved_file_layout_and_config(saved: Path, model_2d: UNet) -> None:
    raw = saved.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    config = json.loads(header["__metadata__"]["napari_unet"])
    assert config["format"] == "napari-unet-model"
    assert config["format_version"] == FORMAT_VERSION
    assert config["created"].endswith("Z")
    assert config["architecture"] == model_2d.config
    assert config == read_model_info(saved)
    assert ModelSpec.from_dict(config["spec"]) == model_2d.spec
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    assert {v["dtype"] for k, v in tensors.items() if not k.endswith("num_batches_tracked")} == {"F32"}
    assert any(k.endswith("running_mean") for k in tensors)


def test_spec_argument_and_updates_override_model_spec(tmp_path: Path, model_2d: UNet) -> None:
    before = model_2d.spec.to_dict()
    path = save_model(
        model_2d, tmp_path / "m", channel_names=["Hoechst", "WGA"], description="renamed", training={"epochs": 1}
    )
    spec = load_model(path).spec
    assert spec.channel_names == ["Hoechst", "WGA"]
    assert spec.description == "renamed" and spec.training == {"epochs": 1}
    assert spec.class_names == model_2d.spec.class_names
    assert model_2d.spec.to_dict() == before, "save_model must not modify the model's spec"

    other = ModelSpec.default(2, 3)
    path = save_model(model_2d, tmp_path / "other.bin", spec=other, description="generic")
    assert load_model(path).spec == dataclasses.replace(other, description="generic")


def test_training_record_with_numpy_values_is_saved_as_json(tmp_path: Path, model_2d: UNet) -> None:
    path = save_model(
        model_2d,
        tmp_path / "m.safetensors",
        training={"loss": [np.float32(0.5), np.float64(0.25)], "epochs": np.int64(2)},
    )
    assert read_model_info(path)["spec"]["training"] == {"loss": [0.5, 0.25], "epochs": 2}


# ----------------------------------------------------------------------------- atomic writes
def test_saving_over_existing_file_replaces_it_and_leaves_no_temp_files(tmp_path: Path, model_2d: UNet) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"old content")
    save_model(model_2d, path, description="first")
    save_model(model_2d, path, description="second")
    assert read_model_info(path)["spec"]["description"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_failing_save_leaves_no_file(tmp_path: Path, model_2d: UNet) -> None:
    path = tmp_path / "bad.safetensors"
    with pytest.raises(ValueError, match="3 channels"):
        save_model(model_2d, path, channel_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="network takes 2"):
        save_model(model_2d, path, spec=ModelSpec.default(1, 3))
    with pytest.raises(ValueError, match="unknown spec field"):
        save_model(model_2d, path, colour="red")
    with pytest.raises(ValueError, match="JSON"):
        save_model(model_2d, path, training={"callback": object()})
    assert list(tmp_path.iterdir()) == []


def test_failing_save_keeps_existing_file(tmp_path: Path, model_2d: UNet) -> None:
    path = save_model(model_2d, tmp_path / "keep.safetensors")
    before = path.read_bytes()
    with pytest.raises(ValueError):
        save_model(model_2d, path, class_names=["only one"])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.safetensors"]


def test_save_to_directory_or_missing_folder(tmp_path: Path, model_2d: UNet) -> None:
    with pytest.raises(ModelFileError, match="directory"):
        save_model(model_2d, tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        save_model(model_2d, tmp_path / "nowhere" / "m.safetensors")


# ----------------------------------------------------------------------------- errors
ALL_READERS = [load_model, read_model_info, describe_model]


@pytest.mark.parametrize("reader", ALL_READERS)
def test_missing_file_and_directory(tmp_path: Path, reader) -> None:
    with pytest.raises(FileNotFoundError, match="ghost.safetensors"):
        reader(tmp_path / "ghost.safetensors")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(ModelFileError, match="a_folder.*directory"):
        reader(folder)


@pytest.mark.parametrize("reader", ALL_READERS)
@pytest.mark.parametrize(
    "name, content",
    [
        ("image.tif", b"II*\x00\x08\x00\x00\x00" + bytes(200)),
        ("tiny.safetensors", b"abc"),
        ("text.safetensors", b"hello world, this is not a model at all"),
        ("pickle.pkl", pickle.dumps({"weights": [1.0, 2.0]})),
    ],
    ids=["tiff", "tiny", "text", "pickle"],
)
def test_not_a_safetensors_file(tmp_path: Path, reader, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="not a napari-unet model file") as info:
        reader(path)
    assert name in str(info.value)
    assert "pickled PyTorch checkpoints are not loaded for safety" in str(info.value)


def test_torch_checkpoint_is_refused(tmp_path: Path, model_2d: UNet) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save(model_2d.state_dict(), path)
    with pytest.raises(ModelFileError, match="checkpoint.pt.*not a napari-unet model file.*for safety"):
        load_model(path)


class _Exploit:
    """Unpickling this object creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickle_is_never_executed(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Exploit(marker)}, path, _use_new_zipfile_serialization=not legacy)
    assert not marker.exists()
    for reader in ALL_READERS:
        with pytest.raises(ModelFileError, match="evil.pt.*for safety"):
            reader(path)
    assert not marker.exists(), "loading a model file executed code from it"


def test_load_never_unpickles(saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("load_model must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert isinstance(load_model(saved), UNet)


@pytest.mark.parametrize("reader", ALL_READERS)
def test_truncated_tensor_data(tmp_path: Path, saved: Path, reader) -> None:
    path = tmp_path / "cut.safetensors"
    path.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="cut.safetensors is truncated"):
        reader(path)


@pytest.mark.parametrize("reader", ALL_READERS)
def test_truncated_header(tmp_path: Path, saved: Path, reader) -> None:
    path = tmp_path / "cut_header.safetensors"
    raw = saved.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    path.write_bytes(raw[: 8 + n // 2])
    with pytest.raises(ModelFileError, match="cut_header.safetensors is truncated.*header"):
        reader(path)


@pytest.mark.parametrize("reader", ALL_READERS)
def test_safetensors_without_napari_unet_config(tmp_path: Path, reader) -> None:
    path = tmp_path / "plain.safetensors"
    np_save_file({"w": np.ones((2, 2), np.float32)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match="plain.safetensors is a safetensors file without a napari-unet config"):
        reader(path)
    np_save_file({"w": np.ones((2, 2), np.float32)}, str(path))
    with pytest.raises(ModelFileError, match="without a napari-unet config"):
        reader(path)


@pytest.mark.parametrize("reader", ALL_READERS)
def test_invalid_json_config(tmp_path: Path, reader) -> None:
    path = _write_raw(tmp_path / "badjson.safetensors", '{"format": "napari-unet-model", ')
    with pytest.raises(ModelFileError, match="badjson.safetensors.*invalid JSON"):
        reader(path)


@pytest.mark.parametrize("reader", ALL_READERS)
def test_wrong_format(tmp_path: Path, saved: Path, reader) -> None:
    config = {**_config_of(saved), "format": "someone-elses-model"}
    path = _write_raw(tmp_path / "other.safetensors", config, _state_numpy(saved))
    with pytest.raises(ModelFileError, match="other.safetensors.*format 'someone-elses-model'.*napari-unet-model"):
        reader(path)


@pytest.mark.parametrize("reader", ALL_READERS)
def test_newer_format_version_is_refused(tmp_path: Path, saved: Path, reader) -> None:
    config = {**_config_of(saved), "format_version": 99}
    path = _write_raw(tmp_path / "future.safetensors", config, _state_numpy(saved))
    with pytest.raises(ModelFileError) as info:
        reader(path)
    message = str(info.value)
    assert "future.safetensors" in message
    assert "version 99" in message and f"version {FORMAT_VERSION}" in message
    assert "upgrade napari-unet" in message


def test_unknown_spec_keys_are_ignored(tmp_path: Path, saved: Path, model_2d: UNet) -> None:
    config = _config_of(saved)
    config["spec"]["added_in_a_later_release"] = {"x": 1}
    config["extra_top_level_key"] = "fine"
    path = _write_raw(tmp_path / "newer_minor.safetensors", config, _state_numpy(saved))
    assert load_model(path).spec == model_2d.spec


@pytest.mark.parametrize(
    "change, phrase",
    [
        ({"ndim": 4}, "ndim must be 2 or 3"),
        ({"upsampling": "pixelshuffle"}, "upsampling must be one of"),
        ({"depth": 0}, "depth must be an integer"),
    ],
)
def test_invalid_architecture(tmp_path: Path, saved: Path, change: dict, phrase: str) -> None:
    config = _config_of(saved)
    config["architecture"].update(change)
    path = _write_raw(tmp_path / "badarch.safetensors", config, _state_numpy(saved))
    with pytest.raises(ModelFileError, match=f"badarch.safetensors: invalid architecture: {phrase}"):
        load_model(path)


@pytest.mark.parametrize("reader", ALL_READERS)
def test_missing_or_unknown_architecture_keys(tmp_path: Path, saved: Path, reader) -> None:
    config = _config_of(saved)
    del config["architecture"]["depth"]
    path = _write_raw(tmp_path / "nodepth.safetensors", config, _state_numpy(saved))
    with pytest.raises(ModelFileError, match="nodepth.safetensors: invalid architecture: missing key.*depth"):
        reader(path)
    config = _config_of(saved)
    config["architecture"]["attention"] = True
    path = _write_raw(tmp_path / "attention.safetensors", config, _state_numpy(saved))
    with pytest.raises(ModelFileError, match="attention.safetensors: invalid architecture: unknown key.*attention"):
        reader(path)


def test_spec_contradicting_architecture(tmp_path: Path, saved: Path) -> None:
    config = _config_of(saved)
    config["spec"]["channel_names"] = ["only one"]
    path = _write_raw(tmp_path / "badspec.safetensors", config, _state_numpy(saved))
    with pytest.raises(ModelFileError, match="badspec.safetensors: invalid spec: .*network takes 2"):
        read_model_info(path)


def test_weights_with_wrong_shapes(tmp_path: Path, saved: Path) -> None:
    config = _config_of(saved)
    config["architecture"]["base_features"] = 16
    path = _write_raw(tmp_path / "wide.safetensors", config, _state_numpy(saved))
    with pytest.raises(
        ModelFileError, match=r"wide.safetensors: the weights do not match .*shape mismatch.*inc\.0\.weight"
    ):  # noqa: E501
        load_model(path)


def test_weights_missing_or_unexpected(tmp_path: Path, saved: Path) -> None:
    config = _config_of(saved)
    tensors = _state_numpy(saved)
    del tensors["outc.weight"]
    path = _write_raw(tmp_path / "missing.safetensors", config, tensors)
    with pytest.raises(ModelFileError, match=r"missing.safetensors: .*missing tensor.*outc\.weight"):
        load_model(path)
    tensors = {**_state_numpy(saved), "extra.head.weight": np.zeros(3, np.float32)}
    path = _write_raw(tmp_path / "extra.safetensors", config, tensors)
    with pytest.raises(ModelFileError, match=r"extra.safetensors: .*unexpected tensor.*extra\.head\.weight"):
        load_model(path)


def test_file_without_batchnorm_step_counters_loads(tmp_path: Path, saved: Path, model_2d: UNet) -> None:
    tensors = {k: v for k, v in _state_numpy(saved).items() if not k.endswith("num_batches_tracked")}
    path = _write_raw(tmp_path / "no_counters.safetensors", _config_of(saved), tensors)
    loaded = load_model(path)
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        assert torch.equal(model_2d(x), loaded(x))


# ----------------------------------------------------------------------------- info without torch
def test_info_and_describe_do_not_import_torch(saved: Path) -> None:
    code = (
        "import json, sys\n"
        "from napari_unet.core.model.file import read_model_info, describe_model\n"
        "loaded_on_import = 'torch' in sys.modules\n"
        f"info = read_model_info({str(saved)!r})\n"
        f"text = describe_model({str(saved)!r})\n"
        "print(json.dumps({'on_import': loaded_on_import, 'after': 'torch' in sys.modules,\n"
        "                  'architecture': info['architecture'], 'text': text}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["on_import"] is False, "importing napari_unet.core.model.file imported torch"
    assert result["after"] is False, "read_model_info/describe_model imported torch"
    assert result["architecture"]["depth"] == 2 and result["architecture"]["in_channels"] == 2
    assert "nuclei.safetensors" in result["text"]


def test_describe_model_summarises_the_model(saved: Path, model_2d: UNet) -> None:
    text = describe_model(saved)
    n_params = sum(p.numel() for p in model_2d.parameters())
    assert "nuclei.safetensors" in text
    assert f"{n_params:,} parameters" in text
    assert "2D" in text and "depth 2" in text and "8 base features" in text
    for name in ["DAPI", "membrane", "background", "nucleus", "boundary"]:
        assert name in text
    assert "instances" in text and "boundary class 2" in text
    assert "1-99.8" in text and "0.325 x 0.325" in text
    assert "epochs: 12" in text and "val_iou=0.8125" in text
    assert "tiny test nuclei model" in text and "format 1" in text


# ----------------------------------------------------------------------------- output heads
def test_file_of_a_model_without_heads_has_no_heads_key_and_loads(saved: Path, model_2d: UNet) -> None:
    raw = saved.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    arch = json.loads(json.loads(raw[8 : 8 + n])["__metadata__"]["napari_unet"])["architecture"]
    assert "heads" not in arch
    loaded = load_model(saved)
    assert loaded.heads == [] and loaded.n_outputs == loaded.n_classes == 3


def test_distance_model_round_trips_with_identical_outputs(tmp_path: Path, model_2d: UNet) -> None:
    model = _trained_like(UNet(2, 3, depth=2, base_features=8, heads=["distance"], spec=model_2d.spec), seed=4)
    path = save_model(model, tmp_path / "distance.safetensors")
    assert read_model_info(path)["architecture"]["heads"] == ["distance"]
    loaded = load_model(path)
    assert loaded.heads == ["distance"] and loaded.head_channel("distance") == 3
    assert loaded.config == model.config
    x = torch.randn(1, 2, 37, 41, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 4, 37, 41)
        assert torch.equal(out, loaded(x))
    assert "distance.safetensors" in describe_model(path)


@pytest.mark.parametrize("reader", ALL_READERS)
def test_unknown_architecture_key_beside_heads_is_still_refused(tmp_path: Path, saved: Path, reader) -> None:
    config = _config_of(saved)
    config["architecture"]["heads"] = ["distance"]
    config["architecture"]["style_head"] = True
    path = _write_raw(tmp_path / "style.safetensors", config, _state_numpy(saved))
    with pytest.raises(ModelFileError, match="style.safetensors: invalid architecture: unknown key.*style_head"):
        reader(path)


def test_unknown_head_name_in_a_file_is_a_model_file_error(tmp_path: Path, saved: Path) -> None:
    config = _config_of(saved)
    config["architecture"]["heads"] = ["flow"]
    path = _write_raw(tmp_path / "flow.safetensors", config, _state_numpy(saved))
    with pytest.raises(ModelFileError, match="flow.safetensors: invalid architecture: heads must be"):
        load_model(path)


def test_postprocess_foreground_threshold_is_stored_and_checked(tmp_path: Path, model_2d: UNet) -> None:
    settings = {"seed_threshold": 0.4, "min_seed_size": 4, "keep_seedless": False, "foreground_threshold": 0.7}
    path = save_model(model_2d, tmp_path / "m", postprocess=settings)
    assert load_model(path).spec.postprocess == settings
    for bad in (1.5, "high", True):
        with pytest.raises(ValueError, match=rf"foreground_threshold must be a number in 0\.\.1 or null, got {bad!r}"):
            save_model(model_2d, tmp_path / "bad", postprocess={"foreground_threshold": bad})
    assert not (tmp_path / "bad.safetensors").exists()
