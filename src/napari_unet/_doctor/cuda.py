"""CUDA checks: the PyTorch build against the NVIDIA driver, and each GPU's compute capability against the
kernels the build carries. The facts come from torch and ``nvidia-smi``; the verdicts are pure functions of
them (:func:`cuda_verdict`, :func:`arch_verdict`), so tests can give any combination."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

from .report import Check

PYTORCH_GET_STARTED = "https://pytorch.org/get-started/locally/"
_NVIDIA_SMI_TIMEOUT = 15


def nvidia_smi() -> dict[str, Any] | None:
    """What ``nvidia-smi`` says: ``{"driver", "cuda", "gpus"}``; ``{"error": ...}`` when it is there but
    fails (driver not loaded, mismatched kernel module); None when there is no ``nvidia-smi``."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        head = subprocess.run([exe], capture_output=True, text=True, timeout=_NVIDIA_SMI_TIMEOUT, check=False)
        listing = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=_NVIDIA_SMI_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"error": f"{exe} did not answer: {err}"}
    if head.returncode != 0:
        said = (head.stdout + head.stderr).strip().splitlines()
        return {"error": said[0] if said else f"{exe} exited with status {head.returncode}"}
    return parse_nvidia_smi(head.stdout, listing.stdout)


def parse_nvidia_smi(header: str, listing: str) -> dict[str, Any]:
    """``{"driver", "cuda", "gpus"}`` from the output of ``nvidia-smi`` (its table's header line
    ``Driver Version: 550.54.15  CUDA Version: 12.4``) and ``nvidia-smi -L`` (``GPU 0: NAME (UUID: ...)``)."""
    driver = re.search(r"Driver Version:\s*([\d.]+)", header)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
    gpus = re.findall(r"^GPU \d+: (.+?)(?: \(UUID.*)?$", listing, flags=re.MULTILINE)
    return {"driver": driver and driver.group(1), "cuda": cuda and cuda.group(1), "gpus": gpus}


def _version(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts = re.findall(r"\d+", text)
    return tuple(int(p) for p in parts[:2]) if parts else None


def _wheel_fix(driver_cuda: str | None) -> str:
    tag = "cuXY"
    v = _version(driver_cuda)
    if v and len(v) == 2:
        tag = f"cu{v[0]}{v[1]}"
    return (
        f"pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/{tag} "
        f"(a CUDA build not newer than the driver's CUDA{' ' + driver_cuda if driver_cuda else ''}; "
        f"the builds offered are listed on {PYTORCH_GET_STARTED})"
    )


def cuda_verdict(
    *, build_cuda: str | None, hip: str | None, available: bool, count: int, smi: dict[str, Any] | None
) -> Check:
    """The verdict on CUDA from the facts: the torch build's CUDA (``torch.version.cuda``), whether
    ``torch.cuda.is_available()``, the device count and what ``nvidia-smi`` said (:func:`nvidia_smi`)."""
    name = "CUDA"
    facts = {"torch_cuda": build_cuda, "hip": hip, "available": available, "device_count": count, "nvidia_smi": smi}
    driver_cuda = smi.get("cuda") if smi else None
    gpus = smi.get("gpus", []) if smi else []
    if hip:
        if available:
            return Check(name, "OK", f"ROCm (HIP {hip}) build, {count} GPU(s) usable as 'cuda'", details=facts)
        return Check(
            name,
            "WARN",
            f"ROCm (HIP {hip}) build of PyTorch, but no AMD GPU is usable",
            "check that the ROCm driver is installed and that your user is in the 'video' and 'render' groups",
            facts,
        )
    if smi and "error" in smi:
        return Check(
            name,
            "FAIL",
            f"nvidia-smi is installed but fails: {smi['error']}",
            "the NVIDIA driver is not loaded or does not match its kernel module: reboot after a driver update, "
            "or reinstall the driver; `nvidia-smi` must list the GPU before PyTorch can use it",
            facts,
        )
    if build_cuda is None:
        if gpus:
            return Check(
                name,
                "WARN",
                f"this PyTorch is a CPU-only build, but nvidia-smi lists {len(gpus)} GPU(s) ({', '.join(gpus)}): "
                "napari-unet runs on the CPU",
                _wheel_fix(driver_cuda),
                facts,
            )
        return Check(
            name, "INFO", "no NVIDIA GPU found (no nvidia-smi) and a CPU-only PyTorch: CUDA not used", details=facts
        )
    if not available:
        if smi is None:
            return Check(
                name,
                "WARN",
                f"PyTorch built for CUDA {build_cuda}, but no NVIDIA driver found (no nvidia-smi)",
                "if this machine has an NVIDIA GPU, install its driver; otherwise the CPU build of PyTorch is smaller: "
                "pip install --force-reinstall torch --index-url https://download.pytorch.org/whl/cpu",
                facts,
            )
        build_v, driver_v = _version(build_cuda), _version(driver_cuda)
        if build_v and driver_v and driver_v < build_v:
            return Check(
                name,
                "FAIL",
                f"PyTorch built for CUDA {build_cuda}, but the driver {smi.get('driver')} supports CUDA "
                f"{driver_cuda} at most: the GPU is not used",
                f"update the NVIDIA driver to one supporting CUDA {build_cuda}, or {_wheel_fix(driver_cuda)}",
                facts,
            )
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = (
            f"CUDA_VISIBLE_DEVICES={visible!r} hides the GPUs; unset it"
            if visible is not None
            else (
                'run `python -c "import torch; torch.cuda.init()"` to see the CUDA error, then reinstall '
                f"PyTorch for this driver: {_wheel_fix(driver_cuda)}"
            )
        )
        return Check(
            name,
            "FAIL",
            f"PyTorch built for CUDA {build_cuda}, driver {smi.get('driver')} (CUDA {driver_cuda}) and "
            f"{len(gpus)} GPU(s) present, but torch.cuda.is_available() is False",
            hint,
            facts,
        )
    build_v, driver_v = _version(build_cuda), _version(driver_cuda)
    if build_v and driver_v and driver_v < build_v:
        return Check(
            name,
            "WARN",
            f"PyTorch built for CUDA {build_cuda} runs on a driver for CUDA {driver_cuda} (minor-version "
            "compatibility): most kernels work, some may fail",
            f"update the NVIDIA driver to one supporting CUDA {build_cuda}",
            facts,
        )
    shown = f"driver {smi.get('driver')} (CUDA {driver_cuda})" if smi else "driver found by torch"
    return Check(name, "OK", f"PyTorch built for CUDA {build_cuda}, {shown}, {count} GPU(s) usable", details=facts)


def _arch_numbers(arch_list: list[str], prefix: str) -> list[int]:
    return [int(m.group(1)) for a in arch_list if (m := re.fullmatch(prefix + r"_(\d+)[a-z]?", a))]


def arch_verdict(name: str, gpu: str, capability: tuple[int, int], arch_list: list[str]) -> Check:
    """Whether the PyTorch build has kernels for a GPU of compute ``capability`` (``arch_list``:
    ``torch.cuda.get_arch_list()``, e.g. ``['sm_75', 'sm_80', 'sm_90', 'compute_90']``)."""
    major, minor = capability
    cc = major * 10 + minor
    sm, ptx = _arch_numbers(arch_list, "sm"), _arch_numbers(arch_list, "compute")
    facts = {"gpu": gpu, "capability": f"{major}.{minor}", "arch_list": arch_list}
    built = ", ".join(arch_list)
    if any(s // 10 == major and s % 10 <= minor for s in sm):  # cubins run on later minors of the same major
        return Check(name, "OK", f"{gpu}: compute capability {major}.{minor}, kernels in this build", details=facts)
    if any(p <= cc for p in ptx):
        return Check(
            name,
            "WARN",
            f"{gpu}: compute capability {major}.{minor} has no compiled kernels in this build ({built}); "
            "they are compiled from PTX on first use (slow start, cached afterwards)",
            f"install a PyTorch build with sm_{cc} kernels: {_wheel_fix(None)}",
            facts,
        )
    if sm and cc > max(sm):
        fix = f"this GPU is newer than the build: upgrade PyTorch (a build for a newer CUDA): {_wheel_fix(None)}"
    else:
        fix = (
            "this GPU is older than the build supports: install an older PyTorch that lists "
            f"sm_{cc} in torch.cuda.get_arch_list(), or run on the CPU (--device cpu)"
        )
    return Check(
        name,
        "FAIL",
        f"{gpu}: compute capability {major}.{minor} (sm_{cc}) is not in this PyTorch build ({built}): "
        "every kernel fails with 'no kernel image is available'",
        fix,
        facts,
    )


def cuda_checks() -> Iterator[Check]:
    """The CUDA verdict, then the kernels for each usable GPU."""
    import torch

    available = torch.cuda.is_available()
    count = torch.cuda.device_count() if available else 0
    smi = nvidia_smi()
    yield cuda_verdict(
        build_cuda=torch.version.cuda,
        hip=getattr(torch.version, "hip", None),
        available=available,
        count=count,
        smi=smi,
    )
    if not available or getattr(torch.version, "hip", None):  # ROCm names its targets gfx..., not sm_XY
        return
    arch = list(torch.cuda.get_arch_list())
    for i in range(count):
        yield arch_verdict(f"GPU {i} kernels", torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i), arch)
