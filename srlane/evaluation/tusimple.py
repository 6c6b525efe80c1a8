"""The official TuSimple ``LaneEval`` metric, quirks included (spec: evaluation.md).

Accuracy, FP and FN are plain means over images of the per-image scores of ``LaneEval.bench``;
the F1 some repositories print is derived from those means (precision = 1 - FP, recall =
(1 - FP) / (1 - FP + FN)) and is labelled as such.
"""
import json
import os

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


def _check_record(record, required: tuple[str, ...], where: str) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a json object, got {type(record).__name__}")
    missing = [k for k in required if k not in record]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")


def tusimple_metric(predictions: list[dict], ground_truth: list[dict],
                    pred_where: list[str] | None = None, gt_where: list[str] | None = None) -> dict:
    """``{"accuracy", "fp", "fn", "f1"}`` (f1 derived from the FP/FN means) of json-line records.

    Both lists must cover the same images (``raw_file``) exactly once. ``*_where`` name each record
    in errors (default: its index).
    """
    pred_where = pred_where or [f"prediction {i}" for i in range(len(predictions))]
    gt_where = gt_where or [f"ground truth {i}" for i in range(len(ground_truth))]
    gts = {}
    for record, where in zip(ground_truth, gt_where):
        _check_record(record, ("raw_file", "lanes", "h_samples"), where)
        if record["raw_file"] in gts:
            raise ValueError(f"{where}: image {record['raw_file']!r} appears twice in the ground truth")
        gts[record["raw_file"]] = record
    seen = set()
    totals = np.zeros(3)
    for record, where in zip(predictions, pred_where):
        _check_record(record, ("raw_file", "lanes", "run_time"), where)
        raw_file = record["raw_file"]
        if raw_file not in gts:
            raise ValueError(f"{where}: image {raw_file!r} is not in the ground truth")
        if raw_file in seen:
            raise ValueError(f"{where}: image {raw_file!r} appears twice in the predictions")
        seen.add(raw_file)
        gt = gts[raw_file]
        try:
            totals += bench_image(record["lanes"], gt["lanes"], gt["h_samples"], float(record["run_time"]))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where} ({raw_file}): {e}") from e
    if len(seen) != len(gts):
        absent = [name for name in gts if name not in seen]
        raise ValueError(f"{len(absent)} ground-truth image(s) have no prediction, e.g. {absent[0]!r}")
    if not gts:
        raise ValueError("no images to evaluate")
    accuracy, fp, fn = (totals / len(gts)).tolist()
    return {"accuracy": accuracy, "fp": fp, "fn": fn, "f1": derived_f1(fp, fn)}


def read_json_lines(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Records of a json-lines file and their ``file:line`` names (blank lines are not records)."""
    records, where = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: malformed json ({e.msg})") from e
            where.append(f"{path}:{number}")
    return records, where


def evaluate_tusimple_files(pred_path: str | os.PathLike, gt_path: str | os.PathLike) -> dict:
    """``tusimple_metric`` of a prediction and a ground-truth json-lines file."""
    preds, pred_where = read_json_lines(pred_path)
    gts, gt_where = read_json_lines(gt_path)
    return tusimple_metric(preds, gts, pred_where, gt_where)
