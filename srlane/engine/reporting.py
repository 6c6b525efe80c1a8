"""The evaluation report from a validation: the threshold curve and gallery pictures to
TensorBoard at each validation of a training run (``report.tensorboard``), and the whole report
folder after ``main.py --validate-only --report``."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from lightning.fabric.loggers import Logger

from srlane.benchmarks import Benchmark
from srlane.config import Config, ConfigError
from srlane.engine.hooks import Hook
from srlane.engine.state import TrainState
from srlane.engine.trackers import tensorboard_writer
from srlane.engine.validation import Validator
from srlane.inference.raw import RawWriter
from srlane.report.analysis import iou_analysis, scored_points, threshold_curve, writer_outputs
from srlane.report.build import build_report
from srlane.report.figures import gallery_picture, png_array, threshold_figure

REPORT_FOLDER = "report"  # <work dir>/report/report.html
RAW_FOLDER = "raw"  # <work dir>/raw: the validation's raw outputs (tools/report.py, tools/redecode.py)


class TensorBoardReportHook(Hook):
    """After each validation (rank 0): ``report/threshold_curve`` (the metric, F1, precision and
    recall against ``thresholds``) and ``report/gallery/<rank>`` (the ``gallery`` worst images
    with TP, FP and FN lanes) as TensorBoard images at the step. Needs a validator with
    ``keep_raw``."""

    name = "tensorboard_report"

    def __init__(self, cfg: Config, validator: Validator, benchmark: Benchmark, trackers: Sequence[Logger],
                 thresholds: Sequence[float], gallery: int) -> None:
        self.cfg, self.validator, self.benchmark, self.trackers = cfg, validator, benchmark, trackers
        self.thresholds, self.gallery = list(thresholds), int(gallery)

    def after_validation(self, state: TrainState, metrics: Mapping[str, Any], is_best: bool) -> None:
        writer = tensorboard_writer(self.trackers)
        if self.validator.last is None or writer is None:
            return
        records = self.validator.loader().dataset.records
        outputs = writer_outputs(records, RawWriter.of(self.validator.last))
        curve = threshold_curve(self.benchmark, outputs, self.cfg, self.thresholds)
        chosen = float(self.cfg.test_parameters.conf_threshold)
        writer.add_image("report/threshold_curve", png_array(threshold_figure(curve, chosen)), state.step,
                         dataformats="HWC")
        for point in curve:
            writer.add_scalar(f"report/metric_at_conf/{point['conf_threshold']:g}", point["metric"], state.step)
        lanes = [image.lanes for image in self.validator.last]
        analysed = iou_analysis(self.benchmark, records, scored_points(self.benchmark, records, lanes), self.gallery)
        for rank, image in enumerate(analysed[1] if analysed else []):
            png = gallery_picture(image)
            if png is not None:
                writer.add_image(f"report/gallery/{rank}", png_array(png), state.step, dataformats="HWC")
        writer.flush()


def build_report_hooks(cfg: Config, validator: Validator, benchmark: Benchmark,
                       trackers: Sequence[Logger]) -> list[Hook]:
    """The TensorBoard report hook when ``report.tensorboard`` is set (its validator keeps raw
    outputs; the pictures go to the ``tensorboard`` tracker among ``trackers``), else none."""
    settings = cfg.report
    if not settings.tensorboard:
        return []
    if "tensorboard" not in cfg.loggers:
        raise ConfigError(f"report.tensorboard=True writes to TensorBoard, but loggers is {list(cfg.loggers)!r}; "
                          "add 'tensorboard' to loggers")
    thresholds, gallery = settings.thresholds, settings.gallery
    if (not isinstance(thresholds, (list, tuple)) or not thresholds
            or not all(isinstance(t, (int, float)) and 0 <= t <= 1 for t in thresholds)):
        raise ConfigError(f"report.thresholds {thresholds!r}: expected a list of confidence thresholds in [0, 1]")
    if not isinstance(gallery, int) or isinstance(gallery, bool) or gallery < 0:
        raise ConfigError(f"report.gallery {gallery!r}: expected the number of gallery images (an integer >= 0)")
    return [TensorBoardReportHook(cfg, validator, benchmark, trackers, settings.thresholds, settings.gallery)]


def write_validation_report(cfg: Config, config_path: str, validator: Validator, work_dir: str,
                            facts: Sequence[tuple[str, str]], run_dir: str | None = None) -> str | None:
    """After ``validator()`` with ``keep_raw`` (rank 0): the raw outputs to ``<work_dir>/raw`` and
    the report (training curves of ``run_dir``, the checkpoint's run) to
    ``<work_dir>/report/report.html``; returns its path (None on other ranks)."""
    if validator.last is None:
        return None
    records = validator.loader().dataset.records
    writer = RawWriter.of(validator.last)
    writer.save(os.path.join(work_dir, RAW_FOLDER), cfg, config_path)
    return build_report(os.path.join(work_dir, REPORT_FOLDER), cfg, validator.benchmark, writer_outputs(records, writer),
                        run_dir, facts)
