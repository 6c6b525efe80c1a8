"""A decoded lane (normalised points, spline x(y)) and the benchmark writers that sample it."""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
from scipy.interpolate import InterpolatedUnivariateSpline

from srlane.fileio import atomic_write_text
from srlane.lane_kinds import CATEGORY_IDS, check_category

INVALID_X = -2.0
CULANE_DECIMALS = 5  # the release writes CULane lines with "%.5f"


class Lane:
    """A lane as the detector decodes it.

    ``points`` is a float64 ``(N, 2)`` array of ``(x, y)`` with x as a fraction of the original
    image width and y as a fraction of the original height, in the order the decoder emits them
    (the release's order: top of the image first, y increasing). x(y) is an interpolating
    spline of degree ``min(3, N - 1)``; outside ``[min_y - 0.01, max_y + 0.01]`` it is invalid
    (``INVALID_X``). The spline is built on the first call, so decoding pays nothing for it.

    ``category`` is the lane's kind (an OpenLane id of ``srlane.lane_kinds.LANE_KINDS``; 0
    unknown: a network without a category head) and ``category_score`` the probability the network
    gave it (None without a head).
    """

    def __init__(self, points: np.ndarray, invalid_value: float = INVALID_X, category: int = 0,
                 category_score: float | None = None) -> None:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
            raise ValueError(f"Lane needs an (N>=2, 2) point array, got shape {points.shape}")
        # decoded lanes come top first (y increasing): then no sort is needed
        order = None if np.all(np.diff(points[:, 1]) > 0) else np.argsort(points[:, 1], kind="stable")
        ys = points[:, 1] if order is None else points[order, 1]
        if order is not None and np.any(np.diff(ys) <= 0):
            raise ValueError("Lane points must have distinct y values")
        self.points = points
        self.invalid_value = float(invalid_value)
        self.category, self.category_score = int(category), category_score
        self.min_y = float(ys[0]) - 0.01
        self.max_y = float(ys[-1]) + 0.01
        self._order = order
        self._spline: InterpolatedUnivariateSpline | None = None

    def __len__(self) -> int:
        return len(self.points)

    def __repr__(self) -> str:
        return f"Lane({len(self.points)} points, y in [{self.min_y + 0.01:.3f}, {self.max_y - 0.01:.3f}])"

    def __call__(self, ys: np.ndarray | Sequence[float]) -> np.ndarray:
        """x at normalised ``ys``; ``invalid_value`` outside the lane's y range (+-0.01)."""
        if self._spline is None:
            pts = self.points if self._order is None else self.points[self._order]
            self._spline = InterpolatedUnivariateSpline(pts[:, 1], pts[:, 0], k=min(3, len(pts) - 1))
        ys = np.asarray(ys, dtype=np.float64)
        xs = np.asarray(self._spline(ys), dtype=np.float64)
        xs[(ys < self.min_y) | (ys > self.max_y)] = self.invalid_value
        return xs

    def pixel_points(self, width: int, height: int, y_start: int, y_step: int = 8) -> np.ndarray:
        """The lane sampled on image rows, in pixels of a ``width x height`` image: ``(M, 2)``.

        Samples ``ys = arange(y_start, height, y_step) / height``, keeps xs in ``[0, 1)``, scales
        to pixels and orders bottom first (y decreasing), as the release writes a CULane line.
        """
        ys = np.arange(y_start, height, y_step) / height
        xs = self(ys)
        valid = (xs >= 0) & (xs < 1)
        out = np.stack([xs[valid] * width, ys[valid] * height], axis=1)
        return out[::-1].copy()

    def to_tusimple(self, h_samples: Sequence[float], ori_w: int, ori_h: int) -> list[float]:
        """xs in pixels at the TuSimple ``h_samples``, -2 where the lane is absent.

        As the release: a sample is absent when x < 0; present xs are truncated to whole pixels.
        """
        xs = self(np.asarray(h_samples, dtype=np.float64) / ori_h)
        pixels = np.trunc(xs * ori_w)
        pixels[xs < 0] = -2.0
        return [float(v) for v in pixels]


def has_kinds(lanes: Sequence[Lane]) -> bool:
    """Whether ``lanes`` carry a predicted kind (a network with a category head: some
    ``category_score`` is set); the writers add the kind fields only then."""
    return any(lane.category_score is not None for lane in lanes)


def categories_problem(values: object, count: int) -> str | None:
    """Why ``values`` (a parsed prediction file's kind field) is not a list of ``count`` OpenLane
    category ids, naming the first bad lane; None when it is one."""
    if not isinstance(values, list):
        return f"categories is {values!r}, expected a list of {count} category ids"
    if len(values) != count:
        return f"categories has {len(values)} entries for {count} lanes"
    for j, value in enumerate(values):
        if check_category(value) is None:
            return f"lane {j}: category {value!r} is not an OpenLane category id (one of {list(CATEGORY_IDS)})"
    return None


def sampled_lanes(lanes: Sequence[Lane], width: int, height: int, y_start: int,
                  y_step: int = 8) -> list[tuple[Lane, np.ndarray]]:
    """``(lane, Lane.pixel_points)`` of each lane with at least 2 samples (no writer writes the
    others), in order: the lanes a file holds, each with its kind."""
    pairs = ((lane, lane.pixel_points(width, height, y_start, y_step)) for lane in lanes)
    return [(lane, pts) for lane, pts in pairs if len(pts) >= 2]


def sampled_categories(lanes: Sequence[Lane], width: int, height: int, y_start: int, y_step: int = 8) -> list[int]:
    """The kinds of the lanes ``lanes_pixel_points`` keeps, in the same order (one per written lane)."""
    return [lane.category for lane, _ in sampled_lanes(lanes, width, height, y_start, y_step)]


def lanes_pixel_points(lanes: Sequence[Lane], width: int, height: int, y_start: int,
                       y_step: int = 8) -> list[np.ndarray]:
    """``Lane.pixel_points`` of each lane; lanes with fewer than 2 points dropped (no writer
    writes them)."""
    return [pts for _, pts in sampled_lanes(lanes, width, height, y_start, y_step)]


def printed(values: np.ndarray, decimals: int) -> np.ndarray:
    """float64 ``values`` as a reader gets them back from text written with ``decimals`` decimals
    (``f"{v:.{decimals}f}"``): exactly the nearest double to each printed decimal.

    Vectorised: ``rint(v * 10**decimals) / 10**decimals`` is that double wherever the product is
    not within its own rounding error of a tie; those few values are printed and parsed.
    """
    values = np.asarray(values, dtype=np.float64)
    scale = 10.0 ** decimals
    scaled = values * scale
    out = np.rint(scaled) / scale
    near_tie = np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) <= np.abs(scaled) * 2.0 ** -51
    if near_tie.any():
        out[near_tie] = [float(f"{v:.{decimals}f}") for v in values[near_tie].tolist()]
    return out


def culane_lines(lanes: Sequence[Lane], ori_w: int, ori_h: int, y_start: int = 270) -> list[str]:
    """One ``x y`` line per lane (CULANE_DECIMALS decimals, bottom first), sampled every 8 rows
    from ``y_start`` (the config's ``cut_height``; CULane's 270) down; lanes with < 2 points dropped."""
    return [" ".join(f"{x:.{CULANE_DECIMALS}f} {y:.{CULANE_DECIMALS}f}" for x, y in pts)
            for pts in lanes_pixel_points(lanes, ori_w, ori_h, y_start)]


def write_culane_lines(path: str | os.PathLike, lanes: Sequence[Lane], ori_w: int, ori_h: int,
                       y_start: int = 270) -> None:
    """Write a CULane ``.lines.txt`` prediction file atomically (empty when no lane)."""
    atomic_write_text(path, "".join(line + "\n" for line in culane_lines(lanes, ori_w, ori_h, y_start)))


def tusimple_json_line(raw_file: str, lanes: Sequence[Lane], h_samples: Sequence[float],
                       run_time: float, ori_w: int, ori_h: int, kinds: bool = False) -> str:
    """One line of a TuSimple prediction file (``raw_file``, ``lanes``, ``run_time`` in ms; with
    ``kinds`` also ``categories``: each lane's OpenLane id, as long as ``lanes``)."""
    xs = [[int(v) for v in lane.to_tusimple(h_samples, ori_w, ori_h)] for lane in lanes]
    line = {"raw_file": raw_file, "lanes": xs, "run_time": run_time}
    if kinds:
        line["categories"] = [lane.category for lane in lanes]
    return json.dumps(line)
