"""Device checks: a real small convolution on each device (CPU, every CUDA GPU, Apple MPS), the free memory and
the tile/batch plan the engine would choose there, the CPU's threads and bfloat16, and Apple's MPS and Rosetta.

The plan comes from the engine's own planning functions (:mod:`napari_unet.core.inference.planning`,
:func:`~napari_unet.core.inference.tiling.plan_tiles`), never from a copy of their rules.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .report import Check

if TYPE_CHECKING:
    import torch

#: The image the memory check plans for: a 2048 x 2048 plane.
PLAN_SHAPE = (2048, 2048)


def devices() -> list[torch.device]:
    """The CPU, every usable CUDA GPU, and Apple MPS when usable."""
    import torch

    found = [torch.device("cpu")]
    if torch.cuda.is_available():
        found += [torch.device(f"cuda:{i}") for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append(torch.device("mps"))
    return found


def device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device.index or 0)})"
    return str(device)


def probe_convolution(device: torch.device, autocast: torch.dtype | None = None) -> float:
    """Run a small real 3x3 convolution (batch 2, 4 -> 8 channels, 64 x 64) on ``device``, under
    ``autocast`` when given, and compare it with the CPU in float64; returns the milliseconds of one call.

    Raises
    ------
    ArithmeticError
        The device computed a wrong result.
    RuntimeError
        Whatever torch raised on the device (no kernel image, out of memory, cuDNN errors, ...).
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 64, 64, generator=gen)
    w = torch.randn(8, 4, 3, 3, generator=gen) * 0.2
    reference = F.conv2d(x.double(), w.double(), padding=1)
    xd, wd = x.to(device), w.to(device)

    def once() -> torch.Tensor:
        # no autocast context at all for float32: older torch refuses torch.autocast("mps") even disabled
        context = torch.autocast(device.type, dtype=autocast) if autocast is not None else contextlib.nullcontext()
        with context:
            out = F.conv2d(xd, wd, padding=1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()
        return out

    once()  # first call: kernel selection, lazy initialisation
    start = time.perf_counter()
    out = once()
    ms = (time.perf_counter() - start) * 1000
    error = float((out.double().cpu() - reference).abs().max() / reference.abs().max())
    tolerance = 0.05 if autocast is not None else 1e-3
    if not error <= tolerance:
        raise ArithmeticError(f"the result differs from the CPU's by {error:.3g} (at most {tolerance} expected)")
    return ms


def _conv_fix(device: torch.device, err: BaseException, autocast: torch.dtype | None) -> str:
    text = str(err).lower()
    if "no kernel image" in text:
        return "this PyTorch build has no kernels for this GPU: see the 'GPU kernels' line above"
    if "out of memory" in text:
        return "the GPU is full: close the programs that use it (nvidia-smi lists them) or pass --device cpu"
    if "cudnn" in text:
        return "cuDNN fails: reinstall PyTorch so that its own cuDNN is used (pip install --force-reinstall torch)"
    if autocast is not None:
        return f"{autocast} fails on {device}: choose precision float32 (--precision float32, panel: Advanced)"
    if isinstance(err, ArithmeticError):
        return f"{device} computes wrong results: update its driver; until then pass --device cpu"
    return f"update the {device.type.upper()} driver or reinstall PyTorch; until then pass --device cpu"


def conv_check(device: torch.device) -> Check:
    """:func:`probe_convolution` in float32 and in the precision ``precision="auto"`` picks on ``device``."""
    from ..core.inference.planning import resolve_precision

    name = f"conv on {device}"
    autocast = resolve_precision("auto", device)
    shown = device_name(device)
    details: dict[str, Any] = {"device": shown, "auto_precision": str(autocast or "float32").replace("torch.", "")}
    for dtype in (None, autocast) if autocast is not None else (None,):
        label = str(dtype).replace("torch.", "") if dtype is not None else "float32"
        try:
            details[f"{label}_ms"] = round(probe_convolution(device, dtype), 3)
        except Exception as err:  # noqa: BLE001 - the verdict
            message = f"{shown}: a {label} convolution failed: {type(err).__name__}: {str(err).splitlines()[0]}"
            return Check(name, "FAIL", message, _conv_fix(device, err, dtype), details)
    kinds = " and ".join(k.removesuffix("_ms") for k in details if k.endswith("_ms"))
    return Check(
        name,
        "OK",
        f"{shown}: {kinds} convolutions match a float64 reference ({details['float32_ms']:.2f} ms)",
        details=details,
    )


def plan_check(device: torch.device, model: Any) -> Check:
    """Free memory on ``device`` and the tiles and batch the engine picks there for a 2048 x 2048 image with
    ``model`` (the bundled model)."""
    from ..core.inference.planning import default_tile_and_batch, free_memory, resolve_precision
    from ..core.inference.tiling import plan_tiles

    name = f"memory on {device}"
    free = free_memory(device)
    autocast = resolve_precision("auto", device)
    halo = model.spec.halo if model.spec.halo is not None else model.receptive_radius()
    rows, cols = PLAN_SHAPE
    tile, batch = default_tile_and_batch(model, device, halo, autocast, plane_width=cols, rows=rows)
    plan = plan_tiles(
        PLAN_SHAPE,
        multiple=model.size_multiple,
        tile_size=None,
        halo=halo,
        batch_size=None,
        auto_tile=tile,
        auto_batch=batch,
        needed_halo=halo,
    )
    precision = str(autocast or "float32").replace("torch.", "")

    def px(value: Any) -> str:  # (1104, 1104) -> 1104
        values = sorted(set(value)) if isinstance(value, (tuple, list)) else [value]
        return " x ".join(str(v) for v in values) if len(values) > 1 else str(values[0])

    details = {
        "free_bytes": free,
        "tile": plan.tile_size,
        "batch": plan.batch,
        "tiles": plan.n_tiles,
        "halo": plan.halo,
        "precision": precision,
    }
    message = (
        f"{free / 2**30:.1f} GiB free; a {rows}x{cols} image with the bundled model runs as {plan.n_tiles} "
        f"tile(s) of {px(plan.tile_size)} px (halo {px(plan.halo)}), batch {plan.batch}, {precision}"
    )
    low = (1 << 30) if device.type == "cuda" else (2 << 30)
    if free < low:
        where = (
            "close the programs that use the GPU (nvidia-smi lists them)"
            if device.type == "cuda"
            else ("close other programs; big images then need smaller tiles (--tile-size) and take longer")
        )
        return Check(name, "WARN", message + f" — little memory left (under {low >> 30} GiB)", where, details)
    return Check(name, "OK", message, details=details)


def cpu_check() -> Check:
    """Threads torch uses against the cores this process may use; native bfloat16 (what precision "auto"
    uses on the CPU)."""
    import torch

    from ..core.inference.planning import cpu_has_native_bf16

    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    bf16 = cpu_has_native_bf16()
    details = {"torch_threads": threads, "cores": cores, "native_bf16": bf16, "processor": platform.processor()}
    auto = "bfloat16 (native)" if bf16 else "float32 (no native bfloat16)"
    message = f"{threads} torch thread(s) on {cores} core(s); precision auto on the CPU: {auto}"
    if threads > cores:
        return Check(
            "CPU",
            "WARN",
            message + " — more threads than cores slows every run",
            f"set OMP_NUM_THREADS={cores} before starting napari or napari-unet",
            details,
        )
    if threads == 1 and cores > 1:
        env = os.environ.get("OMP_NUM_THREADS")
        fix = f"unset OMP_NUM_THREADS (now {env!r})" if env else "do not call torch.set_num_threads(1)"
        return Check("CPU", "WARN", message + f" — {cores - 1} core(s) left idle", fix, details)
    return Check("CPU", "OK", message, details=details)


def mac_facts() -> dict[str, Any] | None:
    """On macOS: the machine Python runs as, and whether it is translated by Rosetta; None elsewhere."""
    if platform.system() != "Darwin":
        return None
    try:
        out = subprocess.run(["sysctl", "-n", "sysctl.proc_translated"], capture_output=True, text=True, timeout=5)
        translated = out.stdout.strip() == "1"
    except (OSError, subprocess.TimeoutExpired):
        translated = False
    return {"machine": platform.machine(), "translated": translated, "macos": platform.mac_ver()[0]}


def mac_verdict(facts: dict[str, Any], *, mps_built: bool, mps_available: bool) -> Check:
    """Apple MPS and Rosetta from :func:`mac_facts` and ``torch.backends.mps``."""
    details = {**facts, "mps_built": mps_built, "mps_available": mps_available}
    if facts.get("translated"):
        return Check(
            "MPS",
            "FAIL",
            "this Python is x86_64 running under Rosetta on Apple silicon: no MPS GPU, and an emulated, slow CPU",
            "install an arm64 Python (python.org's universal2 installer, or Miniforge for arm64) and install "
            'napari-unet into it; `python -c "import platform; print(platform.machine())"` must say arm64',
            details,
        )
    if facts.get("machine") != "arm64":
        return Check("MPS", "INFO", "Intel Mac: no MPS GPU; napari-unet runs on the CPU", details=details)
    if not mps_built:
        return Check("MPS", "FAIL", "this PyTorch has no MPS support", "pip install --upgrade torch", details)
    if not mps_available:
        return Check(
            "MPS",
            "WARN",
            f"MPS is built but not available (macOS {facts.get('macos')})",
            "update macOS to 12.3 or later",
            details,
        )
    return Check("MPS", "OK", f"Apple MPS GPU available (macOS {facts.get('macos')})", details=details)


def device_checks() -> Iterator[Check]:
    """CPU, MPS/Rosetta (macOS), then a convolution and the memory plan on every device."""
    import torch

    yield cpu_check()
    facts = mac_facts()
    if facts is not None:
        mps = getattr(torch.backends, "mps", None)
        yield mac_verdict(facts, mps_built=bool(mps and mps.is_built()), mps_available=bool(mps and mps.is_available()))
    model = None
    try:
        from ..core.model.bundled import load_default_model

        model = load_default_model()
    except Exception as err:  # noqa: BLE001 - the model check reports a broken model file
        yield Check(
            "memory plan",
            "WARN",
            f"no memory plan: the bundled model does not load ({err})",
            "see the 'bundled model' line",
        )
    for device in devices():
        conv = conv_check(device)
        yield conv
        if model is not None and conv.status == "OK":
            yield plan_check(device, model)
