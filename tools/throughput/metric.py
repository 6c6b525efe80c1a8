"""CULane metric speed: ms per image (4 vs 4 lanes, one core) and seconds for a full test set.

Random but realistic scenes: four annotated lanes converging towards a vanishing point, points
every 10 rows from the bottom to about row 300; predictions are the lanes moved by a few pixels
with a little noise, some missing and some extra. The full set has CULane's 34,680 test images
in its nine categories (cross: no annotated lanes). Times are for ``CULaneEvaluator.evaluate``
on lanes in memory: the first call rasterises annotations and predictions, later calls reuse
the cached annotation rasters (as during training). Goals: <= 1.4 ms per image, < 60 s.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np

from srlane.evaluation.culane import CULaneEvaluator
from srlane.fileio import atomic_write_text

CATEGORY_SIZES = {"normal": 9621, "crowd": 8113, "hlight": 486, "shadow": 930, "noline": 4067, "arrow": 890,
                  "curve": 422, "cross": 3122, "night": 7029}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", help="write {ms_per_image, full_test_s, ...} here")
    parser.add_argument("--images", type=int, default=1000, help="images timed on one core (default 1000)")
    parser.add_argument("--workers", type=int, default=None, help="processes for the full set (default: all cores)")
    parser.add_argument("--skip-full", action="store_true", help="only the one-core measurement")


def scene(rng: np.random.Generator, num_lanes: int = 4) -> list[np.ndarray]:
    """Annotated lanes: bottom to about row 300, converging, points every 10 rows inside the image."""
    vx, top = 820 + rng.uniform(-150, 150), rng.uniform(270, 330)
    lanes = []
    for bottom_x in np.sort(rng.uniform(-400, 2040, num_lanes)):
        ys = np.arange(589.0, top, -10.0)
        t = (ys - top + 20) / (589 - top + 20)
        xs = vx + t * (bottom_x - vx) + rng.uniform(-40, 40) * t * (1 - t)
        keep = (xs >= 0) & (xs < 1640)
        if keep.sum() >= 2:
            lanes.append(np.stack([xs[keep], ys[keep]], 1))
    return lanes


def predict(rng: np.random.Generator, lanes: list[np.ndarray], drop: float = 0.1, extra: float = 0.1) -> list:
    """Lanes moved by a few pixels with noise; some dropped, sometimes one extra."""
    out = [lane + rng.normal(0, 4, 2) + rng.normal(0, 1, lane.shape) for lane in lanes if rng.random() >= drop]
    if rng.random() < extra:
        out.extend(scene(rng, 1))
    return out


def full_set(rng: np.random.Generator) -> tuple[list, list, dict[str, list[int]]]:
    annotations, predictions, categories = [], [], {}
    for name, size in CATEGORY_SIZES.items():
        categories[name] = list(range(len(annotations), len(annotations) + size))
        for _ in range(size):
            lanes = [] if name == "cross" else scene(rng, 4)
            annotations.append(lanes)
            predictions.append(predict(rng, lanes) if lanes else predict(rng, [], extra=0.3))
    return annotations, predictions, categories


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (pool workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn) -> tuple[float, float, object]:
    """Wall seconds, CPU seconds (this process and its pool workers) and the result of fn()."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    out = fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu, out


def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(0)
    report = {"cpu_count": os.cpu_count(), "load_before": list(os.getloadavg())}
    annos, preds = [], []
    while len(annos) < args.images:
        lanes = scene(rng, 4)
        if len(lanes) == 4:
            annos.append(lanes)
            preds.append([lane + rng.normal(0, 4, 2) + rng.normal(0, 1, lane.shape) for lane in lanes])
    evaluator = CULaneEvaluator(annos, workers=0)
    _, cold_cpu, _ = timed(lambda: evaluator.evaluate(preds))
    warm_wall, warm_cpu, _ = timed(lambda: evaluator.evaluate(preds))
    report.update(ms_per_image=1e3 * warm_cpu / args.images, ms_per_image_wall=1e3 * warm_wall / args.images,
                  ms_per_image_cold=1e3 * cold_cpu / args.images)
    print(f"4 vs 4 lanes, one core: {report['ms_per_image']:.3f} ms/image CPU with cached annotations "
          f"({report['ms_per_image_wall']:.3f} wall), {report['ms_per_image_cold']:.3f} ms/image CPU rasterising both")
    if not args.skip_full:
        annotations, predictions, categories = full_set(rng)
        evaluator = CULaneEvaluator(annotations, categories, workers=args.workers)
        full_wall, full_cpu, result = timed(lambda: evaluator.evaluate(predictions))
        cached_wall, cached_cpu, again = timed(lambda: evaluator.evaluate(predictions))
        if again != result:
            raise RuntimeError("the cached evaluation differs from the first one")
        report.update(full_test_s=full_wall, full_test_cpu_s=full_cpu, full_test_cached_s=cached_wall,
                      full_test_cached_cpu_s=cached_cpu, full_test_images=len(annotations),
                      full_test_workers=evaluator.workers, full_test_f1=result["0.5"]["f1"])
        print(f"{len(annotations)} images, nine categories, {evaluator.workers} workers: {full_wall:.1f} s wall, "
              f"{full_cpu:.1f} s CPU (again with cached annotations: {cached_wall:.1f} s wall, "
              f"{cached_cpu:.1f} s CPU), F1 {result['0.5']['f1']:.4f}")
    report["load_after"] = list(os.getloadavg())
    print(f"load average before {report['load_before'][0]:.2f}, after {report['load_after'][0]:.2f} "
          f"on {report['cpu_count']} cores")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
