"""What a U-Net architecture may be, and the tensors it has, worked out without building it.

A model file's architecture is checked against :data:`LIMITS` and its stored tensor shapes
(from the safetensors header) against :func:`expected_shapes` *before* any network is built:
an edited or corrupt file (``depth: 100``, ``base_features: 1e9``) is refused with a
:class:`~napari_unet.core.model.file.ModelFileError` instead of exhausting memory. The same
limits apply to new networks (:class:`~napari_unet.core.model.unet.UNet`, ``iter_train``).
:func:`nonfinite_tensors` finds NaN/infinite weights by reading the file's raw tensor data.

No torch import: ``napari-unet info`` and the napari panels use this cheaply.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "HEADS",
    "LIMITS",
    "MAX_PARAMETERS",
    "UPSAMPLING_MODES",
    "check_architecture",
    "expected_shapes",
    "nonfinite_tensors",
    "parameter_count",
    "shape_problems",
]

UPSAMPLING_MODES = ("interpolate", "transpose")
#: Output heads a network may carry beside its class logits, in the order their channels follow
#: the classes. ``"distance"``: one logit per pixel whose sigmoid is the distance to the object's
#: boundary divided by the object's largest such distance (0 on the rim and outside, 1 at the centre).
HEADS = ("distance",)
#: Most classes a model may have: the class index of the label features
#: (:mod:`~napari_unet.core.inference.features`) has 7 bits.
MAX_CLASSES = 128
#: Inclusive (minimum, maximum) of the integer architecture values. Depth 8 already needs inputs
#: padded to multiples of 256 px; more classes than 128 cannot be turned into labels.
LIMITS = {"in_channels": (1, 1024), "n_classes": (1, MAX_CLASSES), "depth": (1, 8), "base_features": (1, 1024)}
#: Most learnable parameters a network may have: 500 M, i.e. 2 GB of float32 weights.
MAX_PARAMETERS = 500_000_000

_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _int_in(name: str, value: Any) -> None:
    low, high = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r} ({type(value).__name__})")


def check_architecture(arch: Mapping[str, Any]) -> None:
    """Raise ValueError naming the key when an architecture value is of the wrong type or absurd.

    Checks the keys present among ``in_channels``, ``n_classes``, ``depth``, ``base_features``
    (integers within :data:`LIMITS`), ``ndim`` (2 or 3), ``upsampling``, ``norm`` (a bool) and
    ``heads``; with all of them, also the parameter count (at most :data:`MAX_PARAMETERS`).
    """
    for name in LIMITS:
        if name in arch:
            _int_in(name, arch[name])
    ndim = arch.get("ndim", 2)
    if isinstance(ndim, bool) or not isinstance(ndim, int) or ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {arch['ndim']!r}")
    if "upsampling" in arch and (not isinstance(arch["upsampling"], str) or arch["upsampling"] not in UPSAMPLING_MODES):
        raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}, got {arch['upsampling']!r}")
    if "norm" in arch and not isinstance(arch["norm"], bool):
        raise ValueError(f"norm must be true or false, got {arch['norm']!r}")
    heads = arch.get("heads", [])
    if isinstance(heads, str) or not isinstance(heads, (list, tuple)) or not all(isinstance(h, str) for h in heads):
        raise ValueError(f"heads must be a list of names from {HEADS}, got {heads!r}")
    if any(h not in HEADS for h in heads) or len(set(heads)) != len(heads):
        raise ValueError(f"heads must be distinct names from {HEADS}, got {heads!r}")
    if all(k in arch for k in ("in_channels", "n_classes", "depth", "base_features", "ndim", "upsampling", "norm")):
        n = parameter_count(expected_shapes(arch))
        if n > MAX_PARAMETERS:
            raise ValueError(
                f"a {arch['ndim']}D U-Net of depth {arch['depth']} with {arch['base_features']} base features has "
                f"{n:,} parameters, more than the {MAX_PARAMETERS:,} supported"
            )


def expected_shapes(arch: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The state_dict of ``UNet(**arch)`` as {tensor name: shape}, computed without torch.

    Mirrors :mod:`~napari_unet.core.model.unet`: ``inc``, ``downs.i.1`` and ``ups.j.conv`` are double
    convs (conv [+ BatchNorm], ReLU, twice), ``ups.j.up`` a transposed conv, ``outc`` a 1x1 conv.
    """
    ndim, norm, depth = int(arch["ndim"]), bool(arch["norm"]), int(arch["depth"])
    shapes: dict[str, tuple[int, ...]] = {}

    def double(prefix: str, c_in: int, c_out: int) -> None:
        index = 0
        for c in (c_in, c_out):
            shapes[f"{prefix}.{index}.weight"] = (c_out, c, *(3,) * ndim)
            if norm:
                bn = f"{prefix}.{index + 1}"
                for key in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"{bn}.{key}"] = (c_out,)
                shapes[f"{bn}.num_batches_tracked"] = ()
                index += 3
            else:
                shapes[f"{prefix}.{index}.bias"] = (c_out,)
                index += 2

    features = [int(arch["base_features"]) * 2**i for i in range(depth + 1)]
    double("inc", int(arch["in_channels"]), features[0])
    for i in range(depth):
        double(f"downs.{i}.1", features[i], features[i + 1])
    for j, i in enumerate(reversed(range(depth))):
        c_in, skip = features[i + 1], features[i]
        if arch["upsampling"] == "transpose":
            shapes[f"ups.{j}.up.weight"] = (c_in, c_in // 2, *(2,) * ndim)
            shapes[f"ups.{j}.up.bias"] = (c_in // 2,)
            c_in //= 2
        double(f"ups.{j}.conv", c_in + skip, features[i])
    n_outputs = int(arch["n_classes"]) + len(arch.get("heads") or [])
    shapes["outc.weight"] = (n_outputs, features[0], *(1,) * ndim)
    shapes["outc.bias"] = (n_outputs,)
    return shapes


def parameter_count(shapes: Mapping[str, Sequence[int]]) -> int:
    """Learnable parameters among ``shapes``: all tensors except BatchNorm running statistics."""
    return sum(math.prod(s) for name, s in shapes.items() if not name.endswith(_BUFFERS))


def shape_problems(found: Mapping[str, Sequence[int]], expected: Mapping[str, Sequence[int]]) -> list[str]:
    """What is missing, unexpected or of the wrong shape in ``found`` compared to ``expected``.

    BatchNorm step counters (``num_batches_tracked``) may be missing: writers may drop them.
    """
    missing = [k for k in expected if k not in found and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in found if k not in expected]
    wrong = [
        f"{k} (file {list(found[k])}, architecture {list(expected[k])})"
        for k in expected
        if k in found and tuple(found[k]) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s), e.g. {', '.join(missing[:2])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s), e.g. {', '.join(unexpected[:2])}")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatch(es), e.g. {'; '.join(wrong[:2])}")
    return problems


_FLOATS = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}
_CHUNK = 1 << 24  # elements checked at a time


def nonfinite_tensors(
    path: str | os.PathLike, data_start: int, tensors: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, int]]:
    """(name, count) of the floating-point tensors holding NaN or infinite values.

    Reads the raw tensor data of a safetensors file (``data_start``: where it begins, after the
    header; ``tensors``: the header's entries) through a memory map, without torch.
    """
    bad: list[tuple[str, int]] = []
    floats = [e for e in tensors.values() if e["dtype"] in _FLOATS or e["dtype"] == "BF16"]
    if not any(e["data_offsets"][1] > e["data_offsets"][0] for e in floats):
        return bad
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start)
    try:
        for name, entry in tensors.items():
            dtype = entry["dtype"]
            if dtype not in _FLOATS and dtype != "BF16":
                continue
            begin, end = entry["data_offsets"]
            values = data[begin:end].view(_FLOATS.get(dtype, "<u2"))
            count = 0
            for start in range(0, values.size, _CHUNK):
                chunk = values[start : start + _CHUNK]
                if dtype == "BF16":  # exponent bits all set: inf or NaN
                    count += int(np.count_nonzero((chunk & 0x7F80) == 0x7F80))
                else:
                    count += int(chunk.size - np.count_nonzero(np.isfinite(chunk)))
            if count:
                bad.append((name, count))
    finally:
        del data
    return bad
