"""``napari-unet`` never shows a traceback unless asked: whatever goes wrong, one
``napari-unet: error:`` line and status 1; Ctrl+C exits 130; ``--debug`` or ``NAPARI_UNET_DEBUG=1``
print the traceback before the line."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from known_nets import threshold_net

from napari_unet import cli
from napari_unet.cli import main
from napari_unet.core.model.file import save_model

ERRORS = {
    "RuntimeError": (
        RuntimeError("CUDA error: an illegal memory access was encountered"),
        "RuntimeError: CUDA error: an illegal memory access was encountered",
    ),
    "torch OOM": (
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB",
    ),
    "MemoryError": (MemoryError("Unable to allocate 19.1 GiB"), "out of memory: Unable to allocate 19.1 GiB"),
    "empty MemoryError": (MemoryError(), "out of memory"),
    "AssertionError": (AssertionError(), "AssertionError: AssertionError"),
    "KeyError": (KeyError("spec"), "KeyError: 'spec'"),
    "multi-line": (RuntimeError("first line\n  second line"), "RuntimeError: first line second line"),
}
COMMANDS = ["info", "segment", "train", "evaluate", "demo"]
ARGV = {
    "info": ["info", "m.safetensors"],
    "segment": ["segment", "a.tif", "-o", "out"],
    "train": ["train", "--images", "i", "--masks", "m", "-o", "m.safetensors"],
    "evaluate": ["evaluate", "-m", "m.safetensors", "--images", "i", "--masks", "m"],
    "demo": ["demo"],
}


def failing(err: BaseException):
    def command(args):
        raise err

    return command


@pytest.fixture
def no_debug(monkeypatch):
    monkeypatch.delenv("NAPARI_UNET_DEBUG", raising=False)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("err, line", ERRORS.values(), ids=ERRORS.keys())
def test_any_error_is_one_line_and_status_1(capsys, monkeypatch, no_debug, command, err, line):
    monkeypatch.setattr(cli, f"cmd_{command}", failing(err))
    status = main(ARGV[command])
    captured = capsys.readouterr()
    assert status == 1
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"napari-unet: error: {line}"), lines
    assert "Traceback" not in captured.err and captured.out == ""
    unexpected = not isinstance(err, MemoryError)
    assert ("run again with --debug or NAPARI_UNET_DEBUG=1" in lines[0]) == unexpected


@pytest.mark.parametrize("how", ["env", "flag"])
def test_debug_shows_the_traceback_then_the_line(capsys, monkeypatch, how):
    monkeypatch.setattr(cli, "cmd_info", failing(RuntimeError("boom")))
    if how == "env":
        monkeypatch.setenv("NAPARI_UNET_DEBUG", "1")
        status = main(["info", "m.safetensors"])
    else:
        monkeypatch.delenv("NAPARI_UNET_DEBUG", raising=False)
        status = main(["--debug", "info", "m.safetensors"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("Traceback (most recent call last):") and "RuntimeError: boom" in err
    assert err.splitlines()[-1] == "napari-unet: error: RuntimeError: boom"


def test_debug_zero_is_off(capsys, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_DEBUG", "0")
    monkeypatch.setattr(cli, "cmd_info", failing(RuntimeError("boom")))
    assert main(["info", "m.safetensors"]) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_ctrl_c_exits_130_with_a_short_message(capsys, monkeypatch, command):
    monkeypatch.setattr(cli, f"cmd_{command}", failing(KeyboardInterrupt()))
    assert main(ARGV[command]) == 130
    assert capsys.readouterr().err == "napari-unet: interrupted\n"


def test_an_unexpected_error_on_one_input_does_not_stop_the_others(tmp_path, capsys, monkeypatch, no_debug):
    from napari_unet.core import segment as segment_module

    model = save_model(threshold_net(1), tmp_path / "one.safetensors")
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, np.zeros((32, 32), np.uint8))
    real = segment_module.iter_segment

    def flaky(image, model, **kwargs):
        if kwargs["image_name"].endswith("a.tif"):
            raise RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR")
        return real(image, model, **kwargs)

    monkeypatch.setattr(segment_module, "iter_segment", flaky)
    out = tmp_path / "out"
    status = main(
        [
            "segment",
            str(tmp_path / "a.tif"),
            str(tmp_path / "b.tif"),
            "-m",
            str(model),
            "-o",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    captured = capsys.readouterr()
    assert status == 1
    errors = captured.err.splitlines()
    assert len(errors) == 1 and errors[0].startswith(
        f"napari-unet: error: {tmp_path / 'a.tif'}: RuntimeError: cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"
    )
    assert sorted(p.name for p in out.iterdir()) == ["b_labels.tif"]
    assert "b.tif ->" in captured.out


def test_console_script_has_no_traceback_for_a_bad_model(tmp_path):
    """Through the installed command: an absurd model file is one line, status 1."""
    import json
    import struct
    import subprocess
    import sys

    path = save_model(threshold_net(1), tmp_path / "m.safetensors")
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    config = json.loads(header["__metadata__"]["napari_unet"])
    config["architecture"]["depth"] = 100
    header["__metadata__"]["napari_unet"] = json.dumps(config)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    proc = subprocess.run(
        [sys.executable, "-m", "napari_unet.cli", "info", str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in __import__("os").environ.items() if k != "NAPARI_UNET_DEBUG"},
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"napari-unet: error: {path}: invalid architecture: depth must be an integer in 1..8, got 100 (int)"
    ]
