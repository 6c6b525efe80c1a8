"""The official CurveLanes F1 (vega's / CondLaneNet's ``lane_metric.py``: width 5, IoU > 0.5, 224 x 224).

Per image, ground-truth and predicted lanes (original-image pixels) are scaled to a 224 x 224
canvas with the image's own size, sampled along a natural cubic spline in chord length at every
unit (one canvas pixel) of the chord-length parameter, drawn with ``cv2`` (thickness 5,
coordinates truncated toward zero), and matched one-to-one by the Hungarian algorithm on
``1 - IoU``; a matched pair with IoU > 0.5 is a hit. Totals are summed over the set; precision,
recall and F1 carry the official machine-epsilon terms in their denominators (0, not undefined,
when there is nothing to count). The arithmetic follows the official code operation for
operation in float64, so the counts are the official ones.

Documented deviations from the official code (spec: evaluation.md):
- Repeated consecutive points (chord length 0) are dropped before the spline. The official code
  divides by zero there: with 3 or more points it then fails (``int(nan)``); a lane of two equal
  points draws nothing, as here (a lane reduced to one point draws nothing). Wherever the
  official code does not fail, the result is the same.
- A lane with points always counts as a lane, also when it draws nothing (1 point): as official.
Reading labels and prediction files (and how a missing one counts) is
``srlane.benchmarks.curvelanes``'.
"""
import sys
from collections.abc import Sequence

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

CANVAS = 224  # the official eval_width and eval_height
THICKNESS = 5  # the official lane_width
IOU_THRESHOLD = 0.5
_EPS = sys.float_info.epsilon
_INT32 = 2 ** 31


def scale_lane(points: np.ndarray, width: float, height: float) -> np.ndarray:
    """Original-image pixels -> 224 x 224 canvas: ``x / (width / 224)``, ``y / (height / 224)``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts / np.array([np.true_divide(width, CANVAS), np.true_divide(height, CANVAS)])


def drop_repeats(points: np.ndarray) -> np.ndarray:
    """float64 ``(N, 2)`` points without repeated consecutive points (exact comparison)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
    return pts[keep]


def _moments(padded: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Natural-spline moments ``(B, W, 2)``, coordinate differences and chord lengths of padded lanes.

    ``padded`` repeats each lane's last point up to the width W, so padding chords (set to 1) have
    slope 0; each lane's own entries see exactly the official operations (Thomas algorithm).
    """
    diff = padded[:, 1:] - padded[:, :-1]
    h = np.sqrt(diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1])
    h[np.arange(h.shape[1]) >= counts[:, None] - 1] = 1.0
    slope = diff / h[..., None]
    rhs = 6 * (slope[:, 1:] - slope[:, :-1])
    c = np.empty(rhs.shape[:2])
    d = np.empty_like(rhs)
    for i in range(rhs.shape[1]):
        base = 2 * (h[:, i] + h[:, i + 1])
        if i == 0:
            c[:, 0] = h[:, 1] / base
            d[:, 0] = rhs[:, 0] / base[:, None]
        else:
            base = base - h[:, i] * c[:, i - 1]
            c[:, i] = h[:, i + 1] / base
            d[:, i] = (rhs[:, i] - h[:, i, None] * d[:, i - 1]) / base[:, None]
    m = np.zeros(padded.shape)
    for i in range(rhs.shape[1] - 1, -1, -1):
        # M[n-2] = D[n-3] (M[n-1] is 0, so the general step gives it exactly), then back-substitution.
        active = (i <= counts - 3)[:, None]
        m[:, i + 1] = np.where(active, d[:, i] - c[:, i, None] * m[:, i + 2], 0.0)
    return m, diff, h


def interpolate_lanes(lanes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The official ``spline_interp(step_t=1)`` of many lanes given on the canvas, float64 ``(K, 2)`` each.

    Repeated consecutive points are dropped first. A lane of 0 or 1 point is returned as is (it
    draws nothing). Otherwise, on each segment i of chord length h_i, points at t = 0, 1, ... < h_i
    of ``a + b t + c t^2 + d t^3`` (evaluated as the official code does), then the last point.
    """
    lanes = [drop_repeats(lane) for lane in lanes]
    out: list[np.ndarray] = list(lanes)
    idx = [k for k, lane in enumerate(lanes) if len(lane) >= 2]
    if not idx:
        return out
    counts = np.array([len(lanes[k]) for k in idx])
    longest = counts.max()
    padded = np.empty((len(idx), longest, 2))
    for row, k in enumerate(idx):
        padded[row, :counts[row]] = lanes[k]
        padded[row, counts[row]:] = lanes[k][-1]
    m, diff, h = _moments(padded, counts)
    valid = np.arange(longest - 1) < counts[:, None] - 1
    hv = h[valid][:, None]
    m0, m1 = m[:, :-1][valid], m[:, 1:][valid]
    a = padded[:, :-1][valid]
    b = diff[valid] / hv - (2 * hv * m0 + hv * m1) / 6
    c = m0 / 2
    d = (m1 - m0) / (6 * hv)
    steps = np.ceil(hv[:, 0]).astype(np.int64)  # t = 0, 1, ... while t < h
    start = np.cumsum(steps) - steps
    t = (np.arange(steps.sum()) - np.repeat(start, steps)).astype(np.float64)[:, None]
    a, b, c, d = (np.repeat(v, steps, axis=0) for v in (a, b, c, d))
    samples = a + b * t + c * t * t + d * t * t * t
    per_lane = np.add.reduceat(steps, np.r_[0, np.cumsum(counts - 1)[:-1]])
    bounds = np.r_[0, np.cumsum(per_lane)]
    for row, k in enumerate(idx):
        out[k] = np.concatenate([samples[bounds[row]:bounds[row + 1]], lanes[k][-1:]])
    return out


def interpolate_lane(points: np.ndarray) -> np.ndarray:
    """``interpolate_lanes`` of one lane."""
    return interpolate_lanes([points])[0]


def _draw(canvas: np.ndarray, samples: np.ndarray, color: int) -> None:
    """Draw interpolated points on ``canvas`` in place, the official way (nothing for < 2 points)."""
    pts = np.asarray(samples, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 2:
        return
    if not np.all(np.abs(pts) < _INT32):
        raise ValueError(f"lane coordinates on the canvas must be finite and within int32, got up to "
                         f"{np.abs(pts).max()}")
    cv2.polylines(canvas, [pts.astype(np.int32).reshape(-1, 1, 2)], False, color, THICKNESS, cv2.LINE_8)


def draw_lane(samples: np.ndarray) -> np.ndarray:
    """224 x 224 uint8 canvas (255 on the lane) of interpolated points, as the official code draws them.

    Coordinates are truncated toward zero (``int()``) and consecutive points joined by ``cv2``
    lines of thickness 5 (8-connected; in pixels the body is 7 rows wide). One point draws nothing.
    ``cv2.polylines`` draws the same pixels as the official line-by-line loop in one call.
    """
    canvas = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    _draw(canvas, samples, 255)
    return canvas


def rasterize_lanes(lanes: Sequence[np.ndarray], width: float, height: float) -> np.ndarray:
    """Official masks of lanes in original-image pixels of a ``width x height`` image.

    float32 ``(K, 224 * 224)``, 1 on the lane and 0 elsewhere (drawn as float so that
    ``iou_matrix`` needs no conversion; the pixels are those of the uint8 drawing).
    """
    canvases = np.zeros((len(lanes), CANVAS, CANVAS), dtype=np.float32)
    for canvas, pts in zip(canvases, interpolate_lanes([scale_lane(lane, width, height) for lane in lanes])):
        _draw(canvas, pts, 1)
    return canvases.reshape(len(lanes), -1)


def iou_matrix(gt_masks: np.ndarray, pred_masks: np.ndarray) -> np.ndarray:
    """IoU of every (ground truth, prediction) pair of flattened 0/1 masks; 0 where the union is empty."""
    g = np.asarray(gt_masks, dtype=np.float32)
    p = np.asarray(pred_masks, dtype=np.float32)
    inter = (g @ p.T).astype(np.int64)  # sums of 0/1 below 2**24: exact in float32
    union = g.sum(axis=1).astype(np.int64)[:, None] + p.sum(axis=1).astype(np.int64)[None, :] - inter
    out = np.zeros(inter.shape, dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def count_hits(iou: np.ndarray, iou_threshold: float = IOU_THRESHOLD) -> int:
    """Hits of the official assignment: Hungarian on ``1 - IoU``, a matched pair counts when IoU > threshold."""
    if iou.size == 0:
        return 0
    rows, cols = linear_sum_assignment(1 - iou)
    return int(np.count_nonzero(iou[rows, cols] > iou_threshold))


def _lanes(lanes, what: str) -> list[np.ndarray]:
    """float64 ``(N, 2)`` lanes with at least one point (empty lanes dropped), checked."""
    out = []
    for j, lane in enumerate(lanes):
        pts = np.asarray(lane, dtype=np.float64)
        if pts.size == 0:
            continue
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"{what} lane {j}: expected an (N, 2) array of x, y pixels, got shape {pts.shape}")
        if not np.all(np.isfinite(pts)):
            raise ValueError(f"{what} lane {j}: coordinates must be finite")
        out.append(pts)
    return out


def score_image(gt_lanes: Sequence[np.ndarray], pred_lanes: Sequence[np.ndarray], width: float, height: float,
                iou_threshold: float = IOU_THRESHOLD) -> tuple[int, int, int]:
    """``(hits, predicted lanes, ground-truth lanes)`` of one ``width x height`` image (lanes in its pixels).

    Lanes without points are dropped; every other lane counts, also a 1-point lane (which matches
    nothing). Score-filter predictions before (``srlane.benchmarks.curvelanes.read_lines_json``).
    """
    if not (width > 0 and height > 0):
        raise ValueError(f"image size must be positive, got {width} x {height}")
    gt = _lanes(gt_lanes, "ground-truth")
    pred = _lanes(pred_lanes, "predicted")
    if not gt or not pred:
        return 0, len(pred), len(gt)
    masks = rasterize_lanes(gt + pred, width, height)
    return count_hits(iou_matrix(masks[:len(gt)], masks[len(gt):]), iou_threshold), len(pred), len(gt)


def curvelanes_metrics(hits: int, num_pred: int, num_gt: int) -> dict:
    """``tp, fp, fn, precision, recall, f1`` and ``metric`` (= f1), with the official epsilon terms."""
    precision = hits / (num_pred + _EPS)
    recall = hits / (num_gt + _EPS)
    f1 = 2 * precision * recall / (precision + recall + _EPS)
    return {"tp": int(hits), "fp": int(num_pred - hits), "fn": int(num_gt - hits), "precision": precision,
            "recall": recall, "f1": f1, "metric": f1}


class CurveLanesEvaluator:
    """Official CurveLanes F1 accumulated over images of any sizes: ``add`` each image, then ``summary``."""

    def __init__(self, iou_threshold: float = IOU_THRESHOLD):
        if not 0 <= iou_threshold < 1:
            raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.hits = self.num_pred = self.num_gt = self.num_images = 0

    def add(self, gt_lanes: Sequence[np.ndarray], pred_lanes: Sequence[np.ndarray], width: float,
            height: float) -> tuple[int, int, int]:
        """Score one image (lanes in its original pixels); returns its ``(hits, num_pred, num_gt)``."""
        counts = score_image(gt_lanes, pred_lanes, width, height, self.iou_threshold)
        self.hits += counts[0]
        self.num_pred += counts[1]
        self.num_gt += counts[2]
        self.num_images += 1
        return counts

    def summary(self) -> dict:
        """``curvelanes_metrics`` of the totals, with ``num_images``."""
        return {**curvelanes_metrics(self.hits, self.num_pred, self.num_gt), "num_images": self.num_images}
