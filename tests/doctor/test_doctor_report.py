"""napari-unet doctor on this machine (a CPU, no GPU), its report forms and exit status, the bundled model's
checksum, and the napari-side checks (display, Qt binding, OpenGL, npe2 manifest)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from napari_unet._doctor import Check, Report, gui, package, run_doctor
from napari_unet._doctor.report import run_check
from napari_unet.cli import main
from napari_unet.core.model.bundled import _bundled_dir


def test_real_run_here_cpu_ok_no_gpu_is_not_a_failure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--json", "--no-gui"]) == 0
    report = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["exit_code"] == 0 and report["summary"]["FAIL"] == 0
    assert report["versions"]["torch"] and report["versions"]["napari-unet"]
    assert checks["PyTorch"]["status"] == "OK"
    if checks["CUDA"]["details"]["nvidia_smi"] is None and not checks["CUDA"]["details"]["available"]:
        assert checks["CUDA"]["status"] in ("INFO", "WARN") and "no NVIDIA" in checks["CUDA"]["message"]
    assert checks["conv on cpu"]["status"] == "OK" and checks["conv on cpu"]["details"]["float32_ms"] > 0
    assert checks["memory on cpu"]["details"]["tiles"] >= 1
    assert checks["CPU"]["details"]["torch_threads"] >= 1
    assert checks["bundled model nuclei"]["status"] == "OK"


def test_text_report_shows_verdicts_and_fixes(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert out.startswith("napari-unet doctor")
    for name in ("PyTorch", "CUDA", "conv on cpu", "napari", "OpenGL", "plugin manifest", "bundled model nuclei"):
        assert f"  {name}" in out
    assert code == (1 if "\nFAIL" in out else 0)
    assert "failures" in out.splitlines()[-1]


def test_exit_code_and_json_of_a_failing_report() -> None:
    report = Report(
        checks=[Check("a", "OK", "fine"), Check("b", "FAIL", "broken", "do X"), Check("c", "WARN", "meh", "do Y")],
        versions={"torch": "9"},
    )
    assert report.exit_code == 1
    data = json.loads(report.to_json())
    assert data["summary"] == {"OK": 1, "INFO": 0, "WARN": 1, "FAIL": 1}
    assert data["checks"][1] == {"name": "b", "status": "FAIL", "message": "broken", "fix": "do X", "details": {}}
    text = report.to_text()
    assert "fix: do X" in text and "fix: do Y" in text and "FAIL  b" in text
    assert Report(checks=[Check("a", "WARN", "w", "f")], versions={}).exit_code == 0


def test_bad_status_names_the_value() -> None:
    with pytest.raises(ValueError, match="status must be one of OK, INFO, WARN, FAIL, got 'BAD'"):
        Check("x", "BAD", "m")


def test_a_crashing_check_is_a_fail_not_a_crash() -> None:
    def boom() -> list[Check]:
        raise KeyError("nope")

    (check,) = run_check("thing", boom)
    assert check.status == "FAIL" and "KeyError" in check.message and "--json" in check.fix


def test_broken_torch_import_fails_and_skips_device_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    report = run_doctor(gui=False)
    names = [c.name for c in report.checks]
    assert report.checks[0].status == "FAIL" and "import torch failed" in report.checks[0].message
    assert "--force-reinstall torch" in report.checks[0].fix
    assert "CUDA" not in names and "conv on cpu" not in names and report.exit_code == 1


def test_recorded_checksum_matches_the_bundled_model() -> None:
    recorded = package.recorded_checksums(_bundled_dir())
    for name, entry in recorded.items():
        path = _bundled_dir() / name
        assert package.sha256(path) == entry["sha256"], f"update checksums.json for {name}"
        assert path.stat().st_size == entry["bytes"]
    assert set(recorded) == {p.name for p in _bundled_dir().glob("*.safetensors")}


def test_damaged_and_missing_model_files_fail(tmp_path: Path) -> None:
    shutil.copy(_bundled_dir() / "checksums.json", tmp_path / "checksums.json")
    (check,) = package.model_checks(tmp_path)
    assert check.status == "FAIL" and "missing" in check.message and "reinstall" in check.fix
    (tmp_path / "nuclei.safetensors").write_bytes(b"not a model")
    (check,) = package.model_checks(tmp_path)
    assert check.status == "FAIL" and "damaged or was replaced" in check.message
    assert check.details["bytes"] == 11
    (tmp_path / "checksums.json").unlink()
    (check,) = package.model_checks(tmp_path)
    assert check.status == "FAIL" and "checksums.json" in check.message


def test_no_display_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    check = gui.opengl_check()
    assert check.status == "WARN" and "no display" in check.message and "xvfb-run" in check.fix


def test_opengl_failure_and_software_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gui, "has_display", lambda: True)
    monkeypatch.setattr(gui, "probe_opengl", lambda: {"error": "Could not create GL context"})
    check = gui.opengl_check()
    assert check.status == "FAIL" and "Could not create GL context" in check.message and "Mesa" in check.fix
    gl = {"version": "4.5 Mesa", "renderer": "llvmpipe (LLVM 15)", "max_texture": 16384, "qt": "PyQt5"}
    monkeypatch.setattr(gui, "probe_opengl", lambda: gl)
    check = gui.opengl_check()
    assert check.status == "WARN" and "software rendering" in check.message
    monkeypatch.setattr(gui, "probe_opengl", lambda: {**gl, "renderer": "NVIDIA GeForce RTX 4090/PCIe/SSE2"})
    assert gui.opengl_check().status == "OK"


def test_opengl_probe_really_runs_under_the_test_display() -> None:
    if not gui.has_display() or not gui.qt_bindings():
        pytest.skip("no display or Qt binding")
    gl = gui.probe_opengl()
    assert "error" not in gl, gl
    assert gl["version"] and gl["max_texture"] >= 2048


def test_napari_without_qt_binding_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gui, "qt_bindings", lambda: [])
    check = gui.napari_check()
    assert check.status == "FAIL" and "no Qt binding" in check.message and "napari[pyqt5]" in check.fix
    monkeypatch.setattr(gui, "version_of", lambda dist: None)
    assert gui.napari_check().message == "napari is not installed"


def test_manifest_found_by_npe2() -> None:
    check = gui.manifest_check()
    assert check.status == "OK" and check.details["widgets"] == 2 and check.details["readers"] >= 1


def test_doctor_in_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    out = capsys.readouterr().out
    assert "--json" in out and "Exit status 0 when nothing failed" in " ".join(out.split())
