"""Training targets from lane polylines (spec sections 3-4): ``gt_lane`` rows and angle maps.

Everything is in network-input pixels (``img_w x img_h``, y down). The values equal the
release's ``GenerateLaneLine.transform_annotation`` bit for bit: the same scipy spline, the same
straight-line extrapolation (``np.polyfit``) and the same ``math.atan``; only the loops are
replaced by array operations (one spline evaluation per lane serves all sample rows).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.interpolate import InterpolatedUnivariateSpline

from srlane.lane_kinds import IGNORE_INDEX, head_class

INVALID = -1e5
HORIZONTAL_DEGREES = 5.0


def prepare_lanes(lanes: Sequence[Sequence[Sequence[float]]]) -> list[np.ndarray]:
    """Spec 3.1: drop lanes with < 2 points, sort bottom first, drop repeated ys (first kept),
    drop nearly horizontal lanes. Returns float64 ``(n, 2)`` arrays."""
    return [pts for _, pts in prepare_lanes_indexed(lanes)]


def prepare_lanes_indexed(lanes: Sequence[Sequence[Sequence[float]]]) -> list[tuple[int, np.ndarray]]:
    """``prepare_lanes`` with the index in ``lanes`` of each kept lane."""
    prepared = []
    for index, lane in enumerate(lanes):
        pts = np.asarray(lane, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 2:
            continue
        if not np.all(np.isfinite(pts)):
            raise ValueError(f"lane has non-finite points: {pts.tolist()}")
        pts = pts[np.argsort(-pts[:, 1], kind="stable")]
        _, first = np.unique(pts[:, 1], return_index=True)
        pts = pts[np.sort(first)]
        if len(pts) < 2 or not _steep_enough(pts):
            continue
        prepared.append((index, pts))
    return prepared


def _steep_enough(pts: np.ndarray) -> bool:
    x0, y0 = float(pts[0, 0]), float(pts[0, 1])
    x1, y1 = float(pts[-1, 0]), float(pts[-1, 1])
    angle = math.degrees(math.atan(math.fabs((y1 - y0) / (x0 - x1 + 1e-6))))
    return angle > HORIZONTAL_DEGREES


def sample_lane(pts: np.ndarray, ys: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """Sample one prepared lane at several descending row sets (spec 3.2).

    For each row set returns the xs from the bottom row up to the lane's top point (rows
    below the lowest point are extrapolated with the line through the two lowest points), or
    None when no row falls inside the lane's y range.
    """
    y_top, y_bottom = pts[-1, 1], pts[0, 1]
    all_ys = np.concatenate(ys)
    inside = (all_ys >= y_top) & (all_ys <= y_bottom)
    below = all_ys > y_bottom
    xs = np.empty(all_ys.shape, dtype=np.float64)
    if inside.any():
        spline = InterpolatedUnivariateSpline(pts[::-1, 1], pts[::-1, 0], k=min(3, len(pts) - 1))
        xs[inside] = spline(all_ys[inside])
    if below.any():
        line = np.polyfit(pts[:2, 1], pts[:2, 0], deg=1)
        xs[below] = np.polyval(line, all_ys[below])
    out: list[np.ndarray | None] = []
    start = 0
    for row_set in ys:
        stop = start + len(row_set)
        n_in = int(inside[start:stop].sum())
        out.append(xs[start:start + int(below[start:stop].sum()) + n_in] if n_in else None)
        start = stop
    return out


class LaneTargetEncoder:
    """Encodes lanes (lists of (x, y) in network-input pixels) into SRLane's targets.

    Args:
        img_w, img_h: network input size in pixels.
        num_points: rows per lane (72: ``img_h / (num_points - 1)`` apart, bottom first).
        max_lanes: rows of ``gt_lane``.
        strides: feature strides of the angle maps (8, 16, 32).
        dtype: dtype of the angle and segmentation maps (the release's are float64).
        num_categories: classes of the model's category head (``model.num_lane_categories``);
            with > 0 the targets also hold ``gt_category``.
    """

    def __init__(self, img_w: int, img_h: int, num_points: int, max_lanes: int,
                 strides: Sequence[int] = (8, 16, 32), dtype: type = np.float32,
                 num_categories: int = 0) -> None:
        for stride in strides:
            if img_w % stride or img_h % stride:
                raise ValueError(f"img_w x img_h = {img_w} x {img_h} must be multiples of stride {stride}")
        self.img_w, self.img_h = img_w, img_h
        self.num_points, self.max_lanes = num_points, max_lanes
        self.strides = tuple(strides)
        self.dtype = dtype
        self.num_categories = int(num_categories)
        self.lane_ys = np.arange(img_h, -1, -img_h / (num_points - 1))
        self.map_ys = [np.arange(img_h, -1, -stride) for stride in self.strides]

    def __call__(self, lanes: Sequence[Sequence[Sequence[float]]],
                 categories: Sequence[int] | None = None) -> dict:
        """Returns ``{"gt_lane": (max_lanes, 4 + num_points) float32, "gt_angle": [maps],
        "gt_seg": [maps]}`` and, with ``num_categories`` > 0, ``"gt_category"``: (max_lanes,)
        int64, the head class (``srlane.lane_kinds.head_class``) of the lane of each ``gt_lane``
        row, IGNORE_INDEX for empty rows and lanes whose kind is unknown (``categories``,
        parallel to ``lanes``; None: all unknown). Raises ValueError on non-finite points."""
        if categories is not None and len(categories) != len(lanes):
            raise ValueError(f"{len(categories)} lane categories for {len(lanes)} lanes")
        size = np.array([self.img_w, self.img_h], dtype=np.float64)
        indexed = prepare_lanes_indexed(lanes)
        # The release rescales by img_size / img_size here; it can move the last bit, so keep it.
        prepared = [pts * size / size for _, pts in indexed]
        samples = [sample_lane(pts, [self.lane_ys, *self.map_ys]) for pts in prepared]
        gt_lane = self._lane_rows([s[0] for s in samples[: self.max_lanes]])
        gt_angle, gt_seg = [], []
        for level, stride in enumerate(self.strides):
            angle, seg = self._angle_map([s[level + 1] for s in samples], stride, self.map_ys[level])
            gt_angle.append(angle)
            gt_seg.append(seg)
        out = {"gt_lane": gt_lane, "gt_angle": gt_angle, "gt_seg": gt_seg}
        if self.num_categories > 0:
            out["gt_category"] = self._category_rows(gt_lane, [i for i, _ in indexed], categories)
        return out

    def _category_rows(self, gt_lane: np.ndarray, sources: list[int],
                       categories: Sequence[int] | None) -> np.ndarray:
        rows = np.full(self.max_lanes, IGNORE_INDEX, dtype=np.int64)
        if categories is None:
            return rows
        for row, source in enumerate(sources[: self.max_lanes]):
            if gt_lane[row, 1] == 1:
                rows[row] = head_class(int(categories[source]), self.num_categories)
        return rows

    def _lane_rows(self, lane_xs: list[np.ndarray | None]) -> np.ndarray:
        rows = np.full((self.max_lanes, 4 + self.num_points), INVALID, dtype=np.float32)
        rows[:, 0], rows[:, 1] = 1, 0
        for i, xs in enumerate(lane_xs):
            if xs is None:
                continue
            n_inside = int(np.count_nonzero((xs >= 0) & (xs < self.img_w)))
            if n_inside <= 1:
                continue
            rows[i, :4] = (0, 1, len(xs) - n_inside, n_inside)
            rows[i, 4:4 + len(xs)] = xs
        return rows

    def _angle_map(self, lane_xs: list[np.ndarray | None], stride: int,
                   ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.img_h // stride, self.img_w // stride
        angle = np.zeros(h * w, dtype=np.float64)
        seg = np.zeros(h * w, dtype=np.float64)
        lanes = [xs for xs in lane_xs if xs is not None and len(xs) >= 2]
        if lanes:
            # all lanes at once: sample j >= 1 of a lane pairs with sample j - 1 of the same lane
            x = np.concatenate([xs / stride for xs in lanes])
            rows = np.concatenate([ys[:len(xs)] for xs in lanes])
            first = np.zeros(len(x), dtype=bool)
            first[np.cumsum([0] + [len(xs) for xs in lanes[:-1]])] = True
            col, row = np.trunc(x[1:]), np.trunc(rows[1:] / stride)
            keep = ~first[1:] & (col >= 0) & (col < w) & (row >= 0) & (row < h)
            steps = (x[1:] - x[:-1] + 1e-6)[keep]
            theta = np.array(list(map(math.atan, (1.0 / steps).tolist())), dtype=np.float64) / math.pi
            theta = np.where(theta > 0, theta, 1 - np.abs(theta))
            cell = (row[keep].astype(np.int64) * w + col[keep].astype(np.int64))[::-1]
            unique, last = np.unique(cell, return_index=True)  # a later lane's sample wins its cell
            angle[unique] = theta[::-1][last]
            seg[unique] = 1.0
        return angle.reshape(h, w).astype(self.dtype), seg.reshape(h, w).astype(self.dtype)


def build_target_encoder(cfg, dtype: type = np.float32) -> LaneTargetEncoder:
    """The encoder for a config (``img_w, img_h, num_points, max_lanes``, sketch-head strides)."""
    return LaneTargetEncoder(cfg.img_w, cfg.img_h, cfg.num_points, cfg.max_lanes,
                             strides=tuple(cfg.model.sketch_head.feat_ds_strides), dtype=dtype,
                             num_categories=int(cfg.model.get("num_lane_categories", 0)))


def encode_lanes(lanes: Sequence[Sequence[Sequence[float]]], cfg) -> dict:
    """One-off encoding with the config's geometry (see LaneTargetEncoder)."""
    return build_target_encoder(cfg)(lanes)
