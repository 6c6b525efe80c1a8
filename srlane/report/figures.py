"""The report's pictures as PNG bytes: matplotlib figures (Agg, no display) and the gallery's
images with their lanes drawn."""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from srlane.report.analysis import GalleryImage  # noqa: E402
from srlane.report.curves import Curve  # noqa: E402
from srlane.visualize import draw_matches  # noqa: E402

GALLERY_WIDTH = 820  # pixels of a gallery picture (the image scaled down)
SERIES = (("f1", "F1", "tab:blue"), ("precision", "precision", "tab:green"), ("recall", "recall", "tab:red"))


def value_limits(ax: plt.Axes) -> tuple[float, float]:
    """0 to a little above the highest value plotted on ``ax`` (at most 1.02): small values of
    an early network stay readable."""
    top = max((np.nanmax(line.get_ydata()) for line in ax.get_lines() if np.isfinite(line.get_ydata()).any()),
              default=1.0)
    return 0.0, float(min(1.02, max(0.05, 1.15 * top)))


def figure_png(fig: plt.Figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def png_array(png: bytes) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 of PNG bytes (for TensorBoard's ``add_image``)."""
    bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def threshold_figure(curve: Sequence[Mapping[str, float | None]], chosen: float, metric_name: str = "metric") -> bytes:
    """F1, precision and recall (and the benchmark's metric when it is another number) against
    the confidence threshold; a dashed line at the config's threshold."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    xs = [p["conf_threshold"] for p in curve]
    for key, label, colour in SERIES:
        ys = [np.nan if p.get(key) is None else p[key] for p in curve]
        if not np.all(np.isnan(ys)):
            ax.plot(xs, ys, marker="o", markersize=3, label=label, color=colour)
    if any(p.get("f1") is not None and p["metric"] != p["f1"] for p in curve):  # another number than F1
        ax.plot(xs, [p["metric"] for p in curve], marker="s", markersize=3, label=metric_name, color="tab:purple")
    limits = value_limits(ax)
    ax.axvline(chosen, color="grey", linestyle="--", linewidth=1, label=f"config threshold {chosen:g}")
    ax.set(xlabel="confidence threshold", ylabel="value", ylim=limits, xlim=(0, 1),
           title="against the confidence threshold")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return figure_png(fig)


def iou_figure(curve: Sequence[Mapping[str, float | None]]) -> bytes:
    """F1, precision and recall against the IoU threshold of a true positive."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    xs = [p["iou"] for p in curve]
    for key, label, colour in SERIES:
        ax.plot(xs, [np.nan if p.get(key) is None else p[key] for p in curve], marker="o", markersize=3,
                label=label, color=colour)
    ax.set(xlabel="IoU threshold (true positive: IoU > threshold)", ylabel="value", ylim=value_limits(ax),
           title="against the IoU threshold")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return figure_png(fig)


def training_figure(curves: Mapping[str, Curve]) -> bytes | None:
    """Loss, learning rate and validation metric against the step, one panel each (those the
    run has); None when it has none."""
    losses = {tag[6:]: c for tag, c in curves.items() if tag.startswith("train/") and tag != "train/lr"}
    panels = [("loss", losses, "log"), ("learning rate", {"lr": curves["train/lr"]} if "train/lr" in curves else {},
                                       "linear"),
              ("validation metric", {"metric": curves["val/metric"]} if "val/metric" in curves else {}, "linear")]
    panels = [panel for panel in panels if panel[1]]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, series, scale) in zip(axes[0], panels):
        for name, (steps, values) in series.items():
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=name)
        if scale == "log" and all(v > 0 for _, values in series.values() for v in values):
            ax.set_yscale("log")
        ax.set(xlabel="step", title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def gallery_picture(image: GalleryImage) -> bytes | None:
    """The image with its TP, FP and FN lanes and the legend, scaled to ``GALLERY_WIDTH`` at
    most, as PNG; None when the image cannot be read."""
    img = cv2.imread(image.record.img_path, cv2.IMREAD_COLOR)
    if img is None:
        return None
    drawn = draw_matches(img, image.record.lanes, image.predictions, image.matches.annotation,
                         image.matches.prediction)
    if drawn.shape[1] > GALLERY_WIDTH:
        height = round(drawn.shape[0] * GALLERY_WIDTH / drawn.shape[1])
        drawn = cv2.resize(drawn, (GALLERY_WIDTH, height), interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", drawn)
    return png.tobytes() if ok else None
