"""The run's record: work dir, log.txt, scalars to the trackers (Fabric's loggers), tqdm bars,
the release's log line.

Only rank zero writes; on other ranks every method is a no-op (log lines go nowhere).
"""
from __future__ import annotations

import datetime
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Mapping

import torch
from lightning.fabric import Fabric
from tqdm import tqdm

from srlane.benchmarks.base import headline_counts
from srlane.engine.kind_tables import KIND_KEYS, has_kind_metrics, kind_tables
from srlane.fileio import FULL, disk_full


def default_work_dir(work_dirs: str, config_path: str | os.PathLike) -> str:
    """``<work_dirs>/<config name>/<timestamp>``."""
    name = os.path.splitext(os.path.basename(os.fspath(config_path)))[0]
    stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    return os.path.join(work_dirs, name, stamp)


class SmoothedValue:
    """The mean of the last ``window`` values: numbers, or 0-dim tensors left on their device
    until the mean is read."""

    def __init__(self, window: int = 20) -> None:
        self.values: deque[float | torch.Tensor] = deque(maxlen=window)

    def update(self, value: float | torch.Tensor) -> None:
        self.values.append(value)

    @property
    def avg(self) -> float:
        return float(sum(self.values)) / max(1, len(self.values))


def window_means(meters: Mapping[str, SmoothedValue]) -> dict[str, float]:
    """``avg`` of every meter, read from the device in one copy (all values on one device)."""
    if not meters:
        return {}
    means = torch.stack([torch.stack([torch.as_tensor(v) for v in m.values]).double().mean() for m in meters.values()])
    return dict(zip(meters, means.tolist()))


class LogFile(logging.FileHandler):
    """``log.txt``: a full disk or quota stops the run with one ``DiskFullError`` line (logging's
    default prints a traceback and goes on without the line)."""

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError) and error.errno in FULL:
            raise disk_full(error.errno, self.baseFilename, "the log lines before this one are in it") from None
        super().handleError(record)


class _TqdmHandler(logging.StreamHandler):
    """Console log lines that do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record))


class Recorder:
    """Work dir, logger, progress bars of one run; its scalars go to ``fabric``'s loggers
    (``fabric.log_dict``; None: nowhere), which ``close`` finalizes."""

    def __init__(self, work_dir: str, is_main: bool, total_iter: int, fabric: Fabric | None = None) -> None:
        self.work_dir = work_dir
        self.is_main = is_main
        self.total_iter = total_iter
        self.logger = logging.getLogger(f"srlane.run.{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.losses: dict[str, SmoothedValue] = {}
        self.data_time = SmoothedValue()
        self.batch_time = SmoothedValue()
        self.bar: tqdm | None = None
        self.fabric = fabric if is_main else None
        if not is_main:
            self.logger.addHandler(logging.NullHandler())
            return
        os.makedirs(work_dir, exist_ok=True)
        fmt = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
        for handler in (LogFile(os.path.join(work_dir, "log.txt")), _TqdmHandler()):
            handler.setFormatter(fmt)
            self.logger.addHandler(handler)

    def info(self, message: str) -> None:
        self.logger.info(message)

    def start_bar(self, step: int) -> None:
        if self.is_main:
            self.bar = tqdm(total=self.total_iter, initial=step, desc="Train", dynamic_ncols=True)

    def update(self, losses: Mapping[str, float | torch.Tensor], data_time: float, batch_time: float) -> None:
        """Add one step's losses (numbers or device tensors, read only by ``log_train``) and
        timings to the smoothed meters."""
        for name, value in losses.items():
            self.losses.setdefault(name, SmoothedValue()).update(value)
        self.data_time.update(data_time)
        self.batch_time.update(batch_time)
        if self.bar is not None:
            self.bar.update(1)

    def log_train(self, epoch: int, step: int, lr: float, counts: Mapping[str, int]) -> None:
        """The release's line (epoch, step, lr, smoothed losses, data/batch time, ETA), then the
        ``counts`` that are not zero (``name: value``); ``train/lr`` and ``train/<loss>`` to the trackers."""
        if not self.is_main:
            return
        eta = datetime.timedelta(seconds=int(self.batch_time.avg * (self.total_iter - step)))
        means = window_means(self.losses)
        losses = " ".join(f"{name}: {value:.4f}" for name, value in means.items())
        counted = "".join(f" {name}: {value}" for name, value in counts.items() if value)
        self.info(
            f"epoch: {epoch} step: {step} lr: {lr:.6f} {losses} data: {self.data_time.avg:.4f}s "
            f"batch: {self.batch_time.avg:.4f}s eta: {eta}{counted}"
        )
        scalars = {"train/lr": lr, **{f"train/{name}": value for name, value in means.items()}}
        self.scalars(scalars, step)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """``values`` at ``step`` to every tracker."""
        if self.fabric is not None:
            self.fabric.log_dict(dict(values), step=step)

    def log_validation(self, metrics: Mapping[str, object], step: int, title: str | None = None) -> None:
        """Log the metric table under ``title`` (default: ``validation at step N``) and every
        number as ``val/<name>`` at ``step`` to the trackers."""
        self.info(f"{title or f'validation at step {step}'}:\n{format_metrics(metrics)}")
        numbers = {f"val/{k}": float(v) for k, v in flat_metrics(metrics).items()}
        self.scalars(numbers, step)

    def close(self, status: str = "success") -> None:
        """End the bar, the trackers' runs (``status``: ``"success"`` or ``"failed"``) and the log."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.fabric is not None:
            for logger in self.fabric.loggers:
                logger.finalize(status)
            self.fabric = None
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)


def flat_metrics(metrics: Mapping[str, object], prefix: str = "") -> dict[str, float]:
    """Nested metric dicts flattened to ``a/b`` names, numbers only."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            out.update(flat_metrics(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def format_metrics(metrics: Mapping[str, object]) -> str:
    """The metric table: per category (CULane: F1 in percent, cross as its FP count) when the
    metrics have ``categories``, else one aligned row per number (TuSimple: accuracy, fp, fn);
    then the lane-kind tables when the metrics have them (``kind_tables``)."""
    kinds = "\n" + kind_tables(metrics) if has_kind_metrics(metrics) else ""
    metrics = {key: value for key, value in metrics.items() if key not in KIND_KEYS}
    if isinstance(metrics.get("categories"), Mapping):
        return _category_table(metrics) + kinds
    rows = flat_metrics(metrics)
    width = max((len(k) for k in rows), default=0)
    return "\n".join(f"  {key.ljust(width)}  {_number(value).rjust(10)}" for key, value in rows.items()) + kinds


def _number(value: float | int | None) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def _category_table(metrics: Mapping[str, object]) -> str:
    header = f"  {'category':<10}{'F1 (%)':>9}{'precision':>11}{'recall':>9}{'TP':>8}{'FP':>8}{'FN':>8}"
    lines = [header]
    for name, entry in [*metrics["categories"].items(), ("total", metrics)]:
        c = headline_counts(entry)
        if name == "cross":
            lines.append(f"  {name:<10}{'FP: ' + str(c['fp']):>9}{'-':>11}{'-':>9}{c['tp']:>8}{c['fp']:>8}{c['fn']:>8}")
            continue
        f1 = "-" if c["f1"] is None else f"{100 * c['f1']:.2f}"
        lines.append(f"  {name:<10}{f1:>9}{_number(c['precision']):>11}{_number(c['recall']):>9}"
                     f"{c['tp']:>8}{c['fp']:>8}{c['fn']:>8}")
    if "metric" in metrics:
        lines.append(f"  metric: {metrics['metric']!r}")
    return "\n".join(lines)


class Timer:
    """Seconds since the last ``lap``."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        return elapsed
