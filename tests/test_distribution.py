"""The package as PyPI and the napari hub see it: the sdist and wheel build and pass ``twine check``, the wheel
carries the models, samples, manifest and icon, ``npe2 validate`` passes, CITATION.cff follows CFF 1.2, the README
shows on PyPI (absolute image and link URLs), Python 3.10-3.13 are declared, and tox takes the CPU torch on Linux.

Building copies the source tree to a temporary folder first, so no ``build/`` or ``*.egg-info`` lands in the
checkout; ``--no-isolation`` builds with the installed setuptools (no network needed)."""

from __future__ import annotations

import email
import importlib.resources
import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
RAW = "https://raw.githubusercontent.com/napari-unet/napari-unet/main/"


def _source_files(root: Path) -> list[Path]:
    """Files of the checkout: tracked and untracked-but-not-ignored (git), else everything but caches."""
    if (root / ".git").exists() and shutil.which("git"):
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True, text=True, check=True
        )
        return [Path(line) for line in out.stdout.splitlines() if (root / line).is_file()]
    skip = {".git", ".venv", "venv", ".tox", "build", "dist", "__pycache__"}
    return [p.relative_to(root) for p in root.rglob("*") if p.is_file() and not skip & set(p.relative_to(root).parts)]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for tool in ("build", "twine"):
        if importlib.util.find_spec(tool) is None:
            pytest.skip(f"{tool} is not installed (it is in the testing extra)")
    src, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for rel in _source_files(REPO_ROOT):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, src / rel)
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("napari_unet-*.whl")
    return wheel


def test_twine_check_passes(dist: Path) -> None:
    files = sorted(str(p) for p in dist.iterdir())
    assert any(f.endswith(".whl") for f in files) and any(f.endswith(".tar.gz") for f in files)
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == len(files)


def test_wheel_contains_models_samples_manifest_and_icon(dist: Path) -> None:
    names = set(zipfile.ZipFile(_wheel(dist)).namelist())
    data = REPO_ROOT / "src" / "napari_unet" / "data"
    expected = {f"napari_unet/data/{p.relative_to(data).as_posix()}" for p in data.rglob("*") if p.is_file()}
    assert "napari_unet/data/models/nuclei.safetensors" in expected
    assert "napari_unet/data/models/checksums.json" in expected
    assert {"napari_unet/data/nuclei_dsb2018.tif", "napari_unet/data/xyc_16bit__nuclei_golgi.tif"} <= expected
    missing = expected - names
    assert not missing, f"the wheel lacks {sorted(missing)}"
    assert {"napari_unet/napari.yaml", "napari_unet/icon.png", "napari_unet/_doctor/__init__.py"} <= names
    # the model inside the wheel is byte for byte the one whose checksum is recorded
    with zipfile.ZipFile(_wheel(dist)) as zf:
        assert (
            zf.read("napari_unet/data/models/nuclei.safetensors") == (data / "models/nuclei.safetensors").read_bytes()
        )


def test_wheel_metadata_for_pypi_and_the_hub(dist: Path) -> None:
    with zipfile.ZipFile(_wheel(dist)) as zf:
        (meta_name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(zf.read(meta_name))
        entry_points = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert meta["Requires-Python"] == ">=3.10"
    classifiers = meta.get_all("Classifier")
    assert {f"Programming Language :: Python :: {v}" for v in PYTHONS} <= set(classifiers)
    assert "Framework :: napari" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL"))
    assert {"User Support", "Bug Tracker", "Documentation", "Source Code"} <= set(urls)
    assert "napari-unet = napari_unet:napari.yaml" in entry_points
    assert meta["Description-Content-Type"] == "text/markdown"
    assert f"]({RAW}docs/images/" in meta.get_payload()


def test_readme_images_and_links_are_absolute() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    relative = re.findall(r"\]\((?!https?://|#)([^)]+)\)", readme)
    assert not relative, f"PyPI cannot show relative URLs; make these absolute: {relative}"
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme):
        assert image.startswith(RAW), image
        assert (REPO_ROOT / image.removeprefix(RAW)).is_file(), f"{image} names no file of the repository"
    assert "napari-unet doctor" in readme


def test_npe2_validate() -> None:
    pytest.importorskip("npe2")
    proc = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-unet"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "valid!" in proc.stdout, proc.stdout + proc.stderr


def test_manifest_icon_is_a_square_png_in_the_package() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((REPO_ROOT / "src" / "napari_unet" / "napari.yaml").read_text(encoding="utf-8"))
    package, resource = manifest["icon"].split(":")
    data = (importlib.resources.files(package) / resource).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == height >= 128


def test_citation_cff_is_cff_1_2() -> None:
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= set(cff)  # the keys CFF 1.2 requires
    from napari_unet import __version__

    assert str(cff["version"]) == __version__, "update CITATION.cff's version with the package's"

    def valid_authors(authors: list) -> bool:
        return bool(authors) and all("name" in a or "family-names" in a for a in authors)

    assert valid_authors(cff["authors"])
    dois = {}
    for ref in cff["references"]:
        assert {"type", "title", "authors"} <= set(ref) and valid_authors(ref["authors"]), ref["title"]
        assert re.fullmatch(r"10\.\d{4,9}/\S+", str(ref["doi"])), ref["doi"]
        dois[ref["title"]] = ref["doi"]
    assert dois["U-Net: Convolutional Networks for Biomedical Image Segmentation"] == "10.1007/978-3-319-24574-4_28"
    assert "10.1038/s41592-019-0612-7" in dois.values()  # DSB2018, as in the model card
    if shutil.which("cffconvert"):  # the reference validator, when installed
        proc = subprocess.run(["cffconvert", "--validate"], cwd=REPO_ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def _tox_pip() -> object:
    spec = importlib.util.spec_from_file_location("tox_pip", REPO_ROOT / ".ci" / "tox_pip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tox_takes_cpu_torch_on_linux_only() -> None:
    tox = (REPO_ROOT / "tox.ini").read_text(encoding="utf-8")
    assert "install_command = python -I {toxinidir}/.ci/tox_pip.py {opts} {packages}" in tox
    assert "py{310,311,312,313}" in tox
    tox_pip = _tox_pip()
    linux = tox_pip.pip_command(["torch==2.13.0"], "linux", {})
    assert linux[3:8] == [
        "install",
        "--index-url",
        "https://download.pytorch.org/whl/cpu",
        "--extra-index-url",
        "https://pypi.org/simple",
    ]
    assert linux[-1] == "torch==2.13.0"
    assert "--index-url" not in tox_pip.pip_command(["torch==2.13.0"], "darwin", {})
    assert "--index-url" not in tox_pip.pip_command(["torchvision-extra", "numpy"], "linux", {})
    assert "--index-url" not in tox_pip.pip_command(["napari-unet[testing]"], "linux", {})
    cuda = tox_pip.pip_command(["torch"], "linux", {"NAPARI_UNET_TORCH_INDEX": "https://x/cu124", "PIP_INDEX_URL": "m"})
    assert cuda[4:8] == ["--index-url", "https://x/cu124", "--extra-index-url", "m"]
