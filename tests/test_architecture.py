"""The layering of ``napari_unet.core`` (docs/architecture.md) and the size of source modules.

Layers, lowest first: ``image`` ← ``model`` ← ``inference`` ← ``labels`` ← ``segment`` ← ``training`` ←
``blocks`` (block-wise runs on dask.distributed) and ``export`` (bioimage.io / TorchScript / ONNX), side by side.
A module may import its own layer and the layers below it, never one above. ``options`` and
``progress`` (top of core) are shared by every layer and import only ``image`` and ``model``.
Nothing in core imports napari, a Qt binding, magicgui, superqt or the rest of the package
(``napari_unet.api``, ``napari_unet.cli``, ``napari_unet._napari``).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO_ROOT / "src" / "napari_unet"
CORE_DIR = PACKAGE_DIR / "core"
CORE = "napari_unet.core"

#: Rank of every part of core: a module may import parts of equal or lower rank.
LAYERS = {"image": 0, "model": 1, "inference": 2, "labels": 3, "segment": 4, "training": 5, "blocks": 6, "export": 6}
#: Top-of-core modules every layer may use; they import only these layers.
SHARED = {"options": {"image", "model"}, "progress": set()}
#: Modules outside core that core may import.
OUTSIDE_ALLOWED = {"napari_unet", "napari_unet.__version__", "napari_unet._version", "napari_unet._version.__version__"}
FORBIDDEN = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy")

#: Most lines a module under src/ may have.
MAX_LINES = 400
#: Modules still over MAX_LINES (to be split; do not add to this list).
OVERSIZED: set[str] = set()


def _package_of(path: Path) -> str:
    dotted = ".".join(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return dotted.removesuffix(".__init__") if path.name == "__init__.py" else dotted.rsplit(".", 1)[0]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` for every import in ``path`` (relative ones resolved; for
    ``from a import b`` both ``a`` and ``a.b``), including imports inside functions."""
    package = _package_of(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def part_of(module: str) -> str | None:
    """The layer or shared module of a ``napari_unet.core`` module name (None for core itself)."""
    rest = module[len(CORE) + 1 :] if module.startswith(CORE + ".") else ""
    return rest.split(".")[0] or None


def _is_module(module: str) -> bool:
    """Whether ``napari_unet.core.<part>...`` names a module or package (not a function in one)."""
    rel = Path(*module.split(".")[1:])
    return (PACKAGE_DIR / rel).with_suffix(".py").is_file() or (PACKAGE_DIR / rel / "__init__.py").is_file()


def layering_problems() -> list[str]:
    problems = []
    for path in sorted(CORE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR.parent)
        module = _package_of(path) + ("" if path.name == "__init__.py" else "." + path.stem)
        here = part_of(module)
        for line, module in imports_of(path):
            where = f"{rel}:{line} imports {module}"
            if any(module == gui or module.startswith(gui + ".") for gui in FORBIDDEN):
                problems.append(f"{where} (GUI library)")
            elif module.startswith("napari_unet") and not module.startswith(CORE + ".") and module != CORE:
                if module not in OUTSIDE_ALLOWED:
                    problems.append(f"{where} (outside napari_unet.core)")
            elif module.startswith(CORE + ".") and _is_module(module) and here is not None:
                there = part_of(module)
                if there == here:
                    continue
                if here in SHARED:
                    ok = there in SHARED[here] or there in SHARED
                else:
                    ok = there in SHARED or LAYERS.get(there, 99) <= LAYERS[here]
                if not ok:
                    problems.append(f"{where} ({here} may not import {there})")
    return problems


def test_every_part_of_core_has_a_place_in_the_layering() -> None:
    parts = {
        p.stem if p.is_file() else p.name
        for p in CORE_DIR.iterdir()
        if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()
    }
    assert parts == set(LAYERS) | set(SHARED)


def test_core_layers_import_only_downwards() -> None:
    problems = layering_problems()
    assert not problems, "imports against the layering of docs/architecture.md:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("rel", "source", "bad"),
    [
        ("model/unet.py", "from ..inference import fastnet", True),
        ("model/unet.py", "def f():\n    from ..inference.sizing import CROP", True),
        ("image/io.py", "from ..model.file import load_model", True),
        ("inference/run.py", "from ..labels.postprocess import MODES", True),
        ("labels/postprocess.py", "from ..segment import iter_segment", True),
        ("options.py", "from .inference.planning import plan_for", True),
        ("image/io.py", "import qtpy", True),
        ("image/io.py", "from ... import _napari", True),
        ("image/io.py", "from napari_unet import api", True),
        ("inference/run.py", "from ..image.layout import Layout\nfrom ..model.unet import UNet", False),
        ("inference/run.py", "from ..progress import drain\nfrom ..options import check_bool", False),
        ("training/loop.py", "from ..segment import iter_segment\nfrom ... import __version__", False),
        ("segment.py", "from .labels.postprocess import MODES\nfrom .options import check_bool", False),
        ("segment.py", "def f():\n    from .blocks.run import segment_blocks", True),
        ("training/loop.py", "from ..blocks.stitch import merge", True),
        ("blocks/run.py", "from ..segment import iter_segment\nfrom ..labels.postprocess import MODES", False),
        ("training/loop.py", "from ..export.run import export_model", True),
        ("export/run.py", "from ..segment import iter_segment\nfrom ..model.file import load_model", False),
    ],
)
def test_layering_check_catches_upward_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rel: str, source: str, bad: bool
) -> None:
    package = tmp_path / "napari_unet"
    shutil.copytree(CORE_DIR, package / "core", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("_version.py", "__init__.py"):
        shutil.copy(PACKAGE_DIR / name, package / name)
    (package / "core" / rel).write_text(source, encoding="utf-8")
    monkeypatch.setitem(globals(), "PACKAGE_DIR", package)
    monkeypatch.setitem(globals(), "CORE_DIR", package / "core")
    assert bool(layering_problems()) is bad


def test_source_modules_stay_small() -> None:
    sizes = {
        str(p.relative_to(PACKAGE_DIR.parent)): len(p.read_text(encoding="utf-8").splitlines())
        for p in PACKAGE_DIR.rglob("*.py")
    }
    too_long = sorted(f"{name}: {n} lines" for name, n in sizes.items() if n > MAX_LINES and name not in OVERSIZED)
    assert not too_long, f"split modules over {MAX_LINES} lines:\n" + "\n".join(too_long)
    fixed = sorted(name for name in OVERSIZED if sizes.get(name, 0) <= MAX_LINES)
    assert not fixed, f"now at most {MAX_LINES} lines, remove from OVERSIZED: {fixed}"
