"""A training run's state on disk: the network as a model file and the optimiser state beside it.

The optimiser state is safetensors tensors plus JSON (no pickle), written atomically; file names
come from :mod:`.checkpoints`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..image.files import atomic_write
from ..model.unet import UNet


def load_net(model: UNet | str | Path) -> UNet:
    if isinstance(model, UNet):
        return model
    from ..model.file import load_model

    return load_model(model)


def save_net(net: UNet, path: Path, record: dict[str, Any]) -> None:
    from ..model.file import save_model

    # the effective receptive field changes with the weights: measured again when needed
    save_model(net, path, training=record, halo=None)


def best_or_last(net: UNet, output: Path | None) -> UNet:
    if output is not None and Path(output).exists():
        best = load_net(output)
        return best.to(next(net.parameters()).device).eval()
    return net.eval()


def save_optimizer_state(path: Path, opt: torch.optim.Optimizer, meta: dict[str, Any]) -> None:
    """Optimiser state as safetensors tensors + JSON (no pickle), written atomically."""
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    header = {"meta": meta, "groups": groups, "scalars": scalars}
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={"napari_unet_state": json.dumps(header)})


def load_optimizer_state(path: Path, opt: torch.optim.Optimizer, dev: torch.device) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = json.loads((f.metadata() or {})["napari_unet_state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"cannot resume: {path} is not a readable training state ({err})") from err
    state: dict[int, dict[str, Any]] = {}
    for key, value in {**tensors, **header["scalars"]}.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value.to(dev) if torch.is_tensor(value) and name != "step" else value
    opt.load_state_dict({"state": state, "param_groups": header["groups"]})
    return header["meta"]
