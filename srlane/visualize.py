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


def lane_pixels(lane: Lane, width: int, height: int) -> np.ndarray:
    """The decoder's own points of a lane (``Lane.points``) scaled to pixels of a ``width`` x
    ``height`` image, for drawing: the points as decoded, not resampled on rows (the prediction
    files hold ``Lane.pixel_points``, the spline sampled every 8 rows from the crop down)."""
    return lane.points * np.array([width, height], dtype=np.float64)


def draw_lanes(img: np.ndarray, predictions: Sequence[np.ndarray],
               ground_truth: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """A copy of the BGR ``img`` with ground-truth and predicted ``(N, 2)`` pixel polylines and a
    legend (without a ground-truth entry when ``ground_truth`` is None: images without labels)."""
    out = img.copy()
    thickness = max(2, round(img.shape[1] / 300))
    drawn = ((ground_truth if ground_truth is not None else [], GT_COLOUR, 2 * thickness),
             (predictions, PRED_COLOUR, thickness))
    for lanes, colour, width in drawn:
        for points in lanes:
            if len(points) >= 2:
                polyline = np.round(np.asarray(points)).astype(np.int32).reshape(-1, 1, 2)
                cv2.polylines(out, [polyline], False, colour, width, cv2.LINE_AA)
    scale = max(0.4, img.shape[1] / 1600)
    legend = [(f"prediction ({len(predictions)})", PRED_COLOUR)]
    if ground_truth is not None:
        legend.insert(0, (f"ground truth ({len(ground_truth)})", GT_COLOUR))
    for row, (text, colour) in enumerate(legend):
        origin = (10, int((row + 1) * 30 * scale))
        cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, max(1, round(2 * scale)), cv2.LINE_AA)
    return out


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
