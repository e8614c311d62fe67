"""The training loop as a generator of events.

:func:`iter_train` yields :class:`TrainEvent` objects (``start``, ``step``, ``epoch``,
``preview``, ``done``) and returns the trained model (the best checkpoint's weights when a
validation set exists). :func:`train` runs it to the end.

Checkpoints are model files written atomically: the best model at ``output`` and the last
epoch at ``<output stem>.last.safetensors`` with its optimiser state beside it in
``<output stem>.last.state.safetensors`` (tensors + JSON, no pickle), so an interrupted run
can be resumed with ``resume=True``. Cancelling (closing the generator, or the napari Stop
button) stops within one step and leaves the last good checkpoints as they are.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ..inference.planning import resolve_precision
from ..inference.run import iter_predict
from ..labels.postprocess import labels_from_probabilities
from ..model.spec import ModelSpec
from ..model.unet import UNet
from ..options import check_training_options, resolve_device
from ..progress import drain
from .augment import augment
from .checkpoints import last_paths  # was defined here; ``loop.last_paths`` still works
from .data import PreparedData, Sample, prepare, split
from .guards import check_loss, check_written
from .losses import ce_dice_loss, distance_loss
from .metrics import ap_counts, mean_iou, summarize_ap
from .patches import PatchSampler, Prefetcher
from .state import best_or_last, load_net, load_optimizer_state, save_net, save_optimizer_state
from .targets import BOUNDARY_CLASS, DISTANCE_POSTPROCESS, INSTANCE_POSTPROCESS

log = logging.getLogger(__name__)


@dataclass
class TrainEvent:
    """One thing that happened during training.

    Attributes
    ----------
    kind : str
        ``"start"``, ``"step"``, ``"epoch"`` (after validation and checkpointing),
        ``"preview"`` (``preview`` holds labels), ``"done"``.
    epoch, epochs : int
        Current epoch (1-based) and the total planned.
    step, total_steps : int
        Optimiser steps done and planned.
    loss : float or None
        Training loss (running mean over the epoch so far).
    val_loss : float or None
    metrics : dict
        ``AP50``/``mAP`` (instances) or ``mIoU`` (semantic) on the validation set, plus timing
        (``steps_per_s``, ``data_wait_share``).
    lr : float
    eta_s, elapsed_s : float
    checkpoint : Path or None
        Model file written at this event (best or last).
    improved : bool
        This epoch's validation metric is the best so far.
    preview : ndarray or None
    message : str
    """

    kind: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    val_loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    lr: float = 0.0
    eta_s: float = 0.0
    elapsed_s: float = 0.0
    checkpoint: Path | None = None
    improved: bool = False
    preview: np.ndarray | None = None
    message: str = ""


def iter_train(  # noqa: C901
    pairs: Sequence[tuple[Any, Any]] | PreparedData,
    *,
    val_pairs: Sequence[tuple[Any, Any]] | None = None,
    val_fraction: float = 0.15,
    mode: str = "instances",
    output: str | Path | None = None,
    model: UNet | str | Path | None = None,
    resume: bool = False,
    depth: int = 4,
    base_features: int = 32,
    ndim: int = 2,
    upsampling: str = "interpolate",
    epochs: int = 50,
    steps_per_epoch: int | None = None,
    patch_size: int = 256,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    dice_weight: float = 1.0,
    patience: int | None = None,
    warmup_steps: int = 100,
    augmentation: bool = True,
    elastic: bool = False,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    axes: str | None = None,
    channels: Sequence[int | str] | int | str | None = None,
    percentiles: tuple[float, float] = (1.0, 99.8),
    preview_every: int = 0,
    preview_image: Any = None,
    preview_axes: str | None = None,
    description: str = "",
    data_description: str = "",
    distance_head: bool = True,
    object_size: float | str | None = "auto",
    scale_jitter: float = 1.25,
    noise: bool = True,
) -> Generator[TrainEvent, None, UNet]:
    """Train a U-Net, yielding progress events; returns the model.

    Parameters
    ----------
    pairs : sequence of (image, labels), or PreparedData
        Arrays, napari layers or TIFF paths (see :func:`.data.prepare`), or data prepared already.
    val_pairs : sequence of (image, labels), optional
        Explicit validation data; otherwise ``val_fraction`` of the samples (fixed ``seed``).
    mode : {"instances", "semantic"}
        Instance mode trains background / interior / boundary for touching objects.
    output : path, optional
        Where the best model file goes (and the ``.last`` checkpoint beside it).
    model : UNet or path, optional
        Fine-tune this model (its architecture, channels and normalisation are kept).
    resume : bool
        Continue the run whose ``.last`` checkpoint sits beside ``output``.
    depth, base_features, ndim, upsampling
        Architecture of a new model.
    epochs, steps_per_epoch, patch_size, batch_size, lr, weight_decay, dice_weight
        Optimisation. ``steps_per_epoch`` defaults to about one pass over the training pixels,
        between 10 and 200 steps. AdamW, linear warm-up then cosine decay to 1 % of ``lr``.
    patience : int, optional
        Stop when the validation metric has not improved for this many epochs.
    augmentation, elastic, noise : bool
        Flips, 90° rotations, intensity changes (and Gaussian noise with ``noise``); optional
        elastic deformation.
    device, precision
        As for inference; ``"auto"`` trains with bfloat16 autocast on CUDA and on CPUs with
        native bfloat16 instructions (AVX-512 BF16, AMX), channels-last for 2D networks.
    distance_head : bool
        New instance models: also learn the normalised distance to each object's rim, whose
        seeds and watershed split touching objects (see :mod:`~napari_unet.core.inference.features`).
    object_size : float, "auto" or None
        New 2D instance models: zoom every training image so its median object diameter is
        this many pixels (``"auto"``: the median over all training images); the model records
        it and new images are zoomed to it. None: images as they are.
    scale_jitter : float
        With ``object_size``: patches are zoomed by a random factor in
        ``[1 / scale_jitter, scale_jitter]`` (1: none).
    seed : int
        Seeds the split, the initial weights, patch sampling and augmentation.
    preview_every : int
        Every that many epochs, segment ``preview_image`` (axes ``preview_axes``) and yield a
        ``preview`` event.
    """
    t_start = time.perf_counter()
    o = check_training_options(
        epochs=epochs, steps_per_epoch=steps_per_epoch, patch_size=patch_size, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, dice_weight=dice_weight, patience=patience, warmup_steps=warmup_steps,
        val_fraction=val_fraction, seed=seed, preview_every=preview_every, ndim=ndim, mode=mode, depth=depth,
        base_features=base_features, device=device, precision=precision, channels=channels, axes=axes,
        resume=resume, augmentation=augmentation, elastic=elastic, noise=noise, distance_head=distance_head,
    )
    epochs, steps_per_epoch = o["epochs"], o["steps_per_epoch"]
    patch_size, batch_size = o["patch_size"], o["batch_size"]
    lr, weight_decay, dice_weight, patience = o["lr"], o["weight_decay"], o["dice_weight"], o["patience"]
    warmup_steps, val_fraction = o["warmup_steps"], o["val_fraction"]
    seed, preview_every = o["seed"], o["preview_every"]
    ndim, depth, base_features = o["ndim"], o["depth"], o["base_features"]
    dev = resolve_device(device)
    autocast = resolve_precision(precision, dev)
    if resume and output is None:
        raise ValueError("resume=True needs output= (the model file of the run to resume)")
    if output is not None:
        output = Path(output)
        if output.is_dir():
            raise ValueError(f"output {str(output)!r} is a folder; give a model file name such as model.safetensors")
        if not output.parent.exists():
            raise ValueError(f"output folder {str(output.parent)!r} does not exist")

    if resume:
        last, state_file = last_paths(output)  # type: ignore[arg-type]
        if not last.exists() or not state_file.exists():
            raise ValueError(f"nothing to resume: {last.name} and {state_file.name} not found beside {output}")
        model = last
    base_model: UNet | None = load_net(model) if model is not None else None
    if object_size is not None and object_size != "auto" and (
        isinstance(object_size, (bool, str)) or not np.isfinite(object_size) or object_size <= 0
    ):
        raise ValueError(f"object_size must be a positive number of pixels, 'auto' or None, got {object_size!r}")
    if isinstance(scale_jitter, bool) or not isinstance(scale_jitter, (int, float)) or not 1 <= scale_jitter <= 4:
        raise ValueError(f"scale_jitter must be a number in 1..4, got {scale_jitter!r}")
    if base_model is not None:
        ndim = base_model.ndim
        percentiles = base_model.spec.percentiles
        distance_head = "distance" in base_model.heads
        # a model trained at a common object size keeps it; others see images as they are
        object_size = base_model.spec.object_size if base_model.spec.training.get("rescaled") else None
        if base_model.spec.target != mode:
            raise ValueError(
                f"the model was trained for {base_model.spec.target!r}; training it in mode {mode!r} is not possible"
            )

    # ---------------------------------------------------------------- data
    yield TrainEvent("start", epochs=epochs, message="preparing data (normalisation, targets)")
    n_channels = base_model.in_channels if base_model is not None else None
    rescale = object_size if mode == "instances" and ndim == 2 else None
    data = pairs if isinstance(pairs, PreparedData) else prepare(
        pairs, mode=mode, ndim=ndim, axes=axes, channels=channels, percentiles=percentiles,
        n_channels=n_channels, object_size=rescale,
    )
    if isinstance(pairs, PreparedData):
        rescaled = any(s.zoom != 1.0 for s in data.samples)
    else:
        rescaled = rescale is not None
    if val_pairs is not None:
        val_data = prepare(val_pairs, mode=mode, ndim=ndim, axes=axes, channels=channels,
                           percentiles=percentiles, class_values=data.class_values, n_channels=data.n_channels,
                           object_size=data.object_size if rescaled else None)
        train_samples, val_samples = data.samples, val_data.samples
    else:
        train_samples, val_samples = split(data.samples, val_fraction, seed)
    n_classes = len(data.class_names)
    if base_model is not None and base_model.n_classes != n_classes:
        raise ValueError(
            f"the model outputs {base_model.n_classes} classes but the labels give {n_classes} "
            f"({', '.join(data.class_names)})"
        )
    for s in train_samples:
        if min(s.target.shape) < 1:
            raise ValueError(f"empty image {s.name}")

    # ---------------------------------------------------------------- model
    torch.manual_seed(seed)
    if base_model is None:
        spec = ModelSpec(
            channel_names=data.channel_names, class_names=data.class_names, target=mode,
            boundary_class=BOUNDARY_CLASS if mode == "instances" else None,
            normalization={"method": "percentile", "low": percentiles[0], "high": percentiles[1]},
            axes="ZYX" if ndim == 3 else "YX", object_size=data.object_size, description=description,
            postprocess=(dict(DISTANCE_POSTPROCESS if distance_head else INSTANCE_POSTPROCESS)
                         if mode == "instances" else {}),
        )
        heads = ["distance"] if distance_head and mode == "instances" else []
        net = UNet(data.n_channels, n_classes, depth=depth, base_features=base_features, ndim=ndim,
                   upsampling=upsampling, heads=heads, spec=spec)
    else:
        net = base_model
        net.spec.size_model = None  # fitted to the old weights: fitted again after training
        if data.object_size and not net.spec.object_size:
            net.spec.object_size = data.object_size
        if description:
            net.spec.description = description
    if patch_size % net.size_multiple:
        raise ValueError(f"patch_size {patch_size} must be a multiple of {net.size_multiple} (2**depth)")
    net.to(dev)
    channels_last = ndim == 2 and (dev.type == "cuda" or (dev.type == "cpu" and autocast is not None))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    use_distance = "distance" in net.heads
    sampler = PatchSampler(train_samples, patch_size, distance=use_distance,
                           scale_jitter=scale_jitter if rescaled else 1.0)
    if steps_per_epoch is None:
        pixels = sum(s.target.size for s in train_samples)
        steps_per_epoch = int(np.clip(pixels / (batch_size * patch_size**ndim), 10, 200))
    total_steps = epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    warm = max(1, min(warmup_steps, total_steps // 10))

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    weights = torch.as_tensor(data.class_weights, device=dev)
    metric_name = "AP50" if mode == "instances" else "mIoU"
    history: list[dict[str, Any]] = []
    best = -math.inf
    start_epoch, step = 1, 0
    if resume:
        saved = load_optimizer_state(state_file, opt, dev)  # type: ignore[possibly-undefined]
        start_epoch, step = saved["epoch"] + 1, saved["step"]
        best, history = saved["best"], saved["history"]
        if saved.get("total_steps") != total_steps:
            log.warning("resuming with a different schedule (%s vs %s steps)", total_steps, saved.get("total_steps"))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor, last_epoch=step - 1) if step else sched
        if start_epoch > epochs:
            yield TrainEvent("done", epoch=epochs, epochs=epochs, step=step, total_steps=total_steps,
                             message="the resumed run had already finished")
            return best_or_last(net, output)
    record = {
        "software": f"napari-unet {__version__}", "mode": mode, "seed": seed, "epochs": epochs,
        "steps_per_epoch": steps_per_epoch, "patch_size": patch_size, "batch_size": batch_size, "lr": lr,
        "weight_decay": weight_decay, "augmentation": augmentation, "elastic": elastic,
        "train_images": [s.name for s in train_samples], "val_images": [s.name for s in val_samples],
        "data": data_description, "device": str(dev), "precision": str(autocast or "float32"),
        "heads": net.heads, "rescaled": bool(rescaled), "scale_jitter": scale_jitter if rescaled else 1.0,
        "noise": noise,
    }

    # ---------------------------------------------------------------- loop
    epochs_since_best = 0
    stop = False
    best_state: dict[str, torch.Tensor] | None = None  # the best weights, kept in memory when there is no output
    for epoch in range(start_epoch, epochs + 1):
        net.train()
        rng = np.random.default_rng([seed, epoch])
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed * 100003 + epoch)
        loader = Prefetcher(sampler, batch_size, steps_per_epoch, rng)
        losses: list[float] = []
        t_epoch, wait = time.perf_counter(), 0.0
        try:
            for i in range(steps_per_epoch):
                t0 = time.perf_counter()
                xb, yb, *db = loader.get()
                wait += time.perf_counter() - t0
                x = torch.from_numpy(xb).to(dev, non_blocking=True)
                y = torch.from_numpy(yb).to(dev, non_blocking=True).long()
                d = torch.from_numpy(db[0]).to(dev, non_blocking=True) if db else None
                if augmentation:
                    x, y, *rest = augment(x, y, gen, elastic=elastic, distance=d, noise=noise)
                    d = rest[0] if rest else None
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
                    logits = net(x)
                loss = ce_dice_loss(logits[:, :n_classes], y, weights, dice_weight)
                if d is not None:
                    loss = loss + distance_loss(logits[:, n_classes], d, y > 0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                losses.append(float(loss.detach()))
                check_loss(losses[-1], epoch=epoch, step=step, lr=lr)  # NaN: stop, save nothing more
                elapsed = time.perf_counter() - t_start
                per_step = (time.perf_counter() - t_epoch) / (i + 1)
                yield TrainEvent(
                    "step", epoch=epoch, epochs=epochs, step=step, total_steps=total_steps,
                    loss=float(np.mean(losses)), lr=opt.param_groups[0]["lr"], elapsed_s=elapsed,
                    eta_s=per_step * (total_steps - step),
                )
        finally:
            loader.close()
        train_time = time.perf_counter() - t_epoch
        metrics = {"steps_per_s": steps_per_epoch / train_time, "data_wait_share": wait / train_time}
        val_loss = None
        if val_samples:
            val_loss, val_metrics = evaluate_samples(net, val_samples, mode, dev, precision)
            metrics.update(val_metrics)
            score = val_metrics[metric_name]
        else:
            score = -float(np.mean(losses))
        improved = score > best
        if improved:
            best, epochs_since_best = score, 0
            if output is None and val_samples:
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            epochs_since_best += 1
        history.append({"epoch": epoch, "step": step, "loss": float(np.mean(losses)), "val_loss": val_loss,
                        **{k: float(v) for k, v in metrics.items()}})
        checkpoint = None
        if output is not None:
            record_now = {**record, "epochs_done": epoch, "history": history[-200:],
                          "best_" + (metric_name if val_samples else "neg_train_loss"): best}
            last, state_file = last_paths(output)
            save_net(net, last, record_now)
            save_optimizer_state(state_file, opt, {"epoch": epoch, "step": step, "best": best, "history": history,
                                          "total_steps": total_steps})
            if improved:
                save_net(net, output, record_now)
                checkpoint = output
            else:
                checkpoint = last
        if patience is not None and val_samples and epochs_since_best >= patience:
            stop = True
        elapsed = time.perf_counter() - t_start
        yield TrainEvent(
            "epoch", epoch=epoch, epochs=epochs, step=step, total_steps=total_steps,
            loss=float(np.mean(losses)), val_loss=val_loss, metrics=metrics, lr=opt.param_groups[0]["lr"],
            elapsed_s=elapsed, eta_s=elapsed / max(1, epoch - start_epoch + 1) * (epochs - epoch),
            checkpoint=checkpoint, improved=improved,
            message=_epoch_line(epoch, epochs, float(np.mean(losses)), val_loss, metrics, metric_name),
        )
        if preview_every and preview_image is not None and epoch % preview_every == 0:
            yield TrainEvent("preview", epoch=epoch, epochs=epochs, step=step, total_steps=total_steps,
                             preview=_preview(net, preview_image, preview_axes, dev, precision))
        if stop:
            break
    net.eval()
    if best_state is not None:
        net.load_state_dict(best_state)
    check_written(output, abs(best), metric_name if val_samples else "training loss")
    result = best_or_last(net, output) if val_samples else net
    if rescaled and result.ndim == 2 and result.spec.object_size:
        yield TrainEvent("start", epoch=epoch, epochs=epochs, step=step, total_steps=total_steps,
                         message="fitting the object-size estimate (images zoomed 1/3x..5x)")
        result.spec.size_model = fit_size_model_on(result, train_samples, seed=seed)
        if output is not None:
            from ..model.file import read_model_info

            save_net(result, Path(output), read_model_info(output)["spec"].get("training", {}))
    yield TrainEvent(
        "done", epoch=epoch, epochs=epochs, step=step, total_steps=total_steps,
        elapsed_s=time.perf_counter() - t_start, checkpoint=Path(output) if output else None,
        message=("stopped early: " if stop else "") + f"best {metric_name if val_samples else 'loss'} "
        f"{abs(best):.4f}",
    )
    return result


def train(pairs: Any, *, progress: Callable[[TrainEvent], Any] | None = None, **options: Any) -> UNet:
    """Run :func:`iter_train` to the end; ``progress`` gets every event. Returns the model."""
    return drain(iter_train(pairs, **options), progress)


# ---------------------------------------------------------------------------- validation
def evaluate_samples(
    net: UNet, samples: list[Sample], mode: str, device: torch.device, precision: str = "auto",
) -> tuple[float, dict[str, float]]:
    """Validation loss (cross-entropy + Dice on whole images) and the task metric.

    Instances: ``AP50`` and ``mAP`` (pooled over images, IoU 0.5…0.95) of the watershed labels;
    semantic: ``mIoU`` of the argmax classes.
    """
    losses, counts, ious = [], [], []
    axes = "CZYX" if net.ndim == 3 else "CYX"
    distance = net.head_channel("distance")
    for s in samples:
        probs = drain(iter_predict(s.image, net, axes=axes, device=device, precision=precision,
                                    normalized=True, layout_order=True, heads=True, estimate_size=False))
        t = torch.from_numpy(s.target.astype(np.int64))[None]
        logp = torch.from_numpy(np.log(np.clip(probs[: net.n_classes], 1e-7, 1.0)))[None]
        losses.append(float(ce_dice_loss(logp, t)))  # log-probabilities act as logits
        if mode == "instances":
            labels = labels_from_probabilities(probs, mode="instances", boundary_class=BOUNDARY_CLASS,
                                               spatial_ndim=net.ndim, distance_channel=distance,
                                               **net.spec.postprocess)
            counts.append(ap_counts(s.labels, labels))
        else:
            ious.append(mean_iou(s.target, probs.argmax(0), probs.shape[0]))
    metrics = summarize_ap(counts) if mode == "instances" else {"mIoU": float(np.mean(ious))}
    return float(np.mean(losses)), metrics


def fit_size_model_on(net: UNet, samples: list[Sample], *, seed: int = 0, crops: int = 1200) -> dict[str, Any]:
    """:func:`~napari_unet.core.inference.sizing.fit_size_model` on prepared (zoomed) training samples."""
    from ..inference.sizing import fit_size_model
    from .targets import object_diameter

    images, sizes = [], []
    for s in samples:
        d = object_diameter(s.labels) if s.labels is not None else None
        if d is not None and s.image.ndim == 3:
            images.append(s.image)
            sizes.append(d)
    if not images:
        raise ValueError("no labelled 2D images to fit the object-size estimate on")
    return fit_size_model(net, images, sizes, samples=crops, seed=seed)


def _preview(net: UNet, image: Any, axes: str | None, dev: torch.device, precision: str) -> np.ndarray:
    from ..segment import iter_segment

    mode = "instances" if net.spec.target == "instances" else "semantic"
    return drain(iter_segment(image, net, axes=axes, device=dev, precision=precision, mode=mode))


def _epoch_line(epoch: int, epochs: int, loss: float, val_loss: float | None, metrics: dict, name: str) -> str:
    parts = [f"epoch {epoch}/{epochs}", f"loss {loss:.4f}"]
    if val_loss is not None:
        parts.append(f"val loss {val_loss:.4f}")
    for key in (name, "mAP"):
        if key in metrics:
            parts.append(f"{key} {metrics[key]:.3f}")
    parts.append(f"{metrics['steps_per_s']:.2f} steps/s")
    return ", ".join(parts)
