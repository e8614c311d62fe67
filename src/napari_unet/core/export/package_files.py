"""The files inside a bioimage.io package besides its description: test tensors, cover, README, weights.

Plain numpy / torch; the description itself is built in :mod:`.bioimageio`.
"""

from __future__ import annotations

import math
import pathlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from ..model.unet import UNet

#: Added to ``high - low`` when scaling inputs to the percentile range (bioimage.io's scale_range ``eps``).
EPS = 1e-6
#: Test images of 2D models: this many pixels per side at least (3D: a quarter of it).
TEST_SIZE_2D = 256

CITE_UNET = (
    "Ronneberger, O., Fischer, P. & Brox, T. U-Net: Convolutional Networks for Biomedical Image Segmentation. "
    "MICCAI 2015, LNCS 9351, 234-241 (2015).",
    "10.1007/978-3-319-24574-4_28",
)
CITE_DSB2018 = (
    "Caicedo, J. C. et al. Nucleus segmentation across imaging experiments: the 2018 Data Science Bowl. "
    "Nature Methods 16, 1247-1253 (2019).",
    "10.1038/s41592-019-0612-7",
)


def halo_of(model: UNet) -> int:
    """The halo napari-unet's tiler would use: the stored one, else the measured effective receptive radius
    (:func:`~napari_unet.core.inference.halo.auto_halo`), never left out because a file carries none."""
    from ..inference.halo import auto_halo

    return int(auto_halo(model))


def size_rule(model: UNet) -> tuple[int, int]:
    """``(min, step)`` of the spatial sizes: multiples of ``2**depth``, more than twice the halo."""
    step = model.size_multiple
    halo = halo_of(model)
    return step * max(1, math.ceil((2 * halo + 1) / step)), step


def test_input(model: UNet) -> np.ndarray:
    """The raw test input (1, C, *spatial), float32: a crop of the bundled nuclei sample for one-channel 2D
    models, else a seeded random image of blobs."""
    low, step = size_rule(model)
    size = max(low, (TEST_SIZE_2D if model.ndim == 2 else TEST_SIZE_2D // 4) // step * step)
    if model.ndim == 2 and model.in_channels == 1:
        import tifffile

        from ..image.samples import sample_path

        image = tifffile.imread(sample_path("nuclei")).astype(np.float32)
        if image.ndim == 2 and min(image.shape) >= size:
            return image[None, None, :size, :size].copy()
    rng = np.random.default_rng(0)
    shape = (model.in_channels, *([size] * model.ndim))
    from scipy.ndimage import gaussian_filter

    blobs = gaussian_filter(rng.random(shape).astype(np.float32), sigma=(0, *([3] * model.ndim)))
    return (blobs * 1000)[None].astype(np.float32)


def scale_range(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Per sample and channel: ``(x - p_low) / (p_high - p_low + EPS)`` over the spatial axes (bioimage.io's
    ``scale_range`` with ``axes`` = the spatial axes)."""
    spatial = tuple(range(2, x.ndim))
    lo = np.percentile(x, low, axis=spatial, keepdims=True)
    hi = np.percentile(x, high, axis=spatial, keepdims=True)
    return ((x - lo) / (hi - lo + EPS)).astype(np.float32)


def run_network(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy().astype(np.float32)


def cover_png(path: pathlib.Path, model: UNet, image: np.ndarray, probabilities: np.ndarray) -> None:
    """The test input beside it with the labels napari-unet makes from ``probabilities`` outlined (2:1 PNG)."""
    import imageio.v3 as iio

    from ..image.overlay import overlay_rgb
    from ..labels.postprocess import labels_from_probabilities

    spec = model.spec
    mode = "instances" if spec.target == "instances" and model.n_classes > 1 else "semantic"
    labels = labels_from_probabilities(
        probabilities[0],
        mode=mode,
        boundary_class=spec.boundary_class,
        spatial_ndim=model.ndim,
        distance_channel=model.head_channel("distance"),
        **{k: v for k, v in spec.postprocess.items() if v is not None or k == "foreground_threshold"},
    )
    plane = image[0, 0]
    if model.ndim == 3:  # the middle plane of a volume
        plane, labels = plane[plane.shape[0] // 2], labels[labels.shape[0] // 2]
    overlay = overlay_rgb(plane, np.asarray(labels))
    raw = overlay_rgb(plane, np.zeros(plane.shape, np.int32))
    iio.imwrite(path, np.concatenate([raw, overlay], axis=1), extension=".png")


def readme(model: UNet, *, name: str, builtin: str | None, formats: list[str]) -> str:
    """The package's documentation (README.md)."""
    spec = model.spec
    arch = model.config
    low, high = spec.percentiles
    outputs = list(spec.class_names) + model.heads
    training = spec.training or {}
    lines = [
        f"# {name}",
        "",
        spec.description or "A U-Net segmentation model made with napari-unet.",
        "",
        "Exported by [napari-unet](https://github.com/napari-unet/napari-unet) "
        f"({'its built-in model ' + repr(builtin) if builtin else 'a model file'}).",
        "",
        "## Input",
        "",
        f"- {model.in_channels} channel(s): {', '.join(spec.channel_names)}; axes batch, channel, "
        f"{', '.join(spec.axes.lower())}; float32.",
        f"- Preprocessing: per channel, the {low:g} and {high:g} percentiles over the whole image are mapped "
        "to 0 and 1 (`scale_range`). Normalise the **whole image** this way before tiling, as napari-unet does.",
        f"- Spatial size: any multiple of {model.size_multiple} from {size_rule(model)[0]} pixels up.",
        "",
        "## Output",
        "",
        f"- One tensor, `probabilities`, channels: {', '.join(outputs)}.",
        "- The network outputs **probabilities**: softmax over the classes"
        + (" (sigmoid for the single class)" if model.n_classes == 1 else "")
        + (f", then a sigmoid for {', '.join(model.heads)}" if model.heads else "")
        + ". The activations are inside the weights, so no postprocessing step is needed.",
        f"- Halo: {halo_of(model)} pixels per side — crop that much of each tile's border when tiling.",
        "",
        "## Labels",
        "",
        f"napari-unet's own post-processing (target: {spec.target}"
        + (f", boundary class {spec.boundary_class}" if spec.boundary_class is not None else "")
        + ") is stored under `config.napari_unet` in `rdf.yaml`; "
        "`napari_unet.load_model(this_zip)` loads the package back into napari-unet with it. "
        + (
            "Instance labels: seeds where the interior (or distance) probability is high, a watershed over the "
            "foreground, the boundary class separating touching objects."
            if spec.target == "instances"
            else "Semantic labels: the most probable class per pixel."
        ),
        "",
        "## Network",
        "",
        f"U-Net ({arch['ndim']}D, depth {arch['depth']}, {arch['base_features']} base features, "
        f"{arch['upsampling']} upsampling, {'with' if arch['norm'] else 'without'} BatchNorm), "
        f"{sum(p.numel() for p in model.parameters()):,} parameters. Weights: {', '.join(formats)} "
        "(the same network; the pytorch_state_dict architecture is `unet_arch.py` in this package).",
    ]
    if training:
        lines += ["", "## Training", ""]
        lines += [f"- {k}: {v}" for k, v in training.items() if not isinstance(v, (dict, list))]
    metrics = training.get("metrics") if isinstance(training.get("metrics"), dict) else {}
    lines += ["", "## Validation", ""]
    lines += [f"- {k}: {v}" for k, v in metrics.items()] or ["- no metrics recorded in the model file"]
    lines += [
        "- The package was checked with bioimageio.core's model test in napari-unet's test suite "
        "(test tensors reproduced by all three weight formats, several input sizes and batch sizes)."
    ]
    if builtin:
        lines += [
            "",
            "Trained on DSB2018 (BBBC038v1, CC0 1.0; Caicedo et al. 2019). See napari-unet's docs/model-card.md.",
        ]
    return "\n".join(lines) + "\n"


def napari_unet_config(model: UNet) -> dict[str, Any]:
    """What ``config.napari_unet`` holds: enough to load the package back into napari-unet."""
    from ..._version import __version__
    from ..model.header import FORMAT, FORMAT_VERSION

    spec = model.spec.to_dict()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "napari_unet_version": __version__,
        "architecture": dict(model.config),
        "spec": spec,
        "postprocess": spec.get("postprocess") or {},
        "object_size": spec.get("object_size"),
        "weights_output": "probabilities",
    }
