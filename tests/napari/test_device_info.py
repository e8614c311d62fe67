"""The Segment panel's "Runs on" line: the device a run will use, and why a present GPU is not used (faked
CUDA GPUs and drivers)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import torch  # noqa: E402

from napari_unet._doctor import cuda  # noqa: E402
from napari_unet._napari.segment_widget import SegmentWidget  # noqa: E402

TIMEOUT_MS = 120_000
SMI = {"driver": "550.54.15", "cuda": "12.4", "gpus": ["NVIDIA GeForce RTX 4090"]}


def note_for(qtbot: Any, widget: SegmentWidget, device: str = "auto") -> Any:
    widget.device_info.note = None
    widget.configure(device=device)
    widget.device_info.refresh()
    qtbot.waitUntil(lambda: widget.device_info.note is not None, timeout=TIMEOUT_MS)
    return widget.device_info.note


def flat(text: Any) -> str:
    return " ".join(str(text).split())


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    state = {"capability": (8, 9)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: state["capability"])
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_80", "sm_86", "sm_90"])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    return state


def test_cpu_only_torch_beside_a_gpu_says_why(make_napari_viewer: Any, qtbot: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(cuda, "nvidia_smi", lambda: SMI)
    widget = SegmentWidget(make_napari_viewer())
    note = note_for(qtbot, widget)
    assert note.device == "cpu" and note.warning
    shown = flat(widget._device_info.value)
    assert "cpu" in shown and "GPU is present but not used" in shown
    assert "CPU-only build" in widget._device_info.tooltip and "napari-unet doctor" in widget._device_info.tooltip
    assert "RTX 4090" in widget._device_info.tooltip


def test_cuda_present_but_unusable(make_napari_viewer: Any, qtbot: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(cuda, "nvidia_smi", lambda: {**SMI, "cuda": "12.2"})
    widget = SegmentWidget(make_napari_viewer())
    note = note_for(qtbot, widget)
    assert note.device == "cpu" and "supports CUDA 12.2 at most" in note.reason
    assert "napari-unet doctor" in widget._device_info.tooltip


def test_usable_gpu_is_named_without_warning(make_napari_viewer: Any, qtbot: Any, fake_gpu: Any) -> None:
    widget = SegmentWidget(make_napari_viewer())
    note = note_for(qtbot, widget)
    assert note.text == "cuda:0 (Fake GPU), bfloat16" and not note.warning
    assert flat(widget._device_info.value) == "cuda:0 (Fake GPU), bfloat16"


def test_gpu_without_kernels_warns(make_napari_viewer: Any, qtbot: Any, fake_gpu: Any) -> None:
    fake_gpu["capability"] = (12, 0)
    widget = SegmentWidget(make_napari_viewer())
    note = note_for(qtbot, widget, "cuda")
    assert note.text.startswith("⚠ cuda:0") and "sm_120" in note.reason and "napari-unet doctor" in note.reason


def test_cpu_here_and_a_missing_cuda(make_napari_viewer: Any, qtbot: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(cuda, "nvidia_smi", lambda: None)
    widget = SegmentWidget(make_napari_viewer())
    assert not note_for(qtbot, widget, "cpu").warning
    if not torch.cuda.is_available():
        note = note_for(qtbot, widget, "cuda")
        assert note.warning and "no CUDA GPU is available" in note.reason
        assert "not available" in flat(widget._device_info.value)
