"""The training curves: their data (:class:`TrainHistory`) and the matplotlib canvas (:class:`CurvePlot`).

:class:`TrainHistory` is plain data, filled from ``iter_train``'s step and epoch events (it
recovers each step's loss from the epoch's running mean). :class:`CurvePlot` draws it: the
loss per step (raw and smoothed) with the validation loss, and the validation metric per
epoch, in napari's theme colours, redrawn at most every 0.5 s. matplotlib is imported when a
plot is built; without it the plot shows a hint and the data is still kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from magicgui.widgets import Container, Label
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy

__all__ = ["CurvePlot", "TrainHistory", "theme_colors"]

#: Smallest interval between two redraws of the curves on step events (seconds).
REDRAW_INTERVAL_S = 0.5


@dataclass
class TrainHistory:
    """The curve data of the current (or last) run, as shown in the widget.

    Attributes
    ----------
    steps, step_losses, smoothed : list
        Optimiser step, that step's training loss (recovered from the epoch's running mean)
        and its exponential moving average (bias-corrected, weight 0.1).
    epochs, epoch_steps, epoch_losses, val_losses, val_metrics : list
        Per epoch: epoch number, its last step, mean training loss, validation loss and
        validation metric (None without a validation set).
    metric_name : str
        ``"AP50"`` or ``"mIoU"``.
    """

    steps: list[int] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    epoch_steps: list[int] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    val_losses: list[float | None] = field(default_factory=list)
    val_metrics: list[float | None] = field(default_factory=list)
    metric_name: str = "AP50"
    _epoch: int = -1
    _epoch_count: int = 0
    _epoch_sum: float = 0.0
    _ema: float = 0.0
    _ema_weight: float = 0.0

    def add_step(self, epoch: int, step: int, running_mean: float) -> None:
        """Record a step event (``running_mean`` is the mean loss of the epoch so far)."""
        if epoch != self._epoch:
            self._epoch, self._epoch_count, self._epoch_sum = epoch, 0, 0.0
        self._epoch_count += 1
        total = running_mean * self._epoch_count
        loss = total - self._epoch_sum
        self._epoch_sum = total
        self._ema = 0.9 * self._ema + 0.1 * loss
        self._ema_weight = 0.9 * self._ema_weight + 0.1
        self.steps.append(int(step))
        self.step_losses.append(float(loss))
        self.smoothed.append(float(self._ema / self._ema_weight))

    def add_epoch(
        self, epoch: int, step: int, loss: float | None, val_loss: float | None, metric: float | None
    ) -> None:
        """Record an epoch event."""
        self.epochs.append(int(epoch))
        self.epoch_steps.append(int(step))
        self.epoch_losses.append(float("nan") if loss is None else float(loss))
        self.val_losses.append(None if val_loss is None else float(val_loss))
        self.val_metrics.append(None if metric is None else float(metric))

    def best_metric(self) -> float | None:
        """The best validation metric so far, or None."""
        values = [v for v in self.val_metrics if v is not None]
        return max(values) if values else None


class CurvePlot:
    """A matplotlib figure embedded in a magicgui Container: loss per step, metric per epoch.

    When matplotlib is missing the container shows a hint instead; the data is still kept.
    """

    def __init__(self) -> None:
        self.container = Container(name="curves", labels=False)
        self.container.margins = (0, 0, 0, 0)
        self.draw_count = 0
        self.canvas: Any = None
        self._history: TrainHistory | None = None
        self._last_draw = 0.0
        try:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure
            from matplotlib.ticker import MaxNLocator
        except ImportError:
            self.container.append(Label(value="Install matplotlib to see the training curves."))
            return
        fig = Figure(figsize=(3.6, 3.4), layout="constrained")
        self.canvas = FigureCanvasQTAgg(fig)
        self.canvas.setMinimumHeight(240)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        bg, fg = theme_colors(self.canvas)
        fig.set_facecolor(bg)
        self.ax_loss = fig.add_subplot(2, 1, 1)
        self.ax_metric = fig.add_subplot(2, 1, 2)
        for ax in (self.ax_loss, self.ax_metric):
            ax.set_facecolor(bg)
            ax.tick_params(colors=fg, labelsize=7)
            for spine in ax.spines.values():
                spine.set_color(fg)
            ax.xaxis.label.set_color(fg)
            ax.yaxis.label.set_color(fg)
            ax.xaxis.label.set_size(8)
            ax.yaxis.label.set_size(8)
        self.ax_loss.set_xlabel("step")
        self.ax_loss.set_ylabel("loss")
        self.ax_metric.set_xlabel("epoch")
        self.ax_metric.xaxis.set_major_locator(MaxNLocator(integer=True))  # no fractional epochs
        (self.line_step,) = self.ax_loss.plot([], [], color="#1f77b4", alpha=0.3, lw=0.8, label="train (step)")
        (self.line_smooth,) = self.ax_loss.plot([], [], color="#1f77b4", lw=1.5, label="train (smoothed)")
        (self.line_val,) = self.ax_loss.plot([], [], "o-", color="#ff7f0e", ms=3, lw=1.2, label="validation")
        (self.line_metric,) = self.ax_metric.plot([], [], "o-", color="#2ca02c", ms=3, lw=1.2)
        self.ax_loss.legend(fontsize=7, loc="upper right", framealpha=0.6, facecolor=bg, edgecolor=fg, labelcolor=fg)
        self.canvas.mpl_connect("draw_event", self._on_draw)
        self._timer = QTimer(self.canvas)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._draw_now)
        self.container.native.layout().addWidget(self.canvas)

    def _on_draw(self, _event: Any) -> None:
        self.draw_count += 1

    def update(self, history: TrainHistory, force: bool = True) -> None:
        """Redraw from ``history``: now when ``force``, else at most every 0.5 s.

        A throttled update that cannot draw now schedules one, so the latest data is always
        drawn shortly after it arrived, however fast events come.
        """
        self._history = history
        if self.canvas is None:
            return
        wait = REDRAW_INTERVAL_S - (time.perf_counter() - self._last_draw)
        if force or wait <= 0:
            self._timer.stop()
            self._draw_now()
        elif not self._timer.isActive():
            self._timer.start(int(wait * 1000) + 1)

    def _draw_now(self) -> None:
        history = self._history
        if self.canvas is None or history is None:
            return
        self._last_draw = time.perf_counter()
        self.line_step.set_data(history.steps, history.step_losses)
        self.line_smooth.set_data(history.steps, history.smoothed)
        val = [(s, v) for s, v in zip(history.epoch_steps, history.val_losses) if v is not None]
        self.line_val.set_data([s for s, _ in val], [v for _, v in val])
        metric = [(e, v) for e, v in zip(history.epochs, history.val_metrics) if v is not None]
        self.line_metric.set_data([e for e, _ in metric], [v for _, v in metric])
        self.ax_metric.set_ylabel(f"val {history.metric_name}")
        for ax in (self.ax_loss, self.ax_metric):
            ax.relim()
            ax.autoscale_view()
        if metric:
            self.ax_metric.set_ylim(0.0, 1.02)
        self.canvas.draw()


def theme_colors(widget: Any) -> tuple[str, str]:
    """(background, text) colours of napari's current theme; the Qt palette's as a fallback."""
    try:
        from napari.settings import get_settings
        from napari.utils.theme import get_system_theme, get_theme

        name = get_settings().appearance.theme
        theme = get_theme(get_system_theme() if name == "system" else name)
        return theme.background.as_hex(), theme.text.as_hex()
    except Exception:  # noqa: BLE001 - only cosmetic
        palette = widget.palette()
        return palette.window().color().name(), palette.windowText().color().name()
