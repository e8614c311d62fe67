"""What the Segment panel shows under Device: the device a run will use and, when that is the CPU although a
GPU is there (a CPU-only PyTorch, a driver too old for it, Rosetta), or a GPU this PyTorch has no kernels for,
why — with the doctor's own verdicts (:func:`.cuda.cuda_verdict`, :func:`.cuda.arch_verdict`,
:func:`.devices.mac_verdict`), so the panel and ``napari-unet doctor`` never disagree. Imports torch: call it
off the Qt thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SEE_DOCTOR = "see `napari-unet doctor`"


@dataclass(frozen=True)
class DeviceNote:
    """``text``: one short line (``"cuda:0 (NVIDIA RTX 4090), bfloat16"``); ``reason``: why a GPU is not used
    or will fail (None when all is well); ``warning``: whether ``reason`` is a problem to show."""

    device: str
    text: str
    reason: str | None = None

    @property
    def warning(self) -> bool:
        return self.reason is not None


def _precision(device: Any) -> str:
    from ..core.inference.planning import resolve_precision

    return str(resolve_precision("auto", device) or "float32").replace("torch.", "")


def _unused_gpu_reason() -> str | None:
    """Why the CPU is used although a GPU is there; None when there is no GPU to use."""
    import torch

    from .cuda import cuda_verdict, nvidia_smi
    from .devices import mac_facts, mac_verdict

    facts = mac_facts()
    if facts is not None:
        mps = getattr(torch.backends, "mps", None)
        verdict = mac_verdict(facts, mps_built=bool(mps and mps.is_built()), mps_available=False)
        return verdict.message if verdict.status in ("WARN", "FAIL") else None
    smi = nvidia_smi()
    if smi is None:
        return None  # no NVIDIA driver: nothing is being missed
    verdict = cuda_verdict(
        build_cuda=torch.version.cuda, hip=getattr(torch.version, "hip", None), available=False, count=0, smi=smi
    )
    return verdict.message if verdict.status in ("WARN", "FAIL") else None


def device_note(choice: Any = "auto") -> DeviceNote:
    """The device ``choice`` (the panel's Device box: auto, cpu, cuda, mps) resolves to, with the reason when a
    GPU is present but not used, or present and unusable."""
    import torch

    from ..core.options import resolve_device
    from .cuda import arch_verdict

    try:
        dev = resolve_device(choice)
    except ValueError as err:
        return DeviceNote(str(choice), "⚠ not available", f"{err}; {SEE_DOCTOR}")
    if dev.type == "cuda":
        index = dev.index or 0
        name = torch.cuda.get_device_name(index)
        text = f"cuda:{index} ({name}), {_precision(dev)}"
        if getattr(torch.version, "hip", None):
            return DeviceNote(str(dev), text)
        verdict = arch_verdict("GPU", name, torch.cuda.get_device_capability(index), list(torch.cuda.get_arch_list()))
        if verdict.status == "FAIL":
            return DeviceNote(str(dev), f"⚠ {text}", f"{verdict.message}; {verdict.fix}; {SEE_DOCTOR}")
        return DeviceNote(str(dev), text)
    text = f"{dev.type}, {_precision(dev)}"
    if dev.type == "cpu" and str(choice).strip().lower() in ("auto", ""):
        reason = _unused_gpu_reason()
        if reason:
            return DeviceNote("cpu", f"⚠ {text} — a GPU is present but not used", f"{reason}; {SEE_DOCTOR}")
    return DeviceNote(str(dev), text)
