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
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ... import __version__
from ..model.unet import UNet
from ..options import check_training_options
from ..progress import drain
from .augment import augment
from .build import Run, build, check_run, resume_from, start_model, training_record
from .checkpoints import last_paths
from .config import TrainConfig
from .data import PreparedData
from .guards import check_loss, check_written
from .losses import ce_dice_loss, distance_loss
from .patches import Prefetcher
from .state import best_or_last, save_net, save_optimizer_state
from .validation import evaluate_samples, fit_size_model_on

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


def iter_train(
    pairs: Sequence[tuple[Any, Any]] | PreparedData,
    *,
    val_pairs: Sequence[tuple[Any, Any]] | None = None,
    output: str | Path | None = None,
    model: UNet | str | Path | None = None,
    resume: bool = False,
    preview_image: Any = None,
    preview_axes: str | None = None,
    config: TrainConfig | None = None,
    **options: Any,
) -> Generator[TrainEvent, None, UNet]:
    """Train a U-Net, yielding progress events; returns the model.

    The options (all keyword arguments but ``val_pairs``, ``output``, ``model``, ``resume``,
    ``preview_image`` and ``preview_axes``) make a :class:`~.config.TrainConfig`, checked before
    anything else happens; or pass one as ``config=``. Global state is left as it was: the random
    state of torch (the initial weights come from ``seed`` in a forked generator) and
    ``torch.backends.cudnn.benchmark`` (switched on while training on CUDA). A ``model`` passed as
    a :class:`UNet` is copied, never changed; the trained copy is returned.

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
        Fine-tune (a copy of) this model (its architecture, channels and normalisation are kept).
    resume : bool
        Continue the run whose ``.last`` checkpoint sits beside ``output``.
    depth, base_features, ndim, upsampling
        Architecture of a new model; ``ndim`` 2 (planes: Z-stacks and time-lapses are split into
        planes) or 3 (volumes, axes ``ZYX``). A fine-tuned or resumed model keeps its own.
    epochs, steps_per_epoch, patch_size, batch_size, lr, weight_decay, dice_weight
        Optimisation. ``patch_size`` defaults to 256 for a 2D network and 64 for a 3D one (images
        smaller than a patch are mirror-padded). ``steps_per_epoch`` defaults to about one pass over
        the training pixels, between 10 and 200 steps. AdamW, linear warm-up then cosine decay to 1 % of ``lr``.
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
    if config is not None and options:
        raise TypeError(f"give the options either as config= or as keywords, not both: {sorted(options)}")
    cfg = config if config is not None else TrainConfig(**options)
    resume = check_training_options(resume=resume)["resume"]
    output = check_run(output, resume)
    base, cfg = start_model(last_paths(output)[0] if resume else model, cfg)  # type: ignore[arg-type]

    yield TrainEvent("start", epochs=cfg.epochs, message="preparing data (normalisation, targets)")
    run = build(pairs, val_pairs, base, cfg)
    if resume:
        resume_from(run, output)  # type: ignore[arg-type]
        if run.start_epoch > cfg.epochs:
            yield TrainEvent(
                "done",
                epoch=cfg.epochs,
                epochs=cfg.epochs,
                step=run.step,
                total_steps=run.total_steps,
                message="the resumed run had already finished",
            )
            return best_or_last(run.net, output)
    cudnn_autotune = torch.backends.cudnn.benchmark
    try:
        if run.dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
        return (yield from _epochs(run, output, preview_image, preview_axes, t_start))
    finally:
        torch.backends.cudnn.benchmark = cudnn_autotune


def _epochs(
    run: Run, output: Path | None, preview_image: Any, preview_axes: str | None, t_start: float
) -> Generator[TrainEvent, None, UNet]:
    """The epochs of a built run, then the best model (and its object-size estimate)."""
    cfg, net = run.cfg, run.net
    record = training_record(run, __version__)
    epochs_since_best, stop, epoch = 0, False, run.start_epoch
    best_state: dict[str, torch.Tensor] | None = None  # the best weights, kept in memory when there is no output
    for epoch in range(run.start_epoch, cfg.epochs + 1):
        t_epoch = time.perf_counter()
        losses: list[float] = []
        wait = yield from _one_epoch(run, epoch, losses, t_start)
        train_time = time.perf_counter() - t_epoch
        metrics = {"steps_per_s": run.steps_per_epoch / train_time, "data_wait_share": wait / train_time}
        val_loss, improved, checkpoint = _validate_and_save(run, epoch, losses, metrics, output, record)
        if improved:
            epochs_since_best = 0
            if output is None and run.val_samples:
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            epochs_since_best += 1
        if cfg.patience is not None and run.val_samples and epochs_since_best >= cfg.patience:
            stop = True
        elapsed = time.perf_counter() - t_start
        yield TrainEvent(
            "epoch",
            epoch=epoch,
            epochs=cfg.epochs,
            step=run.step,
            total_steps=run.total_steps,
            loss=float(np.mean(losses)),
            val_loss=val_loss,
            metrics=metrics,
            lr=run.opt.param_groups[0]["lr"],
            elapsed_s=elapsed,
            eta_s=elapsed / max(1, epoch - run.start_epoch + 1) * (cfg.epochs - epoch),
            checkpoint=checkpoint,
            improved=improved,
            message=_epoch_line(epoch, cfg.epochs, float(np.mean(losses)), val_loss, metrics, run.metric_name),
        )
        if cfg.preview_every and preview_image is not None and epoch % cfg.preview_every == 0:
            yield TrainEvent(
                "preview",
                epoch=epoch,
                epochs=cfg.epochs,
                step=run.step,
                total_steps=run.total_steps,
                preview=_preview(net, preview_image, preview_axes, run.dev, cfg.precision),
            )
        if stop:
            break
    net.eval()
    if best_state is not None:
        net.load_state_dict(best_state)
    metric_name = run.metric_name if run.val_samples else "training loss"
    check_written(output, abs(run.best), metric_name)
    result = best_or_last(net, output) if run.val_samples else net
    done = dict(epoch=epoch, epochs=cfg.epochs, step=run.step, total_steps=run.total_steps)
    if run.rescaled and result.ndim == 2 and result.spec.object_size:
        yield TrainEvent("start", **done, message="fitting the object-size estimate (images zoomed 1/3x..5x)")
        result.spec.size_model = fit_size_model_on(result, run.train_samples, seed=cfg.seed)
        if output is not None:
            from ..model.file import read_model_info

            save_net(result, Path(output), read_model_info(output)["spec"].get("training", {}))
    yield TrainEvent(
        "done",
        **done,
        elapsed_s=time.perf_counter() - t_start,
        checkpoint=Path(output) if output else None,
        message=("stopped early: " if stop else "") + f"best {run.metric_name if run.val_samples else 'loss'} "
        f"{abs(run.best):.4f}",
    )
    return result


def _one_epoch(run: Run, epoch: int, losses: list[float], t_start: float) -> Generator[TrainEvent, None, float]:
    """The optimiser steps of one epoch (losses appended to ``losses``); returns the time spent
    waiting for data. Patches and augmentation come from generators seeded by ``seed`` and ``epoch``."""
    cfg, net, dev, opt = run.cfg, run.net, run.dev, run.opt
    net.train()
    rng = np.random.default_rng([cfg.seed, epoch])
    gen = torch.Generator(device=dev)
    gen.manual_seed(cfg.seed * 100003 + epoch)
    loader = Prefetcher(run.sampler, cfg.batch_size, run.steps_per_epoch, rng)
    t_epoch, wait = time.perf_counter(), 0.0
    try:
        for i in range(run.steps_per_epoch):
            t0 = time.perf_counter()
            xb, yb, *db = loader.get()
            wait += time.perf_counter() - t0
            x = torch.from_numpy(xb).to(dev, non_blocking=True)
            y = torch.from_numpy(yb).to(dev, non_blocking=True).long()
            d = torch.from_numpy(db[0]).to(dev, non_blocking=True) if db else None
            if cfg.augmentation:
                x, y, *rest = augment(x, y, gen, elastic=cfg.elastic, distance=d, noise=cfg.noise)
                d = rest[0] if rest else None
            if run.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=run.autocast, enabled=run.autocast is not None):
                logits = net(x)
            loss = ce_dice_loss(logits[:, : run.n_classes], y, run.weights, cfg.dice_weight)
            if d is not None:
                loss = loss + distance_loss(logits[:, run.n_classes], d, y > 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run.sched.step()
            run.step += 1
            losses.append(float(loss.detach()))
            check_loss(losses[-1], epoch=epoch, step=run.step, lr=cfg.lr)  # NaN: stop, save nothing more
            per_step = (time.perf_counter() - t_epoch) / (i + 1)
            yield TrainEvent(
                "step",
                epoch=epoch,
                epochs=cfg.epochs,
                step=run.step,
                total_steps=run.total_steps,
                loss=float(np.mean(losses)),
                lr=opt.param_groups[0]["lr"],
                elapsed_s=time.perf_counter() - t_start,
                eta_s=per_step * (run.total_steps - run.step),
            )
    finally:
        loader.close()
    return wait


def _validate_and_save(
    run: Run, epoch: int, losses: list[float], metrics: dict[str, float], output: Path | None, record: dict[str, Any]
) -> tuple[float | None, bool, Path | None]:
    """Validate after an epoch (``metrics`` updated), note the history and write the checkpoints.
    Returns the validation loss, whether the score improved and the checkpoint written."""
    val_loss = None
    if run.val_samples:
        val_loss, val_metrics = evaluate_samples(run.net, run.val_samples, run.cfg.mode, run.dev, run.cfg.precision)
        metrics.update(val_metrics)
        score = val_metrics[run.metric_name]
    else:
        score = -float(np.mean(losses))
    improved = score > run.best
    if improved:
        run.best = score
    run.history.append(
        {
            "epoch": epoch,
            "step": run.step,
            "loss": float(np.mean(losses)),
            "val_loss": val_loss,
            **{k: float(v) for k, v in metrics.items()},
        }
    )
    if output is None:
        return val_loss, improved, None
    record_now = {
        **record,
        "epochs_done": epoch,
        "history": run.history[-200:],
        "best_" + (run.metric_name if run.val_samples else "neg_train_loss"): run.best,
    }
    last, state_file = last_paths(output)
    save_net(run.net, last, record_now)
    save_optimizer_state(
        state_file,
        run.opt,
        {"epoch": epoch, "step": run.step, "best": run.best, "history": run.history, "total_steps": run.total_steps},
    )
    if improved:
        save_net(run.net, output, record_now)
        return val_loss, True, output
    return val_loss, False, last


def train(pairs: Any, *, progress: Callable[[TrainEvent], Any] | None = None, **options: Any) -> UNet:
    """Run :func:`iter_train` to the end; ``progress`` gets every event. Returns the model."""
    return drain(iter_train(pairs, **options), progress)


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
