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
- Scored predictions (``{"score": s, "points": [...]}``) are all kept when no score threshold is
  given (the official code then fails).
- In ``evaluate_curvelanes_files`` a missing prediction file counts as 0 lanes with one warning
  giving the number of such files (the official script skips the image, ground truth included);
  a missing label file is an error (the official script skips the image silently).
- ``.lines.txt`` predictions are read strictly: a value that is not a number or an odd number of
  values on a line is an error naming the file and line.
"""
import json
import os
import struct
import sys
import warnings
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

CANVAS = 224  # the official eval_width and eval_height
THICKNESS = 5  # the official lane_width
IOU_THRESHOLD = 0.5
_EPS = sys.float_info.epsilon
_INT32 = 2 ** 31


class CurveLanesFormatError(ValueError):
    """A malformed lane file; the one-line message names the file, the place and what was expected."""


def _number(value, path, where: str) -> float:
    """``float(value)`` of a string or number, finite, or a one-line ``CurveLanesFormatError``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None:
        raise CurveLanesFormatError(f"{path}: {where} {_short(value)} is not a number") from None
    if not np.isfinite(number):
        raise CurveLanesFormatError(f"{path}: {where} {_short(value)} is not a finite number")
    return number


def _short(value) -> str:
    """``repr`` of a value, on one line and at most about 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _points(lane, path, i: int) -> np.ndarray:
    """float64 ``(N, 2)`` x, y of one json lane (a list of ``{"x", "y"}`` objects)."""
    if not isinstance(lane, list):
        raise CurveLanesFormatError(f"{path}: lane {i} is {_short(lane)}, expected a list of "
                                    '{"x": ..., "y": ...} points')
    try:
        pts = np.array([[float(p["x"]), float(p["y"])] for p in lane], dtype=np.float64).reshape(-1, 2)
        if np.isfinite(pts).all():
            return pts
    except (TypeError, KeyError, ValueError, IndexError):
        pass
    for j, p in enumerate(lane):  # slow path: find the first bad point for the message
        if not isinstance(p, dict) or "x" not in p or "y" not in p:
            raise CurveLanesFormatError(f'{path}: lane {i} point {j}: {_short(p)}, expected {{"x": ..., "y": ...}}')
        _number(p["x"], path, f"lane {i} point {j}: x")
        _number(p["y"], path, f"lane {i} point {j}: y")
    raise AssertionError("unreachable: a bad point was not found")


def read_lines_json(path: str | os.PathLike, score_threshold: float | None = None) -> list[np.ndarray]:
    """Lanes of a ``.lines.json`` file as float64 ``(N, 2)`` x, y arrays, in file order.

    ``{"Lines": [lane, ...]}``; a lane is a list of ``{"x": ..., "y": ...}`` points (strings or
    numbers) or a scored prediction ``{"score": s, "points": [...]}``, kept only when
    ``s > score_threshold`` (all kept when the threshold is None). Lanes with no points are kept
    here (scoring drops them). Anything else raises ``CurveLanesFormatError`` (lane and point
    indices in messages are 0-based).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise CurveLanesFormatError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    except UnicodeDecodeError as e:
        raise CurveLanesFormatError(f"{path}: not UTF-8 text (byte {e.start})") from e
    if not isinstance(data, dict) or "Lines" not in data:
        raise CurveLanesFormatError(f'{path}: no "Lines" key, expected '
                                    '{"Lines": [[{"x": ..., "y": ...}, ...], ...]}')
    lines = data["Lines"]
    if not isinstance(lines, list):
        raise CurveLanesFormatError(f'{path}: "Lines" is {_short(lines)}, expected a list of lanes')
    lanes = []
    for i, lane in enumerate(lines):
        if isinstance(lane, dict):
            if "score" not in lane or "points" not in lane:
                raise CurveLanesFormatError(f'{path}: lane {i} is an object with keys {sorted(lane)}, expected a '
                                            'list of points or {"score": ..., "points": [...]}')
            score = _number(lane["score"], path, f"lane {i}: score")
            if score_threshold is not None and not score > score_threshold:
                continue
            lane = lane["points"]
        lanes.append(_points(lane, path, i))
    return lanes


def read_lines_txt(path: str | os.PathLike) -> list[np.ndarray]:
    """Lanes of a ``.lines.txt`` file (``x y x y ...`` per text line) as float64 ``(N, 2)`` arrays.

    A blank line is a lane with 0 points; a value that is not a finite number or an odd number of
    values raises ``CurveLanesFormatError`` naming the file and the (1-based) line.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lanes = []
    for k, line in enumerate(text.splitlines(), 1):
        values = [_number(v, path, f"line {k}: value") for v in line.split()]
        if len(values) % 2:
            raise CurveLanesFormatError(f"{path}: line {k}: {len(values)} values, expected x y pairs")
        lanes.append(np.array(values, dtype=np.float64).reshape(-1, 2))
    return lanes


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
    nothing). Score-filter predictions before (``read_lines_json``).
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


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when it cannot be found."""
    f.seek(2)
    while True:
        byte = f.read(1)
        if byte != b"\xff":
            return None
        marker = f.read(1)
        while marker == b"\xff":
            marker = f.read(1)
        if not marker or marker[0] in (0xD9, 0xDA):  # end of file / of image, or scan data before a frame
            return None
        if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD8:  # markers without a segment
            continue
        raw = f.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0]
        if marker[0] in _SOF:
            raw = f.read(5)
            if len(raw) < 5:
                return None
            _, height, width = struct.unpack(">BHH", raw)
            return (width, height) if width and height else None
        f.seek(length - 2, os.SEEK_CUR)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image as stored (no EXIF rotation, like ``imagesize.get``).

    PNG and JPEG sizes come from the header alone; other files are decoded with ``cv2.imread``.
    """
    with open(path, "rb") as f:
        head = f.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return width, height
        if head[:2] == b"\xff\xd8" and (size := _jpeg_size(f)) is not None:
            return size
    image = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: cannot read the image size (not a readable image)")
    return image.shape[1], image.shape[0]


def label_path(root: str | os.PathLike, name: str) -> str:
    """``valid/images/x.jpg -> ROOT/valid/labels/x.lines.json`` (the last ``images`` folder becomes ``labels``)."""
    parts = name.split("/")
    folders = [i for i, part in enumerate(parts[:-1]) if part == "images"]
    if not folders:
        raise ValueError(f"image name {name!r} has no 'images' folder, expected e.g. 'valid/images/<hash>.jpg'")
    parts[folders[-1]] = "labels"
    return os.path.join(root, os.path.splitext("/".join(parts))[0] + ".lines.json")


def read_prediction(pred_dir: str | os.PathLike, name: str,
                    score_threshold: float | None = None) -> list[np.ndarray] | None:
    """Predicted lanes of an image from ``PRED/<name without extension>.lines.json`` or ``.lines.txt``.

    None when neither exists; both existing is an error (which one is meant is unclear).
    """
    stem = os.path.join(pred_dir, os.path.splitext(name)[0])
    json_path, txt_path = stem + ".lines.json", stem + ".lines.txt"
    has_json, has_txt = os.path.exists(json_path), os.path.exists(txt_path)
    if has_json and has_txt:
        raise ValueError(f"both {json_path} and {txt_path} exist: keep one prediction file per image")
    if has_json:
        return read_lines_json(json_path, score_threshold)
    return read_lines_txt(txt_path) if has_txt else None


def evaluate_curvelanes_files(root: str | os.PathLike, pred_dir: str | os.PathLike, names: Sequence[str],
                              size_of: Callable[[str], tuple[float, float]] | None = None,
                              iou_threshold: float = IOU_THRESHOLD, score_threshold: float | None = None) -> dict:
    """Official CurveLanes F1 of the predictions under ``pred_dir`` for the images ``names`` (relative to ``root``).

    Labels are read from ``label_path(root, name)``, predictions by ``read_prediction`` (a missing
    file is 0 lanes, reported by one warning). ``size_of(name) -> (width, height)`` gives each
    image's size; by default it is read from the header of ``root/name``.
    """
    size_of = size_of or (lambda name: image_size(os.path.join(root, name)))
    evaluator = CurveLanesEvaluator(iou_threshold)
    missing = []
    for name in names:
        gt = read_lines_json(label_path(root, name))
        pred = read_prediction(pred_dir, name, score_threshold)
        if pred is None:
            missing.append(name)
            pred = []
        evaluator.add(gt, pred, *size_of(name))
    if missing:
        warnings.warn(f"{len(missing)} of {len(names)} prediction files are missing (counted as 0 lanes), e.g. "
                      f"{os.path.join(pred_dir, os.path.splitext(missing[0])[0])}.lines.json", stacklevel=2)
    return evaluator.summary()
