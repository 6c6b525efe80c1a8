"""Pictures of lanes: predictions in one colour, ground truth in another (``--view``, tools)."""
from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from srlane.fileio import atomic_write_bytes
from srlane.lanes import Lane

GT_COLOUR = (0, 200, 0)  # BGR green, drawn thick underneath
PRED_COLOUR = (0, 0, 255)  # BGR red, drawn thin on top
# the report's gallery (BGR): true positive predictions green, false positives red, missed
# annotations (false negatives) yellow, matched annotations white
MATCH_COLOURS = {"tp": (60, 220, 60), "fp": (40, 40, 255), "fn": (0, 230, 255), "matched": (255, 255, 255)}


def lane_pixels(lane: Lane, width: int, height: int) -> np.ndarray:
    """The decoder's own points of a lane (``Lane.points``) scaled to pixels of a ``width`` x
    ``height`` image, for drawing: the points as decoded, not resampled on rows (the prediction
    files hold ``Lane.pixel_points``, the spline sampled every 8 rows from the crop down)."""
    return lane.points * np.array([width, height], dtype=np.float64)


def draw_layers(img: np.ndarray, layers: Sequence[tuple[str, Sequence[np.ndarray], tuple[int, int, int], int]]
                ) -> np.ndarray:
    """A copy of the BGR ``img`` with each layer ``(label, lanes, colour, width factor)`` drawn as
    ``(N, 2)`` pixel polylines in that order, and a legend ``label (number of lanes)`` per layer."""
    out = img.copy()
    thickness = max(2, round(img.shape[1] / 300))
    for _, lanes, colour, factor in layers:
        for points in lanes:
            if len(points) >= 2:
                polyline = np.round(np.asarray(points)).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(out, [polyline], False, colour, factor * thickness, cv2.LINE_AA)
    scale = max(0.4, img.shape[1] / 1600)
    weight = max(1, round(2 * scale))
    texts = [f"{label} ({len(lanes)})" for label, lanes, _, _ in layers]
    widths = [cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)[0][0] for text in texts]
    if texts:  # a dark box under the legend, so that every colour reads on sky and road
        box = out[:int((len(texts) + 0.4) * 30 * scale), :min(out.shape[1], max(widths) + 20)]
        box[:] = (box * 0.35).astype(out.dtype)
    for row, (text, (_, _, colour, _)) in enumerate(zip(texts, layers)):
        origin = (10, int((row + 1) * 30 * scale))
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, weight, cv2.LINE_AA)
    return out


def draw_lanes(img: np.ndarray, predictions: Sequence[np.ndarray],
               ground_truth: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """A copy of the BGR ``img`` with ground-truth and predicted ``(N, 2)`` pixel polylines and a
    legend (without a ground-truth entry when ``ground_truth`` is None: images without labels)."""
    truth = [("ground truth", ground_truth, GT_COLOUR, 2)] if ground_truth is not None else []
    return draw_layers(img, [*truth, ("prediction", predictions, PRED_COLOUR, 1)])


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


def draw_decoded_lanes(img: np.ndarray, lanes: Sequence[Lane],
                       ground_truth: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """``draw_lanes`` of decoded lanes, placed in the pixels of ``img`` (the image they were
    predicted for)."""
    height, width = img.shape[:2]
    return draw_lanes(img, [lane_pixels(lane, width, height) for lane in lanes], ground_truth)


def write_image(path: str, img: np.ndarray) -> None:
    """``img`` encoded in memory, then written atomically (a full disk is one ``DiskFullError``
    line naming ``path``: OpenCV's own file writer only says it failed). The format follows the
    extension (JPEG without one)."""
    done, encoded = cv2.imencode(os.path.splitext(path)[1] or ".jpg", img)
    if not done:
        raise OSError(f"OpenCV cannot encode image {path}")
    atomic_write_bytes(path, encoded.data)


def write_visualizations(dataset, predictions: Sequence[Sequence[Lane]], folder: str) -> int:
    """One picture per image of ``dataset`` (its ``records``), named as its image under ``folder``."""
    for record, lanes in zip(dataset.records, predictions, strict=True):
        img = cv2.imread(record.img_path, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"cannot read image {record.img_path}")
        picture = draw_decoded_lanes(img, lanes, record.lanes)
        write_image(os.path.join(folder, record.img_name), picture)
    return len(predictions)
