"""The official OpenLane 2D F-score (``eval/LANE_evaluation/lane2d``, C++, derived from CULane's):
CULane's drawing and matching on a 1920 x 1280 canvas, lanes of one category only by default.

Per image (rules in docs/openlane.md): lanes with fewer than 2 points are dropped (they count
neither as annotations nor as detections); each lane's points are sorted by v; lanes are drawn
as in CULane (``srlane.evaluation.culane``: the same spline and rasteriser) with width 30; an
annotation and a detection of different categories have similarity 0 unless ``category_aware``
is False (the tool's ``-k``); two lanes both off the canvas have IoU NaN (0 / 0); the tool's own
Kuhn-Munkres matches them (``kuhn_munkres``: tolerance 0.01, NaN never tight); a matched pair is
a true positive when its similarity > the IoU threshold (0.3).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from srlane.evaluation.culane import CULaneEvaluator, counts_to_metrics

WIDTH = 30  # the official tool's defaults (evaluate.cpp: width_lane, iou_threshold, im_width, im_height)
IOU_THRESHOLD = 0.3
IMAGE_SHAPE = (1280, 1920)  # (height, width)


def scored_lanes(lanes: Sequence[np.ndarray], categories: Sequence[int]) -> tuple[list[np.ndarray], list[int]]:
    """The lanes the tool scores and their categories: those of >= 2 points, each sorted by v
    (ascending; stable, so points in one row keep their order)."""
    kept, kinds = [], []
    for lane, category in zip(lanes, categories, strict=True):
        pts = np.asarray(lane, dtype=np.float64).reshape(-1, 2)
        if len(pts) >= 2:
            kept.append(pts[np.argsort(pts[:, 1], kind="stable")])
            kinds.append(int(category))
    return kept, kinds


class OpenLaneEvaluator:
    """OpenLane's 2D F-score over a fixed set of annotated images.

    ``annotations``: per image, its lanes as ``(N, 2)`` pixel arrays; ``categories``: per image,
    each lane's OpenLane category id. The annotation masks are kept after the first call.
    ``workers`` as ``CULaneEvaluator``'s.
    """

    def __init__(self, annotations: Sequence[Sequence[np.ndarray]], categories: Sequence[Sequence[int]],
                 category_aware: bool = True, iou_threshold: float = IOU_THRESHOLD, width: int = WIDTH,
                 img_shape: tuple[int, int] = IMAGE_SHAPE, workers: int | None = None) -> None:
        if len(categories) != len(annotations):
            raise ValueError(f"categories for {len(categories)} images, annotations for {len(annotations)}")
        scored = [scored_lanes(lanes, kinds) for lanes, kinds in zip(annotations, categories)]
        self.category_aware = category_aware
        self.iou_threshold = float(iou_threshold)
        self._lanes = CULaneEvaluator([lanes for lanes, _ in scored], iou_thresholds=(self.iou_threshold,),
                                      width=width, img_shape=img_shape, workers=workers,
                                      lane_kinds=[kinds for _, kinds in scored] if category_aware else None,
                                      official_matching=True)

    def image_counts(self, predictions: Sequence[Sequence[np.ndarray]],
                     categories: Sequence[Sequence[int]]) -> np.ndarray:
        """``(images, 3)`` int64: each image's tp, fp, fn, as the tool counts them."""
        if len(categories) != len(predictions):
            raise ValueError(f"categories for {len(categories)} images, predictions for {len(predictions)}")
        scored = [scored_lanes(lanes, kinds) for lanes, kinds in zip(predictions, categories)]
        scores = self._lanes.score_images([lanes for lanes, _ in scored], kinds=[kinds for _, kinds in scored])
        tp = scores.tp[:, 0]
        return np.stack([tp, scores.num_pred - tp, scores.num_anno - tp], axis=1)

    @staticmethod
    def summarize(counts: np.ndarray) -> dict:
        """``{"tp", "fp", "fn", "precision", "recall", "f1"}`` of per-image counts (``image_counts``)
        summed over the images; undefined ratios are None."""
        tp, fp, fn = (int(v) for v in np.asarray(counts, np.int64).reshape(-1, 3).sum(axis=0))
        return counts_to_metrics(tp, fp, fn)

    def evaluate(self, predictions: Sequence[Sequence[np.ndarray]], categories: Sequence[Sequence[int]]) -> dict:
        """``summarize`` of the images' counts."""
        return self.summarize(self.image_counts(predictions, categories))
