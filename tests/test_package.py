"""Package-level rules: the core stays free of GUI imports, importing the package stays light,
the version and the napari manifest are consistent, and the README's test command is what CI runs."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO_ROOT / "src" / "napari_unet"
CORE_DIR = PACKAGE_DIR / "core"

# Top-level modules that pull in napari or a Qt binding; napari_unet._napari is the plugin's own GUI layer.
GUI_MODULES = frozenset(
    {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy", "napari_unet._napari"}
)
IMPORT_FUNCTIONS = frozenset({"import_module", "__import__"})


def _is_gui_module(name: str) -> bool:
    return any(name == mod or name.startswith(mod + ".") for mod in GUI_MODULES)


def _resolve_relative(module: str | None, level: int, package: str) -> str:
    """Absolute name of ``from <level dots><module> import ...`` written inside ``package``."""
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)] if level > 1 else parts
    return ".".join([*base, module] if module else base)


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """Return ``(line, module)`` for every import in ``source``, relative ones resolved against ``package``.

    Also catches ``importlib.import_module("x")`` and ``__import__("x")`` with a literal name.
    For ``from a import b`` both ``a`` and ``a.b`` are reported, so ``from napari_unet import _napari``
    is seen as ``napari_unet._napari``.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(node.module, node.level, package) if node.level else (node.module or "")
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            arg = node.args[0]
            if name in IMPORT_FUNCTIONS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value))
    return found


def gui_imports_in_core() -> list[str]:
    """``"path:line imports module"`` for every GUI import under ``src/napari_unet/core``."""
    offenders = []
    for path in sorted(CORE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR.parent)
        package = ".".join(rel.with_suffix("").parts)
        if path.name != "__init__.py":
            package = package.rsplit(".", 1)[0]
        reported: set[int] = set()
        for line, module in imported_modules(path.read_text(encoding="utf-8"), package):
            if _is_gui_module(module) and line not in reported:
                reported.add(line)
                offenders.append(f"{rel}:{line} imports {module}")
    return offenders


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import napari", True),
        ("import napari.layers as L", True),
        ("from qtpy.QtWidgets import QWidget", True),
        ("import PyQt5", True),
        ("from PySide6 import QtCore", True),
        ("def f():\n    from magicgui import magicgui", True),
        ("import superqt", True),
        ("from .. import _napari", True),
        ("from .._napari.workers import run", True),
        ("import importlib\nimportlib.import_module('napari.utils')", True),
        ("__import__('qtpy')", True),
        ("import numpy\nfrom . import tiling\nfrom ..core import io", False),
        ("import napari_unet_extra\nimport qtpyish", False),
    ],
)
def test_import_scanner_detects_gui_imports(source: str, expected: bool) -> None:
    modules = [m for _, m in imported_modules(source, "napari_unet.core")]
    assert any(_is_gui_module(m) for m in modules) is expected, modules


def test_core_never_imports_napari_or_qt() -> None:
    assert (CORE_DIR / "__init__.py").is_file(), f"{CORE_DIR} is not a package"
    offenders = gui_imports_in_core()
    assert not offenders, (
        "napari_unet.core must stay a plain library (no napari/Qt/magicgui); move GUI code to "
        "napari_unet._napari:\n" + "\n".join(offenders)
    )


def test_import_is_light_and_version_matches_metadata() -> None:
    heavy = ["torch", "napari", "qtpy", "PyQt5", "PySide2", "PySide6", "magicgui", "vispy"]
    code = (
        "import json, sys\n"
        "import napari_unet, napari_unet.core\n"
        f"heavy = {heavy!r}\n"
        "print(json.dumps({'loaded': [m for m in heavy if m in sys.modules],"
        " 'version': napari_unet.__version__}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], f"`import napari_unet` imported {result['loaded']}; import them lazily"
    assert result["version"] == importlib.metadata.version("napari-unet")


def test_napari_manifest_loads_and_points_into_napari_layer() -> None:
    npe2 = pytest.importorskip("npe2")
    from npe2.manifest.utils import import_python_name

    manifest = npe2.PluginManifest.from_distribution("napari-unet")
    assert manifest.name == "napari-unet"
    assert manifest.display_name
    for command in manifest.contributions.commands or []:
        if command.python_name is None:
            continue
        assert command.python_name.startswith("napari_unet._napari."), (
            f"command {command.id} points at {command.python_name}; napari entry points belong in napari_unet._napari"
        )
        assert callable(import_python_name(command.python_name)), command.python_name


def test_readme_test_command_is_what_ci_runs() -> None:
    run_lines = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    ci_commands = [line.split(" || ")[0].strip() for line in run_lines if line.startswith("bash .ci/install")]
    assert len(ci_commands) == 1, ci_commands
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert ci_commands[0] in readme.splitlines(), f"README.md should show the CI test command: {ci_commands[0]}"
