"""Pictures of lanes: predictions in one colour, ground truth in another (``--view``, tools).

Lanes with a kind (``srlane.lane_kinds``: predictions of a network with a category head, labels
with categories) are drawn as they are painted: white or yellow, solid or dashed, single or
double, curbs in KIND_COLOURS["curb"] and dotted, each over an outline in its layer's colour
(ground truth green and twice as wide, prediction red on top), with a legend row per kind shown."""
from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from srlane.fileio import atomic_write_bytes
from srlane.lane_kinds import LANE_KINDS
from srlane.lanes import Lane, has_kinds

GT_COLOUR = (0, 200, 0)  # BGR green, drawn thick underneath
PRED_COLOUR = (0, 0, 255)  # BGR red, drawn thin on top
# the report's gallery (BGR): true positive predictions green, false positives red, missed
# annotations (false negatives) yellow, matched annotations white
MATCH_COLOURS = {"tp": (60, 220, 60), "fp": (40, 40, 255), "fn": (0, 230, 255), "matched": (255, 255, 255)}
KIND_COLOURS = {"white": (255, 255, 255), "yellow": (0, 210, 255), "curb": (255, 80, 230)}  # BGR, by LaneKind.colour
# the strokes of each LaneKind.pattern: (side, style), side -1 left, 0 centre, +1 right of the lane
PATTERN_STROKES = {"solid": ((0, "solid"),), "dashed": ((0, "dashed"),), "curb": ((0, "dotted"),),
                   "double-solid": ((-1, "solid"), (1, "solid")), "double-dashed": ((-1, "dashed"), (1, "dashed")),
                   "left-dashed": ((-1, "dashed"), (1, "solid")), "left-solid": ((-1, "solid"), (1, "dashed"))}
# (drawn, gap) lengths along the lane in line widths
STYLE_PERIODS = {"solid": None, "dashed": (6.0, 5.0), "dotted": (1.0, 2.0)}
Layer = tuple  # (label, lanes, colour, width factor) or (label, lanes, colour, width factor, kinds per lane)


def lane_pixels(lane: Lane, width: int, height: int) -> np.ndarray:
    """The decoder's own points of a lane (``Lane.points``) scaled to pixels of a ``width`` x
    ``height`` image, for drawing: the points as decoded, not resampled on rows (the prediction
    files hold ``Lane.pixel_points``, the spline sampled every 8 rows from the crop down)."""
    return lane.points * np.array([width, height], dtype=np.float64)


def _polyline(out: np.ndarray, points: np.ndarray, colour: tuple[int, int, int], width: int,
              line_type: int = cv2.LINE_AA) -> None:
    polyline = np.round(np.asarray(points)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(out, [polyline], False, colour, width, line_type)


def _resampled(points: np.ndarray) -> np.ndarray:
    """The polyline ``points`` resampled every pixel of its length (at least its two ends)."""
    points = np.asarray(points, dtype=np.float64)
    along = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))])
    at = np.linspace(0.0, along[-1], max(2, int(np.ceil(along[-1])) + 1))
    return np.stack([np.interp(at, along, points[:, 0]), np.interp(at, along, points[:, 1])], axis=1)


def kind_strokes(points: np.ndarray, kind: int, width: int, unit: int | None = None) -> list[np.ndarray]:
    """The polylines that draw a lane of ``kind`` along ``points`` at line ``width``: one or two
    lines (a double line's two ``1.5 * width`` either side of the lane), each solid or cut into
    dashes or dots (``STYLE_PERIODS`` in ``unit``s, default ``width``) along its length."""
    path = _resampled(points)
    tangent = np.gradient(path, axis=0)
    tangent /= np.maximum(np.hypot(*tangent.T), 1e-9)[:, None]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal *= np.where(normal[:, :1] < 0, 1.0, -1.0)  # towards smaller x: the lane's left in the picture
    strokes = []
    for side, style in PATTERN_STROKES[LANE_KINDS[kind].pattern]:
        line = path + normal * (side * 1.5 * width)
        period = STYLE_PERIODS[style]
        if period is None:
            strokes.append(line)
            continue
        drawn, gap = period[0] * (unit or width), period[1] * (unit or width)
        on = np.arange(len(line)) % (drawn + gap) < drawn  # one sample per pixel of length
        runs = np.split(np.arange(len(line)), np.flatnonzero(np.diff(on.astype(np.int8))) + 1)
        strokes += [line[run] for run in runs if on[run[0]] and len(run) >= 2]
    return strokes


def draw_kind(out: np.ndarray, points: np.ndarray, kind: int, width: int,
              outline: tuple[int, int, int] | None = None, unit: int | None = None) -> None:
    """Draw a lane of ``kind`` in place at line ``width`` (dashes in ``unit``s: ``kind_strokes``),
    each stroke edged in ``outline`` (none when None)."""
    strokes = kind_strokes(points, kind, width, unit)
    if outline is not None:
        for stroke in strokes:
            _polyline(out, stroke, outline, width + 2 * max(1, width // 4))
    for stroke in strokes:  # not anti-aliased: the paint's own colour, unmixed with the edge's
        _polyline(out, stroke, KIND_COLOURS[LANE_KINDS[kind].colour], width, cv2.LINE_8)


def draw_layers(img: np.ndarray, layers: Sequence[Layer]) -> np.ndarray:
    """A copy of the BGR ``img`` with each layer ``(label, lanes, colour, width factor)`` drawn as
    ``(N, 2)`` pixel polylines in that order, and a legend ``label (number of lanes)`` per layer.
    A layer with a fifth element, each lane's kind, draws its lanes as they are painted
    (``draw_kind``, each stroke edged in the layer's colour), and the legend gets a row per kind shown."""
    out = img.copy()
    thickness = max(2, round(img.shape[1] / 300))
    shown: list[int] = []
    for label, lanes, colour, factor, *kinds in layers:
        for j, points in enumerate(lanes):
            if len(points) < 2:
                continue
            if not kinds:
                _polyline(out, points, colour, factor * thickness)
                continue
            kind = int(kinds[0][j])
            shown += [kind] if kind not in shown else []
            draw_kind(out, points, kind, factor * thickness, colour, 2 * thickness)  # dashes alike in every layer
    scale = max(0.4, img.shape[1] / 1600)
    weight = max(1, round(2 * scale))
    row_height, sample = 30 * scale, int(60 * scale)
    texts = [f"{layer[0]} ({len(layer[1])})" for layer in layers]
    shown.sort(key=list(LANE_KINDS).index)
    names = [LANE_KINDS[kind].name for kind in shown]
    widths = [cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)[0][0] for text in texts]
    widths += [sample + 10 + cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)[0][0] for name in names]
    if widths:  # a dark box under the legend, so that every colour reads on sky and road
        box = out[:int((len(texts) + len(names) + 0.4) * row_height), :min(out.shape[1], max(widths) + 20)]
        box[:] = (box * 0.35).astype(out.dtype)
    for row, (text, layer) in enumerate(zip(texts, layers)):
        origin = (10, int((row + 1) * row_height))
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, layer[2], weight, cv2.LINE_AA)
    for row, (kind, name) in enumerate(zip(shown, names), start=len(texts)):
        y = (row + 0.7) * row_height
        draw_kind(out, np.array([[10.0, y], [10.0 + sample, y]]), kind, max(1, round(4 * scale)))
        cv2.putText(out, name, (20 + sample, int((row + 1) * row_height)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), weight, cv2.LINE_AA)
    return out


def draw_lanes(img: np.ndarray, predictions: Sequence[np.ndarray],
               ground_truth: Sequence[np.ndarray] | None = None, prediction_kinds: Sequence[int] | None = None,
               truth_kinds: Sequence[int] | None = None) -> np.ndarray:
    """A copy of the BGR ``img`` with ground-truth and predicted ``(N, 2)`` pixel polylines and a
    legend (without a ground-truth entry when ``ground_truth`` is None: images without labels);
    each with its lanes' kinds when given (``draw_layers``)."""
    def layer(label: str, lanes: Sequence[np.ndarray], colour: tuple[int, int, int], factor: int,
              kinds: Sequence[int] | None) -> Layer:
        return (label, lanes, colour, factor) if kinds is None else (label, lanes, colour, factor, kinds)

    truth = [layer("ground truth", ground_truth, GT_COLOUR, 2, truth_kinds)] if ground_truth is not None else []
    return draw_layers(img, [*truth, layer("prediction", predictions, PRED_COLOUR, 1, prediction_kinds)])


def draw_matches(img: np.ndarray, annotations: Sequence[np.ndarray], predictions: Sequence[np.ndarray],
                 annotation_hit: np.ndarray, prediction_hit: np.ndarray) -> np.ndarray:
    """A copy of the BGR ``img`` with the true positive, false positive and false negative lanes
    in their colours (``MATCH_COLOURS``) and a legend: matched annotations thin white over the
    true positive predictions, missed annotations the false negatives."""
    def pick(lanes: Sequence[np.ndarray], keep: np.ndarray, value: bool) -> list[np.ndarray]:
        return [lane for lane, hit in zip(lanes, keep, strict=True) if bool(hit) == value]

    return draw_layers(img, [
        ("TP prediction", pick(predictions, prediction_hit, True), MATCH_COLOURS["tp"], 3),
        ("matched ground truth", pick(annotations, annotation_hit, True), MATCH_COLOURS["matched"], 1),
        ("FP prediction", pick(predictions, prediction_hit, False), MATCH_COLOURS["fp"], 2),
        ("FN ground truth", pick(annotations, annotation_hit, False), MATCH_COLOURS["fn"], 2),
    ])


def draw_decoded_lanes(img: np.ndarray, lanes: Sequence[Lane], ground_truth: Sequence[np.ndarray] | None = None,
                       truth_kinds: Sequence[int] | None = None) -> np.ndarray:
    """``draw_lanes`` of decoded lanes, placed in the pixels of ``img`` (the image they were
    predicted for), drawn with their kinds when they have them (``has_kinds``)."""
    height, width = img.shape[:2]
    kinds = [lane.category for lane in lanes] if has_kinds(lanes) else None
    return draw_lanes(img, [lane_pixels(lane, width, height) for lane in lanes], ground_truth, kinds, truth_kinds)


def write_image(path: str, img: np.ndarray) -> None:
    """``img`` encoded in memory, then written atomically (a full disk is one ``DiskFullError``
    line naming ``path``: OpenCV's own file writer only says it failed). The format follows the
    extension (JPEG without one)."""
    done, encoded = cv2.imencode(os.path.splitext(path)[1] or ".jpg", img)
    if not done:
        raise OSError(f"OpenCV cannot encode image {path}")
    atomic_write_bytes(path, encoded.data)


def write_visualizations(dataset, predictions: Sequence[Sequence[Lane]], folder: str) -> int:
    """One picture per image of ``dataset`` (its ``records``), named as its image under ``folder``;
    the labels' lane kinds drawn when the records have them."""
    for record, lanes in zip(dataset.records, predictions, strict=True):
        img = cv2.imread(record.img_path, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"cannot read image {record.img_path}")
        picture = draw_decoded_lanes(img, lanes, record.lanes, record.lane_categories)
        write_image(os.path.join(folder, record.img_name), picture)
    return len(predictions)
