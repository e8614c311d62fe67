"""bioimage.io packages (``napari_unet.export(..., format="bioimageio")``): what is inside, bioimageio.core's own
model test on them, and the round trip back into napari-unet (``load_model``, ``segment``)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import napari_unet
from napari_unet.core.image.samples import sample_path
from napari_unet.core.model.file import ModelFileError, describe_model, load_model, read_model_info
from napari_unet.core.model.spec import ModelSpec
from napari_unet.core.model.unet import UNet

pytest.importorskip("onnx")
bioimageio_core = pytest.importorskip("bioimageio.core")
from bioimageio.spec.model import ModelDescr  # noqa: E402

FILES = {
    "rdf.yaml",
    "README.md",
    "cover.png",
    "test_input.npy",
    "test_output.npy",
    "unet_arch.py",
    "weights.pt",
    "weights_torchscript.pt",
    "weights.onnx",
}


def passed(summary) -> bool:
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status == "failed"]
    assert summary.status == "passed", failed
    return True


@pytest.fixture(scope="module")
def bundled_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return napari_unet.export("nuclei", format="bioimageio", output=tmp_path_factory.mktemp("bio") / "nuclei.zip")


def rdf_of(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        return yaml.safe_load(z.read("rdf.yaml"))


def test_bundled_package_contents(bundled_zip: Path) -> None:
    with zipfile.ZipFile(bundled_zip) as z:
        assert set(z.namelist()) == FILES
        x = np.load(z.open("test_input.npy"))
        y = np.load(z.open("test_output.npy"))
        cover = z.read("cover.png")
        readme = z.read("README.md").decode()
    rdf = rdf_of(bundled_zip)
    assert rdf["type"] == "model" and rdf["format_version"] == ModelDescr.implemented_format_version
    assert rdf["license"] == "BSD-3-Clause"
    assert {c.get("doi") for c in rdf["cite"]} == {"10.1007/978-3-319-24574-4_28", "10.1038/s41592-019-0612-7"}
    (inp,) = rdf["inputs"]
    assert [a["type"] for a in inp["axes"]] == ["batch", "channel", "space", "space"]
    assert inp["axes"][1]["channel_names"] == ["nuclei"]
    assert inp["axes"][2]["size"] == {"min": 176, "step": 16}  # multiples of 2**4, more than twice the halo
    (scale,) = [p for p in inp["preprocessing"] if p["id"] == "scale_range"]
    assert scale["kwargs"]["axes"] == ["y", "x"]  # per channel, over the whole image
    assert (scale["kwargs"]["min_percentile"], scale["kwargs"]["max_percentile"]) == (1.0, 99.8)
    (out,) = rdf["outputs"]
    assert out["axes"][1]["channel_names"] == ["background", "interior", "boundary", "distance"]
    assert out["axes"][2]["halo"] == 80
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript", "onnx"}
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] == "UNet"
    ours = rdf["config"]["napari_unet"]
    model = napari_unet.load_model("nuclei")
    assert ours["architecture"] == model.config and ours["postprocess"] == model.spec.postprocess
    assert ModelSpec.from_dict(ours["spec"]) == model.spec
    # test tensors: a 256x256 crop of the sample, and the probabilities the model gives it
    assert x.shape == (1, 1, 256, 256) and y.shape == (1, 4, 256, 256)
    assert np.allclose(y[:, :3].sum(1), 1, atol=1e-5) and y.min() >= 0 and y.max() <= 1
    assert cover[:8] == b"\x89PNG\r\n\x1a\n"
    assert "scale_range" in readme and "probabilities" in readme


def test_bundled_package_passes_bioimageio_core_test(bundled_zip: Path) -> None:
    assert passed(bioimageio_core.test_model(bundled_zip))


def test_bundled_package_round_trip(bundled_zip: Path) -> None:
    original, loaded = napari_unet.load_model("nuclei"), napari_unet.load_model(bundled_zip)
    assert loaded.spec == original.spec and loaded.config == original.config
    x = torch.rand(1, 1, 48, 70)
    with torch.no_grad():
        assert torch.equal(loaded(x), original(x))
    assert read_model_info(bundled_zip)["architecture"] == original.config
    assert "exported by napari-unet" in describe_model(bundled_zip)
    import tifffile

    image = tifffile.imread(sample_path("nuclei"))[:200, :200]
    labels = napari_unet.segment(image, model=str(bundled_zip))
    assert labels.max() > 5 and np.array_equal(labels, napari_unet.segment(image, model="nuclei"))


def test_tiny_3d_model_package_passes_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = UNet(2, 2, depth=2, base_features=4, ndim=3, upsampling="transpose").eval()
    model.spec.channel_names = ["DAPI", "membrane (GFP)"]
    model.spec.halo = 6
    out = napari_unet.export(
        model,
        format="bioimageio",
        output=tmp_path / "tiny.zip",
        authors=["A. Person"],
        license="MIT",
        name="tiny 3D test model",
    )
    rdf = rdf_of(out)
    assert rdf["name"] == "tiny 3D test model"
    assert [a["id"] for a in rdf["inputs"][0]["axes"][2:]] == ["z", "y", "x"]
    assert rdf["inputs"][0]["axes"][1]["channel_names"] == ["DAPI", "membrane_GFP"]
    assert rdf["license"] == "MIT" and rdf["authors"] == [{"name": "A. Person"}]
    assert passed(bioimageio_core.test_model(out))
    loaded = load_model(out)
    x = torch.rand(1, 2, 9, 12, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_foreign_zip_is_refused_saying_what_is_supported(tmp_path: Path, bundled_zip: Path) -> None:
    foreign = tmp_path / "other.zip"
    rdf = rdf_of(bundled_zip)
    del rdf["config"]["napari_unet"]
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("rdf.yaml", yaml.safe_dump(rdf))
    with pytest.raises(
        ModelFileError, match=r"bioimage.io package .* not made by napari-unet .* exported by napari-unet"
    ):
        load_model(foreign)
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as z:
        z.writestr("a.txt", "x")
    with pytest.raises(ModelFileError, match="not a bioimage.io package"):
        napari_unet.load_model(plain)
    with pytest.raises(ModelFileError, match="not a bioimage.io package"):
        read_model_info(plain)


def test_package_with_bad_weights_is_refused(tmp_path: Path, bundled_zip: Path) -> None:
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bundled_zip) as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "weights.pt":
                state = torch.load(src.open(name), weights_only=True)
                state["outc.weight"] = state["outc.weight"][:2]
                buf = __import__("io").BytesIO()
                torch.save(state, buf)
                data = buf.getvalue()
            dst.writestr(name, data)
    with pytest.raises(ModelFileError, match="do not match the architecture"):
        load_model(bad)


def test_bioimageio_output_must_be_a_zip_and_is_atomic(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="package name 'tiny' is too short"):
        napari_unet.export("nuclei", format="bioimageio", output=tmp_path / "m.zip", name="tiny")
    with pytest.raises(ValueError, match=r"a bioimage.io package is a .zip file, got output '.*m.bioimage'"):
        napari_unet.export("nuclei", format="bioimageio", output=tmp_path / "m.bioimage")
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == "[]"
