"""What the Train panel's status line says: progress while training, and how a run ended.

Plain functions of ``iter_train``'s events (:class:`~napari_unet.core.training.loop.TrainEvent`)
and the curve data (:class:`~napari_unet._napari.train_curves.TrainHistory`); no Qt.
"""

from __future__ import annotations

import pathlib
from typing import Any

from .train_curves import TrainHistory
from .train_job import last_checkpoint_paths

__all__ = ["RateMeter", "done_text", "format_duration", "progress_text", "stopped_text"]


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``2 h 07 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class RateMeter:
    """Steps per second of the current run, measured from its first step event (so that data
    preparation and torch's start-up do not count); before that, the last epoch's own figure."""

    def __init__(self) -> None:
        self.origin: tuple[int, float] | None = None

    def step(self, event: Any) -> None:
        """Note a step event (the first one sets the origin)."""
        if self.origin is None:
            self.origin = (event.step, event.elapsed_s)

    def rate(self, event: Any, last_epoch_event: Any = None) -> float | None:
        """Steps per second at ``event``, or None when not known yet."""
        if self.origin is not None:
            step0, t0 = self.origin
            if event.step > step0 and event.elapsed_s > t0:
                return (event.step - step0) / (event.elapsed_s - t0)
        last = last_epoch_event
        return float(last.metrics["steps_per_s"]) if last is not None and "steps_per_s" in last.metrics else None


def progress_text(event: Any, history: TrainHistory, last_epoch_event: Any = None, rate: float | None = None) -> str:
    """Epoch and step; loss, last validation loss and metric (with the best); speed and ETA; one line each."""
    name = history.metric_name
    lines = [f"epoch {event.epoch}/{event.epochs} · step {event.step}/{event.total_steps}"]
    parts = []
    if event.loss is not None:
        parts.append(f"loss {event.loss:.4f}")
    last = last_epoch_event
    if last is not None and last.val_loss is not None:
        parts.append(f"val loss {last.val_loss:.4f}")
        value = last.metrics.get(name)
        if value is not None:
            best = history.best_metric()
            parts.append(f"val {name} {value:.3f} (best {best:.3f})" if best is not None else f"val {name} {value:.3f}")
    if parts:
        lines.append(" · ".join(parts))
    speed = []
    if rate is not None:
        speed.append(f"{rate:.2f} steps/s")
    if event.eta_s:
        speed.append(f"ETA {format_duration(event.eta_s)}")
    if speed:
        lines.append(" · ".join(speed))
    return "\n".join(lines)


def done_text(history: TrainHistory) -> str:
    """How good the finished run's model is: its best metric, else its final training loss."""
    best = history.best_metric()
    if best is not None:
        return f"best {history.metric_name} {best:.3f}"
    if history.epoch_losses:
        return f"final training loss {history.epoch_losses[-1]:.4f} (no validation set)"
    return "no new epoch"


def stopped_text(output: pathlib.Path | None, last_event: Any = None, last_epoch_event: Any = None) -> str:
    """Where a stopped run stopped and which of its files stay (and that Resume continues it)."""
    event, last = last_event, last_epoch_event
    where = f" at epoch {event.epoch}/{event.epochs}, step {event.step}" if event is not None and event.epoch else ""
    lines = [f"stopped{where}."]
    if output is not None:
        last_file, state_file = last_checkpoint_paths(output)
        kept = []
        if output.is_file():
            kept.append(f"best model {output.name}")
        if last_file.is_file():
            epoch = f" (epoch {last.epoch})" if last is not None else ""
            kept.append(f"{last_file.name}{epoch}")
        if last is None:
            lines.append("No epoch of this run finished, so it wrote no checkpoint.")
        if kept:
            lines.append("The last good checkpoint stays: " + ", ".join(kept) + ".")
            if state_file.is_file():
                lines.append("Tick Resume and Start to continue.")
    return " ".join(lines)
