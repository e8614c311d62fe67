"""The doctor's verdicts: :class:`Check` (one line of the report) and :class:`Report` (all of them, the
versions, the text and JSON forms and the exit status)."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

#: Verdicts, mildest first. INFO: a fact, nothing to fix (e.g. no GPU on this machine).
STATUSES = ("OK", "INFO", "WARN", "FAIL")


@dataclass(frozen=True)
class Check:
    """One verdict: ``status`` (one of :data:`STATUSES`), what was found and, unless OK, the exact fix.

    ``details`` holds the measured facts (versions, capability, milliseconds) for the JSON report.
    """

    name: str
    status: str
    message: str
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")


def run_check(name: str, function: Callable[[], Iterable[Check]]) -> list[Check]:
    """The checks of ``function``; a check that crashes is itself a FAIL naming the error (the doctor never
    stops half way: a broken install is exactly what it is run on)."""
    try:
        return list(function())
    except Exception as err:  # noqa: BLE001 - reported, not raised
        return [
            Check(
                name,
                "FAIL",
                f"the check itself failed: {type(err).__name__}: {err}",
                "report this with the output of `napari-unet doctor --json`",
            )
        ]


@dataclass
class Report:
    """All checks of one doctor run, with the versions of what napari-unet runs on."""

    checks: list[Check]
    versions: dict[str, str | None]

    @property
    def exit_code(self) -> int:
        """0 when no check failed, 1 otherwise."""
        return 1 if any(c.status == "FAIL" for c in self.checks) else 0

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}

    def to_dict(self) -> dict[str, Any]:
        return {
            "napari_unet_doctor": 1,
            "versions": self.versions,
            "platform": {"system": platform.system(), "machine": platform.machine(), "python": sys.version},
            "summary": self.counts(),
            "exit_code": self.exit_code,
            "checks": [asdict(c) for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_text(self) -> str:
        width = max((len(c.name) for c in self.checks), default=0)
        lines = ["napari-unet doctor — " + ", ".join(f"{k} {v}" for k, v in self.versions.items() if v), ""]
        for c in self.checks:
            lines.append(f"{c.status:<4}  {c.name:<{width}}  {c.message}")
            if c.fix and c.status != "OK":
                lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
        n = self.counts()
        lines.append("")
        lines.append(
            f"{n['OK']} OK, {n['INFO']} info, {n['WARN']} warnings, {n['FAIL']} failures"
            + (" — attach `napari-unet doctor --json` to a bug report" if n["FAIL"] or n["WARN"] else "")
        )
        return "\n".join(lines)
