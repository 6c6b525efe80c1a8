"""The official TuSimple ``LaneEval`` metric, quirks included (spec: evaluation.md).

Accuracy, FP and FN are plain means over images of the per-image scores of ``LaneEval.bench``;
the F1 some repositories print is derived from those means (precision = 1 - FP, recall =
(1 - FP) / (1 - FP + FN)) and is labelled as such.
"""
from collections.abc import Sequence

import numpy as np

PIXEL_THRESH = 20.0
PT_THRESH = 0.85


def _slope_angle(xs: np.ndarray, ys: np.ndarray) -> float:
    """atan of k in the least-squares fit ``x = k*y + b`` over the points with x >= 0 (0 for < 2 points)."""
    valid = xs >= 0
    xs, ys = xs[valid], ys[valid]
    if len(xs) < 2:
        return 0.0
    yc = ys - ys.mean()
    denom = float(np.dot(yc, yc))
    k = float(np.dot(yc, xs - xs.mean())) / denom if denom else 0.0
    return float(np.arctan(k))


def line_accuracy(pred: np.ndarray, gt: np.ndarray, thresh: float) -> float:
    """Share of rows where |pred - gt| < thresh, negatives in either set to -100 (all rows count)."""
    pred = np.where(pred >= 0, pred, -100.0)
    gt = np.where(gt >= 0, gt, -100.0)
    return float(np.sum(np.abs(pred - gt) < thresh)) / len(gt)


def bench_image(pred: list, gt: list, h_samples: list, run_time: float) -> tuple[float, float, float]:
    """``LaneEval.bench``: (accuracy, fp, fn) of one image."""
    y = np.asarray(h_samples, dtype=np.float64)
    pred_lanes = [np.asarray(p, dtype=np.float64) for p in pred]
    for i, p in enumerate(pred_lanes):
        if p.shape != y.shape:
            raise ValueError(f"predicted lane {i} has {p.size} values, expected len(h_samples) = {len(y)}")
    if run_time > 200 or len(gt) + 2 < len(pred):
        return 0.0, 0.0, 1.0
    line_accs, fn, matched = [], 0.0, 0.0
    for x_gt in gt:
        x_gt = np.asarray(x_gt, dtype=np.float64)
        thresh = PIXEL_THRESH / np.cos(_slope_angle(x_gt, y))
        accs = [line_accuracy(p, x_gt, thresh) for p in pred_lanes]
        best = max(accs) if accs else 0.0
        if best < PT_THRESH:
            fn += 1
        else:
            matched += 1
        line_accs.append(best)
    fp = len(pred) - matched
    if len(gt) > 4 and fn > 0:
        fn -= 1
    s = sum(line_accs)
    if len(gt) > 4:
        s -= min(line_accs)
    return (s / max(min(4.0, len(gt)), 1.0), fp / len(pred) if len(pred) > 0 else 0.0,
            fn / max(min(len(gt), 4.0), 1.0))


def derived_f1(fp: float, fn: float) -> float | None:
    """The F1 printed by many repositories from mean FP and FN; None where undefined."""
    precision = 1.0 - fp
    if 1.0 - fp + fn == 0:
        return None
    recall = (1.0 - fp) / (1.0 - fp + fn)
    return 2 * precision * recall / (precision + recall) if precision + recall else None


def tusimple_metric(predictions: Sequence[Sequence[Sequence[float]]], ground_truth: Sequence[Sequence[Sequence[float]]],
                    h_samples: Sequence[Sequence[float]], run_times_ms: Sequence[float] | None = None) -> dict:
    """``{"accuracy", "fp", "fn", "f1"}`` (f1 derived from the FP/FN means) over images: image i's
    predicted and ground-truth lanes as xs at ``h_samples[i]`` (negative where absent), its
    ``run_times_ms[i]`` (None: 0 for every image)."""
    if not ground_truth:
        raise ValueError("no images to evaluate")
    if not len(predictions) == len(ground_truth) == len(h_samples):
        raise ValueError(f"{len(predictions)} predictions and {len(h_samples)} h_samples for "
                         f"{len(ground_truth)} ground-truth images")
    run_times_ms = [0.0] * len(ground_truth) if run_times_ms is None else run_times_ms
    totals = np.zeros(3)
    images = zip(predictions, ground_truth, h_samples, run_times_ms, strict=True)
    for i, (pred, gt, rows, run_time) in enumerate(images):
        try:
            totals += bench_image(pred, gt, rows, float(run_time))
        except (ValueError, TypeError) as e:
            raise ValueError(f"image {i}: {e}") from e
    accuracy, fp, fn = (totals / len(ground_truth)).tolist()
    return {"accuracy": accuracy, "fp": fp, "fn": fn, "f1": derived_f1(fp, fn)}
