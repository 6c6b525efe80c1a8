"""A report folder: ``report.html`` with its PNG files beside it, and ``report.json`` (the same
numbers), from a split's raw outputs and, when given, the run folder of the training."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm import tqdm

from srlane.benchmarks import Benchmark
from srlane.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from srlane.report import html
from srlane.report.analysis import (CONF_THRESHOLDS, GALLERY_IOU, IOU_THRESHOLDS, Outputs, decode, iou_analysis,
                                    scored_points, threshold_curve)
from srlane.report.curves import last_validation, training_curves
from srlane.report.figures import gallery_picture, iou_figure, threshold_figure, training_figure

REPORT = "report.html"


def build_report(out_dir: str, cfg: Mapping[str, Any], benchmark: Benchmark, outputs: Outputs | None,
                 run_dir: str | None = None, facts: Sequence[tuple[str, str]] = (), gallery_count: int = 12,
                 thresholds: Sequence[float] = CONF_THRESHOLDS, progress: bool = True) -> str:
    """Write the report of ``outputs`` (the metric table at the config's thresholds, the
    threshold and IoU curves, the gallery of the worst images) and of ``run_dir``'s training
    curves into ``out_dir``; without outputs, the table of the run's last validation. Returns
    the path of ``report.html``."""
    curves = training_curves(run_dir) if run_dir else {}
    files: dict[str, bytes] = {}
    sections: list[tuple[str, str]] = []
    numbers: dict[str, Any] = {}
    n = len(outputs.records) if outputs is not None else 0
    total = (2 + 2 * len(thresholds) + 1) * n + gallery_count
    with tqdm(total=total, desc="Report", unit="img", dynamic_ncols=True, disable=not progress or not n) as bar:
        def step(text: str) -> None:
            bar.set_description(f"Report: {text}")

        if outputs is not None:
            step("decode and score at the config's thresholds")
            lanes = decode(outputs, cfg, bar.update)
            metrics = benchmark.evaluator(outputs.records)(lanes)
            bar.update(n)
            chosen = float(cfg["test_parameters"]["conf_threshold"])
            numbers["metrics"] = metrics
            sections.append((f"Metrics at confidence threshold {chosen:g} ({n} images)",
                             f'<p>metric: <span id="metric">{metrics["metric"]!r}</span></p>'
                             + html.metric_table(metrics)))
            curve = threshold_curve(benchmark, outputs, cfg, thresholds, bar.update, step)
            numbers["threshold_curve"] = curve
            files["threshold_curve.png"] = threshold_figure(curve, chosen)
            sections.append(("Against the confidence threshold (decoded again from the raw outputs)",
                             html.image("threshold_curve.png", "F1, precision and recall against the confidence "
                                        "threshold") + html.threshold_table(curve)))
            step("IoU thresholds and the worst images")
            analysed = iou_analysis(benchmark, outputs.records, scored_points(benchmark, outputs.records, lanes),
                                    gallery_count, IOU_THRESHOLDS, bar.update)
            if analysed is None:
                sections.append(("Against the IoU threshold", html.note(
                    f"{benchmark.name}'s metric has no per-lane IoU: no IoU curve and no gallery")))
            else:
                iou_curve, worst = analysed
                numbers["iou_curve"] = iou_curve
                files["iou_curve.png"] = iou_figure(iou_curve)
                sections.append(("Against the IoU threshold",
                                 html.image("iou_curve.png", "F1 against the IoU threshold") + html.iou_table(iou_curve)))
                pictures, numbers["gallery"] = [], []
                for rank, image in enumerate(worst):
                    step(f"gallery {rank + 1}/{len(worst)}")
                    png = gallery_picture(image)
                    bar.update(1)
                    if png is None:
                        continue
                    name = f"gallery/{rank:02d}.png"
                    files[name] = png
                    counts = image.counts
                    pictures.append((name, f"{image.record.img_name}: TP {counts['tp']}, FP {counts['fp']}, "
                                           f"FN {counts['fn']}"))
                    numbers["gallery"].append({"image": image.record.img_name, "file": name, **counts})
                sections.append((f"The worst images (most FP + FN lanes at IoU {GALLERY_IOU:g})",
                                 html.gallery(pictures) if pictures else html.note("no image has an error")))
        elif run_dir:
            last = last_validation(run_dir, curves)
            if last is None:
                sections.append(("Metrics", html.note(f"{run_dir} has no validation and no raw outputs")))
            else:
                numbers["metrics"] = last[1]
                sections.append((f"Metrics of the last validation (step {last[0]})",
                                 f'<p>metric: <span id="metric">{last[1].get("metric")!r}</span></p>'
                                 + html.metric_table(last[1])
                                 + html.note("no raw outputs: no threshold curve, IoU curve or gallery "
                                             "(main.py --validate-only --report writes them)")))
        bar.update(total - bar.n)
    training = training_figure(curves)
    if training is not None:
        files["training_curves.png"] = training
        sections.append(("Training", html.image("training_curves.png", "loss, learning rate and metric")))
    elif run_dir:
        sections.append(("Training", html.note(f"no training scalars in {run_dir}")))
    for name, data in files.items():
        atomic_write_bytes(os.path.join(out_dir, name), data)
    atomic_write_json(os.path.join(out_dir, "report.json"), numbers, default=float)
    path = os.path.join(out_dir, REPORT)
    atomic_write_text(path, html.page("SRLane evaluation report", facts, sections))
    return path
