"""``napari-unet doctor``: is PyTorch installed right, is the GPU used, can napari open a window, is the
plugin found and the bundled model intact? Each check says OK, INFO, WARN or FAIL and, unless OK, the
exact fix (see docs/doctor.md).

* :mod:`.report`: :class:`Check`, :class:`Report` (text, JSON, exit status);
* :mod:`.package`: PyTorch imports, bundled model checksums;
* :mod:`.cuda`: the torch build against the NVIDIA driver, GPU compute capability against the build's kernels;
* :mod:`.devices`: a real convolution on every device, free memory and the engine's tile plan, CPU threads
  and bfloat16, Apple MPS and Rosetta;
* :mod:`.gui`: napari and its Qt binding, OpenGL (in a subprocess), the npe2 manifest;
* :mod:`.device_note`: the line the Segment panel shows under Device;
* :mod:`.cli`: the ``doctor`` subcommand.

Outside :mod:`napari_unet.core` because it looks at napari and Qt too; it never imports them into its own
process (OpenGL is probed in a subprocess), and imports torch only when it runs.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Iterable

from .report import STATUSES, Check, Report, run_check

__all__ = ["STATUSES", "Check", "Report", "run_doctor"]


def _versions() -> dict[str, str | None]:
    from .._version import __version__
    from .gui import qt_bindings, version_of

    versions: dict[str, str | None] = {
        "napari-unet": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
    }
    for dist in ("torch", "numpy", "napari", "npe2", "vispy", *qt_bindings()):
        versions[dist] = version_of(dist)
    return versions


def run_doctor(*, gui: bool = True) -> Report:
    """Run every check (``gui=False`` skips napari, OpenGL and the manifest) and return the report."""
    from . import cuda, devices, package
    from . import gui as gui_checks

    checks: list[Check] = [package.torch_check()]
    steps: list[tuple[str, Callable[[], Iterable[Check]]]] = []
    if checks[0].status != "FAIL":
        steps += [("CUDA", cuda.cuda_checks), ("devices", devices.device_checks)]
    if gui:
        steps += [
            ("napari", lambda: [gui_checks.napari_check()]),
            ("OpenGL", lambda: [gui_checks.opengl_check()]),
            ("plugin manifest", lambda: [gui_checks.manifest_check()]),
        ]
    steps.append(("bundled model", package.model_checks))
    for name, step in steps:
        checks += run_check(name, step)
    return Report(checks=checks, versions=_versions())
