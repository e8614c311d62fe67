"""Exporting models as ONNX and TorchScript (``napari_unet.export``, ``napari-unet export``): the exported
networks give the probabilities napari-unet computes, at any input size, and bad input is refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import napari_unet
from napari_unet.cli import main
from napari_unet.core.export.network import exported_network
from napari_unet.core.inference.engine import activate
from napari_unet.core.model.file import load_model, save_model
from napari_unet.core.model.unet import UNet

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def probabilities(model: UNet, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return activate(model(torch.from_numpy(x)), model.n_classes).numpy()


def tiny(**kw) -> UNet:
    torch.manual_seed(0)
    model = UNet(kw.pop("in_channels", 2), kw.pop("n_classes", 3), depth=2, base_features=4, **kw).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize(
    "kw",
    [
        {"heads": ["distance"]},
        {"n_classes": 1, "upsampling": "transpose", "norm": False},
        {"ndim": 3, "in_channels": 1, "n_classes": 2},
    ],
    ids=["2d-distance-head", "2d-one-class-transpose", "3d"],
)
def test_onnx_matches_torch_at_two_sizes(tmp_path: Path, kw: dict) -> None:
    model = tiny(**kw)
    out = napari_unet.export(model, format="onnx", output=tmp_path / "m.onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    rng = np.random.default_rng(1)
    sizes = [(8, 20, 24), (12, 13, 30)] if model.ndim == 3 else [(64, 64), (37, 50)]
    for batch, size in zip((1, 2), sizes):
        x = rng.random((batch, model.in_channels, *size), dtype=np.float32)
        got = session.run(None, {"input": x})[0]
        want = probabilities(model, x)
        assert got.shape == want.shape == (batch, model.n_outputs, *size)
        assert np.abs(got - want).max() < 1e-4


def test_torchscript_matches_torch_and_loads_without_napari_unet(tmp_path: Path) -> None:
    model = tiny(heads=["distance"])
    out = napari_unet.export(model, format="torchscript", output=tmp_path / "m.pt")
    scripted = torch.jit.load(str(out))
    for size in ((32, 32), (45, 61)):
        x = np.random.default_rng(2).random((1, 2, *size), dtype=np.float32)
        got = scripted(torch.from_numpy(x)).detach().numpy()
        assert np.abs(got - probabilities(model, x)).max() < 1e-5
        assert np.allclose(got[:, :3].sum(1), 1, atol=1e-5)  # softmax over the classes, sigmoid distance
        assert got[:, 3].min() >= 0 and got[:, 3].max() <= 1


def test_bundled_model_to_onnx_and_torchscript_by_name(tmp_path: Path) -> None:
    model = load_model(Path(napari_unet.__file__).parent / "data" / "models" / "nuclei.safetensors")
    x = np.random.default_rng(3).random((1, 1, 80, 96), dtype=np.float32)
    want = probabilities(model, x)
    onnx_file = napari_unet.export("nuclei", format="onnx", output=tmp_path / "nuclei.onnx")
    got = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(got - want).max() < 1e-4
    ts_file = napari_unet.export(None, format="torchscript", output=tmp_path / "nuclei.pt")
    assert np.abs(torch.jit.load(str(ts_file))(torch.from_numpy(x)).detach().numpy() - want).max() < 1e-5


def test_exported_network_is_the_same_network() -> None:
    model = tiny(ndim=3, in_channels=1, n_classes=2, upsampling="transpose")
    net = exported_network(model)
    assert set(net.state_dict()) == set(model.state_dict())
    x = np.random.default_rng(4).random((1, 1, 16, 16, 16), dtype=np.float32)
    with torch.no_grad():
        assert np.abs(net(torch.from_numpy(x)).numpy() - probabilities(model, x)).max() < 1e-6


# ---------------------------------------------------------------------------- CLI and errors
def test_cli_export_onnx_and_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model_file = save_model(tiny(), tmp_path / "m.safetensors")
    out = tmp_path / "sub" / "m.onnx"
    assert main(["export", str(model_file), "--format", "onnx", "--output", str(out)]) == 0
    assert out.is_file() and "exported" in capsys.readouterr().out
    before = out.read_bytes()
    assert main(["export", str(model_file), "--format", "onnx", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"output {str(out)!r} exists; pass --overwrite to replace it" in err
    assert out.read_bytes() == before
    assert main(["export", str(model_file), "-f", "onnx", "-o", str(out), "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "nucleii", "-f", "onnx", "-o", "{tmp}/a.onnx"], "no built-in model named 'nucleii'"),
        (["export", "{tmp}/missing.safetensors", "-f", "onnx", "-o", "{tmp}/a.onnx"], "missing.safetensors"),
        (["export", "nuclei", "-f", "bioimageio", "-o", "{tmp}/a.onnx"], "a bioimage.io package is a .zip file"),
        (["export", "nuclei", "-f", "onnx", "-o", "{tmp}"], "is a folder"),
    ],
)
def test_cli_export_errors_name_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], message: str
) -> None:
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("napari-unet: error:") and message in err
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*tmp*"))


def test_unknown_format_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(
        ValueError, match=r"unknown export format 'tflite'; choose one of: bioimageio, torchscript, onnx"
    ):
        napari_unet.export("nuclei", format="tflite", output=tmp_path / "m.tflite")
    with pytest.raises(SystemExit):
        main(["export", "nuclei", "--format", "tflite", "-o", str(tmp_path / "m")])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(TypeError, match="got int"):
        napari_unet.export(3, format="onnx", output=tmp_path / "m.onnx")


def test_missing_package_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx fails
    with pytest.raises(ImportError, match=r'pip install "napari-unet\[export\]"'):
        napari_unet.export("nuclei", format="onnx", output=tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
