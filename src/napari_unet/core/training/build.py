"""The steps of a training run before its first epoch, for :func:`.loop.iter_train`.

- :func:`check_run`: output file and resume checkpoint,
- :func:`start_model`: the model to fine-tune or resume (a copy; the caller's model is not changed)
  and the options it fixes,
- :func:`build`: the data, the network, the patch sampler and the optimiser (:class:`Run`),
- :func:`lr_schedule`: linear warm-up then cosine decay,
- :func:`resume_from`: the optimiser, schedule and history of an interrupted run.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..inference.planning import resolve_precision
from ..model.spec import ModelSpec
from ..model.unet import UNet
from ..options import resolve_device
from .checkpoints import last_paths
from .config import TrainConfig
from .data import PreparedData, Sample, prepare, split
from .patches import PatchSampler
from .state import load_net, load_optimizer_state
from .targets import BOUNDARY_CLASS, DISTANCE_POSTPROCESS, INSTANCE_POSTPROCESS

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What one training run works with: data, network, optimiser and where it stands."""

    cfg: TrainConfig
    dev: torch.device
    autocast: torch.dtype | None
    train_samples: list[Sample]
    val_samples: list[Sample]
    rescaled: bool
    n_classes: int
    net: UNet
    channels_last: bool
    sampler: PatchSampler
    steps_per_epoch: int
    total_steps: int
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    weights: torch.Tensor
    metric_name: str
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float = -math.inf
    start_epoch: int = 1
    step: int = 0


def check_run(output: str | Path | None, resume: bool) -> Path | None:
    """``output`` as a path after checking it (and that a run to resume is there)."""
    if resume and output is None:
        raise ValueError("resume=True needs output= (the model file of the run to resume)")
    if output is None:
        return None
    output = Path(output)
    if output.is_dir():
        raise ValueError(f"output {str(output)!r} is a folder; give a model file name such as model.safetensors")
    if not output.parent.exists():
        raise ValueError(f"output folder {str(output.parent)!r} does not exist")
    if resume:
        last, state_file = last_paths(output)
        if not last.exists() or not state_file.exists():
            raise ValueError(f"nothing to resume: {last.name} and {state_file.name} not found beside {output}")
    return output


def start_model(model: UNet | str | Path | None, cfg: TrainConfig) -> tuple[UNet | None, TrainConfig]:
    """The model to start from (a copy of a passed-in UNet) and ``cfg`` with what that model fixes."""
    if model is None:
        return None, cfg
    base = copy.deepcopy(model) if isinstance(model, UNet) else load_net(model)
    if base.spec.target != cfg.mode:
        raise ValueError(
            f"the model was trained for {base.spec.target!r}; training it in mode {cfg.mode!r} is not possible"
        )
    # a model trained at a common object size keeps it; others see images as they are
    return base, cfg.replace(
        ndim=base.ndim,
        percentiles=base.spec.percentiles,
        distance_head="distance" in base.heads,
        object_size=base.spec.object_size if base.spec.training.get("rescaled") else None,
    )


def _data(
    pairs: Any, val_pairs: Sequence[tuple[Any, Any]] | None, base: UNet | None, cfg: TrainConfig
) -> tuple[PreparedData, list[Sample], list[Sample], bool]:
    n_channels = base.in_channels if base is not None else None
    rescale = cfg.object_size if cfg.mode == "instances" and cfg.ndim == 2 else None
    common = dict(mode=cfg.mode, ndim=cfg.ndim, axes=cfg.axes, channels=cfg.channels, percentiles=cfg.percentiles)
    data = (
        pairs
        if isinstance(pairs, PreparedData)
        else prepare(pairs, n_channels=n_channels, object_size=rescale, **common)
    )
    rescaled = any(s.zoom != 1.0 for s in data.samples) if isinstance(pairs, PreparedData) else rescale is not None
    if val_pairs is not None:
        val_data = prepare(
            val_pairs,
            class_values=data.class_values,
            n_channels=data.n_channels,
            object_size=data.object_size if rescaled else None,
            **common,
        )
        train_samples, val_samples = data.samples, val_data.samples
    else:
        train_samples, val_samples = split(data.samples, cfg.val_fraction, cfg.seed)
    n_classes = len(data.class_names)
    if base is not None and base.n_classes != n_classes:
        raise ValueError(
            f"the model outputs {base.n_classes} classes but the labels give {n_classes} "
            f"({', '.join(data.class_names)})"
        )
    for s in train_samples:
        if min(s.target.shape) < 1:
            raise ValueError(f"empty image {s.name}")
    return data, train_samples, val_samples, rescaled


def _network(data: PreparedData, base: UNet | None, cfg: TrainConfig) -> UNet:
    if base is not None:
        base.spec.size_model = None  # fitted to the old weights: fitted again after training
        if data.object_size and not base.spec.object_size:
            base.spec.object_size = data.object_size
        if cfg.description:
            base.spec.description = cfg.description
        return base
    mode, low_high = cfg.mode, cfg.percentiles
    spec = ModelSpec(
        channel_names=data.channel_names,
        class_names=data.class_names,
        target=mode,
        boundary_class=BOUNDARY_CLASS if mode == "instances" else None,
        normalization={"method": "percentile", "low": low_high[0], "high": low_high[1]},
        axes="ZYX" if cfg.ndim == 3 else "YX",
        object_size=data.object_size,
        description=cfg.description,
        postprocess=(
            dict(DISTANCE_POSTPROCESS if cfg.distance_head else INSTANCE_POSTPROCESS) if mode == "instances" else {}
        ),
    )
    heads = ["distance"] if cfg.distance_head and mode == "instances" else []
    # the initial weights come from ``seed`` without changing the caller's random state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return UNet(
            data.n_channels,
            len(data.class_names),
            depth=cfg.depth,
            base_features=cfg.base_features,
            ndim=cfg.ndim,
            upsampling=cfg.upsampling,
            heads=heads,
            spec=spec,
        )


def lr_schedule(
    opt: torch.optim.Optimizer, total_steps: int, warmup_steps: int, step: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps`` (at most a tenth of the run), then cosine decay to 1 % of the
    peak; ``step``: optimiser steps already done (resuming)."""
    warm = max(1, min(warmup_steps, total_steps // 10))

    def lr_factor(i: int) -> float:
        if i < warm:
            return (i + 1) / warm
        progress = (i - warm) / max(1, total_steps - warm)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    if step:
        return torch.optim.lr_scheduler.LambdaLR(opt, lr_factor, last_epoch=step - 1)
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)


def build(pairs: Any, val_pairs: Sequence[tuple[Any, Any]] | None, base: UNet | None, cfg: TrainConfig) -> Run:
    """Data, network (on the device), patch sampler, optimiser and schedule of a run."""
    dev = resolve_device(cfg.device)
    autocast = resolve_precision(cfg.precision, dev)
    data, train_samples, val_samples, rescaled = _data(pairs, val_pairs, base, cfg)
    net = _network(data, base, cfg)
    if cfg.patch_size % net.size_multiple:
        raise ValueError(f"patch_size {cfg.patch_size} must be a multiple of {net.size_multiple} (2**depth)")
    net.to(dev)
    channels_last = cfg.ndim == 2 and (dev.type == "cuda" or (dev.type == "cpu" and autocast is not None))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    sampler = PatchSampler(
        train_samples,
        cfg.patch_size,
        distance="distance" in net.heads,
        scale_jitter=cfg.scale_jitter if rescaled else 1.0,
    )
    steps_per_epoch = cfg.steps_per_epoch
    if steps_per_epoch is None:
        pixels = sum(s.target.size for s in train_samples)
        steps_per_epoch = int(np.clip(pixels / (cfg.batch_size * cfg.patch_size**cfg.ndim), 10, 200))
    total_steps = cfg.epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return Run(
        cfg=cfg,
        dev=dev,
        autocast=autocast,
        train_samples=train_samples,
        val_samples=val_samples,
        rescaled=bool(rescaled),
        n_classes=len(data.class_names),
        net=net,
        channels_last=channels_last,
        sampler=sampler,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        opt=opt,
        sched=lr_schedule(opt, total_steps, cfg.warmup_steps),
        weights=torch.as_tensor(data.class_weights, device=dev),
        metric_name="AP50" if cfg.mode == "instances" else "mIoU",
    )


def resume_from(run: Run, output: Path) -> None:
    """Load the optimiser state, step, best score and history of the run interrupted at ``output``."""
    saved = load_optimizer_state(last_paths(output)[1], run.opt, run.dev)
    run.start_epoch, run.step = saved["epoch"] + 1, saved["step"]
    run.best, run.history = saved["best"], saved["history"]
    if saved.get("total_steps") != run.total_steps:
        log.warning("resuming with a different schedule (%s vs %s steps)", run.total_steps, saved.get("total_steps"))
    if run.step:
        run.sched = lr_schedule(run.opt, run.total_steps, run.cfg.warmup_steps, run.step)


def training_record(run: Run, version: str) -> dict[str, Any]:
    """The ``training`` record written into the model file (the run's configuration and data)."""
    cfg = run.cfg
    return {
        "software": f"napari-unet {version}",
        "mode": cfg.mode,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "steps_per_epoch": run.steps_per_epoch,
        "patch_size": cfg.patch_size,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "augmentation": cfg.augmentation,
        "elastic": cfg.elastic,
        "train_images": [s.name for s in run.train_samples],
        "val_images": [s.name for s in run.val_samples],
        "data": cfg.data_description,
        "device": str(run.dev),
        "precision": str(run.autocast or "float32"),
        "heads": run.net.heads,
        "rescaled": run.rescaled,
        "scale_jitter": cfg.scale_jitter if run.rescaled else 1.0,
        "noise": cfg.noise,
    }
