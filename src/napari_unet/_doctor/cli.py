"""The ``napari-unet doctor [--json] [--no-gui]`` subcommand: its arguments and what it runs."""

from __future__ import annotations

import argparse
from typing import Any


def add_doctor_parser(sub: Any) -> None:
    """Add ``doctor`` to the ``napari-unet`` subcommands (``sub``: argparse's subparsers)."""
    doctor = sub.add_parser(
        "doctor",
        help="check PyTorch, the GPU, napari, OpenGL and the bundled model; print each fix",
        description="Check the installation: OK / INFO / WARN / FAIL per check, with the fix. "
        "Exit status 0 when nothing failed, 1 otherwise.",
    )
    doctor.add_argument("--json", action="store_true", help="print a machine-readable report (for bug reports)")
    doctor.add_argument("--no-gui", action="store_true", help="skip the napari, OpenGL and plugin checks")


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import run_doctor

    report = run_doctor(gui=not args.no_gui)
    print(report.to_json() if args.json else report.to_text(), flush=True)
    return report.exit_code
