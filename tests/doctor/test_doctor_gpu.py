"""napari-unet doctor on machines this one is not: faked CUDA GPUs (CPU-only builds beside a GPU, drivers
too old, GPUs without kernels in the build, failing and wrong convolutions), Apple MPS and Rosetta."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch

from napari_unet._doctor import cuda, devices, run_doctor
from napari_unet._doctor.cuda import arch_verdict, cuda_verdict
from napari_unet._doctor.devices import mac_verdict
from napari_unet.core.inference import planning

SMI_124 = {"driver": "550.54.15", "cuda": "12.4", "gpus": ["NVIDIA GeForce RTX 4090"]}


def by_name(report: Any) -> dict[str, Any]:
    return {c.name: c for c in report.checks}


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """torch says: a CUDA 12.4 build, two usable GPUs of compute capability 8.9 (24 GiB free each);
    nvidia-smi agrees; the convolution on them is faked (see ``state["conv"]``)."""
    state: dict[str, Any] = {"capability": (8, 9), "arch": ["sm_50", "sm_80", "sm_86", "sm_90"], "conv": None}
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: f"Fake GPU {i}")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: state["capability"])
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: state["arch"])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(cuda, "nvidia_smi", lambda: {**SMI_124, "gpus": ["Fake GPU 0", "Fake GPU 1"]})
    real_free, real_probe = planning._free_memory, devices.probe_convolution
    monkeypatch.setattr(planning, "_free_memory", lambda d: 24 << 30 if d.type == "cuda" else real_free(d))

    def probe(device: torch.device, autocast: Any = None) -> float:
        if device.type == "cpu":
            return real_probe(device, autocast)
        if state["conv"] is not None:
            raise state["conv"]
        return 0.5

    monkeypatch.setattr(devices, "probe_convolution", probe)
    return state


def test_cuda_gpus_usable_all_ok(fake_cuda: dict[str, Any]) -> None:
    checks = by_name(run_doctor(gui=False))
    assert checks["CUDA"].status == "OK"
    assert "12.4" in checks["CUDA"].message and "2 GPU(s) usable" in checks["CUDA"].message
    assert checks["GPU 0 kernels"].status == checks["GPU 1 kernels"].status == "OK"  # sm_86 cubins run on 8.9
    for i in (0, 1):
        conv = checks[f"conv on cuda:{i}"]
        assert conv.status == "OK" and f"Fake GPU {i}" in conv.message and "bfloat16" in conv.message
        memory = checks[f"memory on cuda:{i}"]
        assert memory.status == "OK" and memory.message.startswith("24.0 GiB free")
        # the plan is the engine's: on 24 GiB of CUDA memory a 2048 x 2048 image is one tile
        assert memory.details["tiles"] == 1 and memory.details["precision"] == "bfloat16"
        assert "1 tile(s)" in memory.message


def test_failing_convolution_is_a_fail_with_its_fix(fake_cuda: dict[str, Any]) -> None:
    fake_cuda["conv"] = RuntimeError("CUDA error: out of memory")
    report = run_doctor(gui=False)
    conv = by_name(report)["conv on cuda:0"]
    assert conv.status == "FAIL" and "out of memory" in conv.message
    assert "close the programs that use it" in conv.fix
    assert "memory on cuda:0" not in by_name(report)  # no plan for a device that cannot convolve
    assert report.exit_code == 1


def test_wrong_results_are_a_fail(fake_cuda: dict[str, Any]) -> None:
    fake_cuda["conv"] = ArithmeticError("the result differs from the CPU's by 0.9")
    conv = by_name(run_doctor(gui=False))["conv on cuda:1"]
    assert conv.status == "FAIL" and "differs" in conv.message
    assert "wrong" in conv.fix or "precision float32" in conv.fix


def test_gpu_without_kernels_in_the_build(fake_cuda: dict[str, Any]) -> None:
    fake_cuda["capability"] = (12, 0)
    fake_cuda["arch"] = ["sm_50", "sm_80", "sm_90"]
    fake_cuda["conv"] = RuntimeError("CUDA error: no kernel image is available for execution on the device")
    report = run_doctor(gui=False)
    kernels, conv = by_name(report)["GPU 0 kernels"], by_name(report)["conv on cuda:0"]
    assert kernels.status == "FAIL" and "sm_120" in kernels.message and "newer than the build" in kernels.fix
    assert conv.status == "FAIL" and "GPU kernels" in conv.fix
    assert report.exit_code == 1


@pytest.mark.parametrize(
    ("capability", "arch", "status", "words"),
    [
        ((8, 6), ["sm_80", "sm_86"], "OK", "kernels in this build"),
        ((8, 9), ["sm_80"], "OK", "kernels in this build"),  # same major, newer minor: binary compatible
        ((9, 0), ["sm_80", "compute_80"], "WARN", "compiled from PTX"),
        ((3, 5), ["sm_50", "sm_60", "sm_90"], "FAIL", "older than the build supports"),
        ((10, 0), ["sm_50", "sm_90"], "FAIL", "newer than the build"),
    ],
)
def test_arch_verdicts(capability: tuple[int, int], arch: list[str], status: str, words: str) -> None:
    check = arch_verdict("GPU 0 kernels", "Fake", capability, arch)
    assert check.status == status
    assert words in check.message + (check.fix or "")


def test_cpu_only_torch_beside_a_gpu_warns_with_the_wheel_to_install() -> None:
    check = cuda_verdict(build_cuda=None, hip=None, available=False, count=0, smi=SMI_124)
    assert check.status == "WARN" and "CPU-only build" in check.message and "RTX 4090" in check.message
    assert "https://download.pytorch.org/whl/cu124" in check.fix


def test_driver_older_than_the_build_fails() -> None:
    smi = {"driver": "470.82", "cuda": "11.4", "gpus": ["Tesla T4"]}
    check = cuda_verdict(build_cuda="12.4", hip=None, available=False, count=0, smi=smi)
    assert check.status == "FAIL" and "supports CUDA 11.4 at most" in check.message
    assert "update the NVIDIA driver" in check.fix and "whl/cu114" in check.fix


def test_minor_version_compatibility_warns() -> None:
    check = cuda_verdict(build_cuda="12.6", hip=None, available=True, count=1, smi=SMI_124)
    assert check.status == "WARN" and "minor-version" in check.message and "12.6" in check.fix


def test_cuda_build_with_gpu_but_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    check = cuda_verdict(build_cuda="12.4", hip=None, available=False, count=0, smi=SMI_124)
    assert check.status == "FAIL" and "is_available() is False" in check.message
    assert "CUDA_VISIBLE_DEVICES" in check.fix
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    check = cuda_verdict(build_cuda="12.4", hip=None, available=False, count=0, smi=SMI_124)
    assert "torch.cuda.init()" in check.fix


def test_broken_driver_and_no_driver() -> None:
    broken = cuda_verdict(build_cuda="12.4", hip=None, available=False, count=0, smi={"error": "NVIDIA-SMI has failed"})
    assert broken.status == "FAIL" and "NVIDIA-SMI has failed" in broken.message and "driver" in broken.fix
    absent = cuda_verdict(build_cuda="12.4", hip=None, available=False, count=0, smi=None)
    assert absent.status == "WARN" and "whl/cpu" in absent.fix
    none = cuda_verdict(build_cuda=None, hip=None, available=False, count=0, smi=None)
    assert none.status == "INFO" and "no NVIDIA GPU found" in none.message


def test_faked_mismatch_through_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole run with torch built for CUDA 12.8 and a driver for 12.2: CUDA is a FAIL, the CPU still works."""
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cuda, "nvidia_smi", lambda: {"driver": "535.1", "cuda": "12.2", "gpus": ["A100"]})
    report = run_doctor(gui=False)
    checks = by_name(report)
    assert checks["CUDA"].status == "FAIL" and "12.2" in checks["CUDA"].message
    assert checks["conv on cpu"].status == "OK" and "conv on cuda:0" not in checks
    assert report.exit_code == 1


@pytest.mark.parametrize(
    ("facts", "built", "available", "status", "words"),
    [
        ({"machine": "x86_64", "translated": True, "macos": "14.5"}, False, False, "FAIL", "Rosetta"),
        ({"machine": "arm64", "translated": False, "macos": "14.5"}, True, True, "OK", "MPS GPU available"),
        ({"machine": "arm64", "translated": False, "macos": "12.0"}, True, False, "WARN", "not available"),
        ({"machine": "arm64", "translated": False, "macos": "14.5"}, False, False, "FAIL", "no MPS support"),
        ({"machine": "x86_64", "translated": False, "macos": "13.0"}, False, False, "INFO", "Intel Mac"),
    ],
)
def test_mac_verdicts(facts: dict, built: bool, available: bool, status: str, words: str) -> None:
    check = mac_verdict(facts, mps_built=built, mps_available=available)
    assert check.status == status and words in check.message
    if status == "FAIL" and facts["translated"]:
        assert "arm64 Python" in check.fix


def test_faked_mps_device_gets_a_convolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "mac_facts", lambda: {"machine": "arm64", "translated": False, "macos": "14.5"})
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: True)
    seen = []
    real = devices.probe_convolution
    monkeypatch.setattr(
        devices, "probe_convolution", lambda d, a=None: seen.append(d.type) or (real(d, a) if d.type == "cpu" else 1.0)
    )
    checks = by_name(run_doctor(gui=False))
    assert checks["MPS"].status == "OK"
    assert checks["conv on mps"].status == "OK" and "mps" in seen


def test_threads_left_idle_warn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    check = devices.cpu_check()
    assert check.status == "WARN" and "3 core(s) left idle" in check.message
    assert check.fix == "unset OMP_NUM_THREADS (now '1')"
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    check = devices.cpu_check()
    assert check.status == "WARN" and check.fix.startswith("set OMP_NUM_THREADS=4")


HEADER = """
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""
LISTING = "GPU 0: NVIDIA H200 (UUID: GPU-1234)\nGPU 1: NVIDIA GeForce RTX 4090 (UUID: GPU-5678)\n"


def test_nvidia_smi_output_is_parsed() -> None:
    facts = cuda.parse_nvidia_smi(HEADER, LISTING)
    assert facts == {"driver": "550.54.15", "cuda": "12.4", "gpus": ["NVIDIA H200", "NVIDIA GeForce RTX 4090"]}


def test_nvidia_smi_absent_failing_and_working(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    monkeypatch.setattr(cuda.shutil, "which", lambda name: None)
    assert cuda.nvidia_smi() is None
    monkeypatch.setattr(cuda.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    failing = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"

    def run(args: list[str], **kw: Any) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(args, 9, failing, "")

    monkeypatch.setattr(cuda.subprocess, "run", run)
    assert cuda.nvidia_smi() == {"error": failing.strip()}

    def run_ok(args: list[str], **kw: Any) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(args, 0, LISTING if "-L" in args else HEADER, "")

    monkeypatch.setattr(cuda.subprocess, "run", run_ok)
    assert cuda.nvidia_smi()["cuda"] == "12.4"
