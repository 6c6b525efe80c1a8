"""Exact, fast rasterisation of thick lane polylines and their IoU.

The official tool draws each lane on its own canvas with ``cv2.line`` (thickness 30, LINE_8)
between consecutive rounded points. Here a lane becomes one ``[left, right]`` pixel run per row,
assembled from stamps drawn once by OpenCV itself and cached:

- a polyline's drawing is the union of its segments' drawings (``cv2.polylines`` draws them one
  by one), and OpenCV's fixed-point drawing of an integer segment is translation invariant;
- away from the border, runs of up to ``chunk`` consecutive short steps are stamped together
  (a smooth lane repeats few step patterns); near the border each segment is stamped with its
  distances to the four sides, because OpenCV's clipping changes pixels inside the canvas too;
- segments with long steps are drawn by ``cv2.polylines`` on a crop of the canvas whose sides
  are either the canvas border itself or out of the drawing's reach;
- where the pieces of a row do not provably form one run, the lane is drawn whole on a crop
  and kept as a boolean mask.

Everything is vectorised over many lanes at once. IoU of two lanes only touches the rows (or
pixels) their bounding boxes share.
"""
from dataclasses import dataclass

import cv2
import numpy as np

_CLAMP = float(2**30)


@dataclass
class LaneMask:
    """A rasterised lane: runs ``left[i]..right[i]`` on rows ``bbox[1] + i`` or a boolean crop.

    ``bbox`` is ``(x0, y0, x1, y1)`` inclusive, ``area`` the pixel count. Empty rows of a run mask
    have ``left > right``.
    """

    area: int
    bbox: tuple[int, int, int, int]
    left: np.ndarray | None = None
    right: np.ndarray | None = None
    mask: np.ndarray | None = None

    def as_bool(self) -> np.ndarray:
        """The lane as a boolean array over its bounding box."""
        if self.mask is not None:
            return self.mask
        x0, _, x1, _ = self.bbox
        cols = np.arange(x0, x1 + 1, dtype=np.int16)
        return (cols >= self.left[:, None]) & (cols <= self.right[:, None])


EMPTY = LaneMask(area=0, bbox=(0, 0, -1, -1))


def row_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All horizontal runs of a boolean array: row, first column, last column (row-major order)."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    change = np.diff(padded, axis=1)
    ys, xs = np.nonzero(change)
    kind = change[ys, xs]
    return ys[kind == 1], xs[kind == 1], xs[kind == -1] - 1


def round_points(polyline: np.ndarray) -> np.ndarray:
    """float32 points -> int64 as OpenCV converts them (nearest, ties to even; clamped to +-2**30)."""
    return np.clip(np.rint(np.asarray(polyline, dtype=np.float32)), -_CLAMP, _CLAMP).astype(np.int64)


def draw_on_crop(polylines: list[np.ndarray], box: tuple[int, int, int, int], width: int) -> np.ndarray:
    """Draw int polylines with ``cv2.polylines`` on the canvas crop ``box = (x0, y0, x1, y1)`` (inclusive)."""
    x0, y0, x1, y1 = box
    canvas = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    offset = np.array([x0, y0], dtype=np.int64)
    cv2.polylines(canvas, [(p - offset).astype(np.int32) for p in polylines], False, 1, width, cv2.LINE_8)
    return canvas.view(bool)


class StampCache:
    """Stamps keyed by step pattern (and border distances), stored as row runs relative to their start.

    Interior keys (>= 0) encode up to ``chunk`` steps with ``|dx|, |dy| <= max_step`` as digits;
    border keys (< 0) encode one step and its clamped distances to the four canvas sides. A stamp
    with two runs in one row is stored as unusable. The runs of all stamps live in flat arrays
    indexed through ``offsets``.
    """

    def __init__(self, width: int, img_shape: tuple[int, int], chunk: int = 8, max_step: int = 4,
                 capacity: int = 100_000):
        self.width = width
        self.height, self.img_width = img_shape
        self.chunk = chunk
        self.max_step = max_step
        self.capacity = capacity
        self.reach = width // 2 + 2
        self.margin = self.reach + 2
        self.side = 2 * max_step + 1
        self.base = self.side * self.side + 1
        self.span = self.margin + self.reach + 2 + max_step
        self._reset()

    def _reset(self) -> None:
        self._index: dict[int, int] = {}
        self._runs: list[tuple[np.ndarray, ...]] = []
        self._usable: list[bool] = []
        self._packed = 0
        self.rows = self.starts = self.ends = np.zeros(0, dtype=np.int16)
        self.offsets = np.zeros(1, dtype=np.int64)
        self.usable = np.zeros(0, dtype=bool)

    def step_ids(self, step: np.ndarray) -> np.ndarray:
        """Id of each step ``(dx, dy)`` with components in ``[-max_step, max_step]``."""
        return (step[:, 1] + self.max_step) * self.side + (step[:, 0] + self.max_step)

    def border_keys(self, step_id: np.ndarray, dist: np.ndarray) -> np.ndarray:
        """Keys of single border segments; ``dist`` is ``(n, 4)`` left, right, top, bottom distances."""
        d = np.minimum(dist, self.margin) + self.span
        size = self.span + self.margin + 1
        return -1 - (step_id + self.base * (d[:, 0] + size * (d[:, 1] + size * (d[:, 2] + size * d[:, 3]))))

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Table ids for keys, drawing the missing stamps."""
        if len(self._index) + len(keys) > self.capacity:
            self._reset()
        index = self._index
        found = [index.get(k) for k in keys.tolist()]
        if None in found:
            for i, k in enumerate(keys.tolist()):
                if found[i] is None:
                    found[i] = index[k] if k in index else self._add(k)
            self._pack()
        return np.array(found, dtype=np.int64)

    def _decode_step(self, step_id: int) -> tuple[int, int]:
        return step_id % self.side - self.max_step, step_id // self.side - self.max_step

    def _add(self, key: int) -> int:
        reach = self.reach
        if key >= 0:
            points, code = [(0, 0)], key
            while code % self.base != self.base - 1:
                dx, dy = self._decode_step(code % self.base)
                points.append((points[-1][0] + dx, points[-1][1] + dy))
                code //= self.base
            pts = np.array(points, dtype=np.int64)
            lo = pts.min(axis=0) - reach
            box = (0, 0, int(pts[:, 0].max() - lo[0] + reach), int(pts[:, 1].max() - lo[1] + reach))
        else:
            code = -1 - key
            dx, dy = self._decode_step(code % self.base)
            code //= self.base
            size = self.span + self.margin + 1
            left, right, top, bottom = ((code // size**k) % size - self.span for k in range(4))
            pts = np.array([(0, 0), (dx, dy)], dtype=np.int64)
            lo = np.array([min(0, dx) - left, min(0, dy) - top])
            box = (0, 0, int(max(0, dx) + right - lo[0]), int(max(0, dy) + bottom - lo[1]))
        canvas = draw_on_crop([pts - lo], box, self.width)
        ys, xs0, xs1 = row_runs(canvas)
        usable = not np.any(ys[1:] == ys[:-1])
        self._runs.append(((ys + lo[1]).astype(np.int16), (xs0 + lo[0]).astype(np.int16),
                           (xs1 + lo[0]).astype(np.int16)))
        self._usable.append(usable)
        self._index[key] = len(self._runs) - 1
        return len(self._runs) - 1

    def _pack(self) -> None:
        new = self._runs[self._packed:]
        self.rows = np.concatenate([self.rows] + [r[0] for r in new])
        self.starts = np.concatenate([self.starts] + [r[1] for r in new])
        self.ends = np.concatenate([self.ends] + [r[2] for r in new])
        self.offsets = np.concatenate([self.offsets, self.offsets[-1] + np.cumsum([len(r[0]) for r in new])])
        self.usable = np.array(self._usable, dtype=bool)
        self._packed = len(self._runs)


class Rasterizer:
    """Rasterises lane polylines as ``cv2.line`` of thickness ``width`` (LINE_8) on a canvas of ``img_shape``."""

    def __init__(self, width: int = 30, img_shape: tuple[int, int] = (590, 1640), chunk: int = 8):
        self.width = width
        self.height, self.img_width = img_shape
        self.stamps = StampCache(width, img_shape, chunk=chunk)
        self.margin = self.stamps.margin
        self.batch = max(1, np.iinfo(np.uint16).max // self.height)

    def rasterize(self, polylines: list[np.ndarray | None]) -> list[LaneMask]:
        """Rasterise float32 polylines (see ``spline.sample_lanes``); None gives an empty mask."""
        out = [EMPTY] * len(polylines)
        todo = [i for i, p in enumerate(polylines) if p is not None]
        for begin in range(0, len(todo), self.batch):
            part = todo[begin:begin + self.batch]
            for i, mask in zip(part, self._rasterize_batch([polylines[i] for i in part])):
                out[i] = mask
        return out

    def _crop_box(self, points: np.ndarray) -> tuple[int, int, int, int] | None:
        lo = points.min(axis=0) - self.margin
        hi = points.max(axis=0) + self.margin
        x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
        x1, y1 = min(int(hi[0]), self.img_width - 1), min(int(hi[1]), self.height - 1)
        if x0 > x1 or y0 > y1:
            return None
        return x0, y0, x1, y1

    def draw_whole(self, points: np.ndarray) -> LaneMask:
        """A lane of rounded points drawn whole by OpenCV on a crop: the slow, always exact path."""
        box = self._crop_box(points)
        if box is None:
            return EMPTY
        mask = draw_on_crop([points], box, self.width)
        ys = np.flatnonzero(mask.any(axis=1))
        if len(ys) == 0:
            return EMPTY
        xs = np.flatnonzero(mask.any(axis=0))
        crop = mask[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
        x0, y0 = box[0] + int(xs[0]), box[1] + int(ys[0])
        return LaneMask(area=int(np.count_nonzero(crop)), bbox=(x0, y0, x0 + crop.shape[1] - 1, y0 + crop.shape[0] - 1),
                        mask=crop)

    def _rasterize_batch(self, polylines: list[np.ndarray]) -> list[LaneMask]:
        counts = np.array([len(p) for p in polylines])
        lane = np.repeat(np.arange(len(polylines)), counts)
        pts = round_points(np.concatenate(polylines))
        keep = np.ones(len(pts), dtype=bool)
        keep[1:] = (lane[1:] != lane[:-1]) | (pts[1:, 0] != pts[:-1, 0]) | (pts[1:, 1] != pts[:-1, 1])
        pts, lane = pts[keep], lane[keep]
        # Segments join consecutive points of a lane; a lane reduced to one point is a dot (p, p).
        first = np.flatnonzero(np.r_[True, lane[1:] != lane[:-1]])
        last = np.r_[first[1:], len(lane)] - 1
        seg = np.flatnonzero(lane[1:] == lane[:-1])
        dots = first[first == last]
        a, b = seg, seg + 1
        if len(dots):
            a = np.concatenate([seg, dots])
            order = np.argsort(a, kind="stable")
            a, b = a[order], np.concatenate([seg + 1, dots])[order]
        start, end, seg_lane = pts[a], pts[b], lane[a]
        step = end - start
        lo, hi = np.minimum(start, end), np.maximum(start, end)
        dist = np.stack([lo[:, 0], self.img_width - 1 - hi[:, 0], lo[:, 1], self.height - 1 - hi[:, 1]], axis=1)
        reach = self.stamps.reach
        visible = ((hi[:, 0] >= -reach - 1) & (lo[:, 0] <= self.img_width + reach)
                   & (hi[:, 1] >= -reach - 1) & (lo[:, 1] <= self.height + reach))
        short = np.abs(step).max(axis=1) <= self.stamps.max_step
        interior = short & np.all(dist >= self.margin, axis=1)
        border = short & visible & ~interior
        direct = ~short & visible

        unit_keys, unit_seg = self._unit_keys(step, seg_lane, interior, border, dist)
        ids = self.stamps.lookup(unit_keys)
        unit_lane = seg_lane[unit_seg]
        fallback = np.zeros(len(polylines), dtype=bool)
        fallback[unit_lane[~self.stamps.usable[ids]]] = True
        fallback[seg_lane[direct]] = True
        runs = self._stamp_runs(ids, start[unit_seg], unit_lane, fallback)

        masks = self._assemble(runs, len(polylines), fallback)
        for i in np.flatnonzero(fallback).tolist():
            masks[i] = self.draw_whole(pts[lane == i])
        return masks

    def _unit_keys(self, step: np.ndarray, seg_lane: np.ndarray, interior: np.ndarray, border: np.ndarray,
                   dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stamp keys and first segments of the stamp units, in path order.

        A unit is a chunk of consecutive interior segments or a single border segment.
        """
        cache = self.stamps
        stamped = interior | border
        n = len(step)
        idx = np.arange(n)
        step_id = np.zeros(n, dtype=np.int64)
        step_id[stamped] = cache.step_ids(step[stamped])
        breaks = ~interior | np.r_[True, ~interior[:-1] | (seg_lane[1:] != seg_lane[:-1])]
        in_run = idx - np.maximum.accumulate(np.where(breaks, idx, 0))
        position = in_run % cache.chunk
        unit_start = stamped & ((position == 0) | border)
        unit_seg = np.flatnonzero(unit_start)
        unit_of = np.cumsum(unit_start) - 1
        digits = np.where(interior, step_id * cache.base ** position, 0)
        keys = np.add.reduceat(digits, unit_seg) if len(unit_seg) else np.zeros(0, dtype=np.int64)
        length = np.bincount(unit_of[interior], minlength=len(unit_seg))
        keys = keys + (cache.base - 1) * cache.base ** length
        at_border = border[unit_seg]
        keys[at_border] = cache.border_keys(step_id[unit_seg[at_border]], dist[unit_seg[at_border]])
        return keys, unit_seg

    def _stamp_runs(self, ids: np.ndarray, origin: np.ndarray, unit_lane: np.ndarray,
                    fallback: np.ndarray) -> dict[str, np.ndarray]:
        """Row runs of the stamped units of lanes not marked ``fallback``, one per (lane, row).

        Lanes whose runs in some row are not a chain of overlapping runs are marked ``fallback``.
        """
        cache = self.stamps
        keep = ~fallback[unit_lane]
        ids, origin, unit_lane = ids[keep], origin[keep], unit_lane[keep]
        length = cache.offsets[ids + 1] - cache.offsets[ids]
        total = int(length.sum())
        if total == 0:
            empty = np.zeros(0, dtype=np.int64)
            return {"lane": empty, "row": empty, "left": empty, "right": empty}
        flat = np.repeat(cache.offsets[ids] - (np.cumsum(length) - length), length) + np.arange(total)
        key = (np.repeat(unit_lane * self.height + origin[:, 1], length) + cache.rows[flat]).astype(np.uint16)
        x = np.repeat(origin[:, 0].astype(np.int16), length)
        order = np.argsort(key, kind="stable")
        key, flat, x = key[order], flat[order], x[order]
        starts = cache.starts[flat] + x
        ends = cache.ends[flat] + x
        # Runs of consecutive units (in path order) within a row must overlap or touch: a chain of
        # such runs is a single run.
        same = key[1:] == key[:-1]
        apart = same & ((starts[1:] > ends[:-1] + 1) | (starts[:-1] > ends[1:] + 1))
        if np.any(apart):
            fallback[key[1:][apart] // self.height] = True
        group = np.flatnonzero(np.r_[True, ~same])
        lane_row = key[group].astype(np.int64)
        return {"lane": lane_row // self.height, "row": lane_row % self.height,
                "left": np.minimum.reduceat(starts, group), "right": np.maximum.reduceat(ends, group)}

    def _assemble(self, runs: dict[str, np.ndarray], num_lanes: int, fallback: np.ndarray) -> list[LaneMask]:
        lane, row, left, right = runs["lane"], runs["row"], runs["left"], runs["right"]
        bounds = np.searchsorted(lane, np.arange(num_lanes + 1))
        cumulative = np.r_[0, np.cumsum(right.astype(np.int64) - left + 1)]
        area = cumulative[bounds[1:]] - cumulative[bounds[:-1]]
        masks = []
        for i in range(num_lanes):
            b0, b1 = bounds[i], bounds[i + 1]
            if fallback[i] or b0 == b1:
                masks.append(EMPTY)
                continue
            y0, y1 = int(row[b0]), int(row[b1 - 1])
            lo, hi = left[b0:b1], right[b0:b1]
            if y1 - y0 + 1 != b1 - b0:
                lo, hi = _dense_rows(row[b0:b1] - y0, lo, hi, y1 - y0 + 1)
            masks.append(LaneMask(area=int(area[i]), bbox=(int(lo.min()), y0, int(hi.max()), y1), left=lo, right=hi))
        return masks


def _dense_rows(rel: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    left = np.ones(n, dtype=np.int16)
    right = np.zeros(n, dtype=np.int16)
    left[rel] = lo
    right[rel] = hi
    return left, right


def mask_iou(a: LaneMask, b: LaneMask) -> float:
    """Overlap / union of two rasterised lanes; 0 when both are empty (the official tool gives NaN)."""
    if a.area == 0 and b.area == 0:
        return 0.0
    x0, y0 = max(a.bbox[0], b.bbox[0]), max(a.bbox[1], b.bbox[1])
    x1, y1 = min(a.bbox[2], b.bbox[2]), min(a.bbox[3], b.bbox[3])
    if x0 > x1 or y0 > y1:
        return 0.0
    if a.mask is None and b.mask is None:
        la, ra = a.left[y0 - a.bbox[1]:y1 - a.bbox[1] + 1], a.right[y0 - a.bbox[1]:y1 - a.bbox[1] + 1]
        lb, rb = b.left[y0 - b.bbox[1]:y1 - b.bbox[1] + 1], b.right[y0 - b.bbox[1]:y1 - b.bbox[1] + 1]
        width = np.minimum(ra, rb).astype(np.int32) - np.maximum(la, lb) + 1
        inter = int(width[width > 0].sum())
    else:
        ma = a.as_bool()[y0 - a.bbox[1]:y1 - a.bbox[1] + 1, x0 - a.bbox[0]:x1 - a.bbox[0] + 1]
        mb = b.as_bool()[y0 - b.bbox[1]:y1 - b.bbox[1] + 1, x0 - b.bbox[0]:x1 - b.bbox[0] + 1]
        inter = int(np.count_nonzero(ma & mb))
    return inter / (a.area + b.area - inter)
