"""Exact, fast rasterisation of thick lane polylines and their IoU.

The official tool draws each lane on its own canvas with ``cv2.line`` (thickness 30, LINE_8)
between consecutive rounded points. Here a lane becomes one ``[left, right]`` pixel run per row,
assembled from stamps drawn once by OpenCV itself and cached:

- a polyline's drawing is the union of its segments' drawings (``cv2.polylines`` draws them one
  by one), and OpenCV's fixed-point drawing of an integer segment is translation invariant;
- away from the border, runs of up to ``chunk`` consecutive short steps are stamped together
  (a smooth lane repeats few step patterns); near the border each segment is stamped with its
  distances to the four sides, because OpenCV's clipping changes pixels inside the canvas too;
  new stamps are drawn many at a time, in the cells of one canvas;
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
_DRAW_BATCH = 512  # stamps drawn on one canvas


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


def pack_runs(rows, starts, ends) -> np.ndarray:
    """Row, first and last column in one int64, ``row * 2**32 + start * 2**16 + end``.

    Packing is linear, so adding packed offsets adds each field; fields read back correctly
    whenever each final field lies in ``[0, 2**16)``.
    """
    return (np.asarray(rows, np.int64) << 32) + (np.asarray(starts, np.int64) << 16) + np.asarray(ends, np.int64)


def round_points(polyline: np.ndarray) -> np.ndarray:
    """float32 points -> int64 as OpenCV converts them (nearest, ties to even; clamped to +-2**30)."""
    return _rint_clamped(polyline).astype(np.int64)


def _rint_clamped(polyline: np.ndarray) -> np.ndarray:
    """``round_points`` still in float32 (exact: the values are integers of at most 2**30)."""
    return np.clip(np.rint(np.asarray(polyline, dtype=np.float32)), -_CLAMP, _CLAMP)


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
        dot = draw_on_crop([np.zeros((2, 2), np.int64) + self.reach], (0, 0, 2 * self.reach, 2 * self.reach), width)
        self._dot = dot.copy()
        rows = np.flatnonzero(dot.any(axis=1))
        self._dot_radius = int(max(self.reach - rows[0], rows[-1] - self.reach))
        self._reset()

    def _reset(self) -> None:
        self.generation = getattr(self, "generation", -1) + 1
        self._buffer = np.zeros(1 << 16, dtype=np.int64)
        self.packed = self._buffer[:0]
        self.offsets = np.zeros(1, dtype=np.int64)
        self.usable = np.zeros(0, dtype=bool)
        self.safe = np.zeros(0, dtype=bool)
        self.row_lo = self.row_hi = np.zeros(0, dtype=np.int64)
        self._sorted_keys = np.zeros(0, dtype=np.int64)
        self._sorted_ids = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.usable)

    def step_ids(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """Id of each step ``(dx, dy)`` with components in ``[-max_step, max_step]``."""
        return (dy + self.max_step) * self.side + (dx + self.max_step)

    def border_keys(self, step_id: np.ndarray, dist: list[np.ndarray]) -> np.ndarray:
        """Keys of single border segments from their left, right, top and bottom distances."""
        size = self.span + self.margin + 1
        key = np.zeros(len(step_id), dtype=np.int64)
        for d in reversed(dist):
            key = key * size + (np.minimum(d, self.margin) + self.span)
        return -1 - (step_id + self.base * key)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Table ids for keys, drawing the missing stamps."""
        if len(self) + len(keys) > self.capacity:
            self._reset()
        known = self._sorted_keys
        pos = np.searchsorted(known, keys)
        hit = known[np.minimum(pos, len(known) - 1)] == keys if len(known) else np.zeros(len(keys), dtype=bool)
        if not hit.all():
            self._extend(np.unique(keys[~hit]))
            pos = np.searchsorted(self._sorted_keys, keys)
        return self._sorted_ids[pos]

    def export(self, start: int = 0) -> dict[str, np.ndarray]:
        """The stamps with ids >= ``start``, for ``absorb`` in another process."""
        ids = np.arange(start, len(self))
        keys = np.empty(len(ids), dtype=np.int64)
        keys[self._sorted_ids[self._sorted_ids >= start] - start] = self._sorted_keys[self._sorted_ids >= start]
        return {"keys": keys, "packed": self.packed[self.offsets[start]:].copy(),
                "lengths": np.diff(self.offsets[start:]), "usable": self.usable[start:], "safe": self.safe[start:],
                "row_lo": self.row_lo[start:], "row_hi": self.row_hi[start:]}

    def absorb(self, exported: dict[str, np.ndarray]) -> None:
        """Add the exported stamps this cache does not have yet."""
        keys = exported["keys"]
        if len(keys) == 0 or len(self) + len(keys) > self.capacity:
            return
        known = self._sorted_keys
        pos = np.searchsorted(known, keys)
        new = ~(known[np.minimum(pos, len(known) - 1)] == keys) if len(known) else np.ones(len(keys), dtype=bool)
        _, first = np.unique(keys, return_index=True)
        new &= np.isin(np.arange(len(keys)), first)
        if not new.any():
            return
        bounds = np.r_[0, np.cumsum(exported["lengths"])]
        stamps = [(exported["packed"][bounds[i]:bounds[i + 1]], exported["usable"][i], exported["safe"][i],
                   exported["row_lo"][i], exported["row_hi"][i]) for i in np.flatnonzero(new).tolist()]
        self._append(keys[new], stamps)

    def _extend(self, new_keys: np.ndarray) -> None:
        """Draw the stamps of new (sorted, unique) keys and append them to the tables."""
        stamps = []
        for begin in range(0, len(new_keys), _DRAW_BATCH):
            stamps += self._draw(new_keys[begin:begin + _DRAW_BATCH])
        self._append(new_keys, stamps)

    def _append(self, new_keys: np.ndarray, stamps: list[tuple]) -> None:
        order = np.argsort(new_keys)
        new_keys, stamps = new_keys[order], [stamps[i] for i in order.tolist()]
        runs = [s[0] for s in stamps]
        size = len(self.packed) + sum(len(r) for r in runs)
        if size > len(self._buffer):
            self._buffer = np.concatenate([self.packed, np.zeros(size, dtype=np.int64)])
        self._buffer[len(self.packed):size] = np.concatenate(runs)
        self.packed = self._buffer[:size]
        self.offsets = np.r_[self.offsets, self.offsets[-1] + np.cumsum([len(r) for r in runs])]
        first_id = len(self)
        self.usable = np.r_[self.usable, [s[1] for s in stamps]]
        self.safe = np.r_[self.safe, [s[2] for s in stamps]]
        self.row_lo = np.r_[self.row_lo, [s[3] for s in stamps]]
        self.row_hi = np.r_[self.row_hi, [s[4] for s in stamps]]
        at = np.searchsorted(self._sorted_keys, new_keys)
        self._sorted_keys = np.insert(self._sorted_keys, at, new_keys)
        self._sorted_ids = np.insert(self._sorted_ids, at, np.arange(first_id, first_id + len(new_keys)))

    def _decode_step(self, step_id: int) -> tuple[int, int]:
        return step_id % self.side - self.max_step, step_id // self.side - self.max_step

    def _stamp_geometry(self, key: int) -> tuple[list[tuple[int, int]], tuple[int, int], tuple[int, int]]:
        """The path of a key's stamp relative to its canvas, the canvas offset and size (x, y).

        An interior stamp's canvas reaches ``reach`` beyond its path (out of the drawing's reach);
        a border stamp's canvas has the segment's distances to the four sides (clamped).
        """
        if key >= 0:
            points, code = [(0, 0)], key
            while code % self.base != self.base - 1:
                dx, dy = self._decode_step(code % self.base)
                points.append((points[-1][0] + dx, points[-1][1] + dy))
                code //= self.base
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            lo = (min(xs) - self.reach, min(ys) - self.reach)
            size = (max(xs) + self.reach - lo[0] + 1, max(ys) + self.reach - lo[1] + 1)
        else:
            code = -1 - key
            dx, dy = self._decode_step(code % self.base)
            code //= self.base
            side = self.span + self.margin + 1
            left, right, top, bottom = ((code // side**k) % side - self.span for k in range(4))
            points = [(0, 0), (dx, dy)]
            lo = (min(0, dx) - left, min(0, dy) - top)
            size = (max(0, dx) + right + 1 - lo[0], max(0, dy) + bottom + 1 - lo[1])
        return [(x - lo[0], y - lo[1]) for x, y in points], lo, size

    def _draw(self, keys: np.ndarray) -> list[tuple[np.ndarray, bool, bool, int, int]]:
        """Packed runs, usable and safe flags, first and last row of the stamps of keys.

        The stamps are laid out in cells of one canvas, cells apart and ``margin`` from its
        border: interior stamps drawn there by one ``cv2.polylines`` call (their drawing is not
        clipped), border stamps drawn on their own canvas and copied in. A stamp with two runs in
        one row is unusable; a usable one is safe (see ``Rasterizer._rasterize_batch``) when it has
        one run on every row between its first and last, no row farther than the dot radius from
        its path, and contains the dots of both end points (clipped to its canvas).
        """
        geometry = [self._stamp_geometry(k) for k in keys.tolist()]
        paths = [np.array(g[0], dtype=np.int64) for g in geometry]
        lo = np.array([g[1] for g in geometry], dtype=np.int64)
        size = np.array([g[2] for g in geometry], dtype=np.int64)
        cell = size.max(axis=0) + 2
        cols = min(len(keys), 64)
        grid = np.arange(len(keys))
        origin = np.stack([grid % cols, grid // cols], axis=1) * cell + self.margin
        canvas = np.zeros(((len(keys) + cols - 1) // cols * cell[1] + 2 * self.margin,
                           cols * cell[0] + 2 * self.margin), dtype=np.uint8)
        interior = (keys >= 0).tolist()
        cv2.polylines(canvas, [(paths[i] + origin[i]).astype(np.int32) for i in grid[interior]], False, 1,
                      self.width, cv2.LINE_8)
        for i in grid[~np.array(interior, dtype=bool)].tolist():
            (x, y), (w, h) = origin[i], size[i]
            canvas[y:y + h, x:x + w] = draw_on_crop([paths[i]], (0, 0, int(w) - 1, int(h) - 1), self.width)
        ys, xs0, xs1 = row_runs(canvas.view(bool))
        stamp = (ys - self.margin) // cell[1] * cols + (xs0 - self.margin) // cell[0]
        order = np.argsort(stamp, kind="stable")
        stamp, ys, xs0, xs1 = stamp[order], ys[order], xs0[order], xs1[order]
        ys, xs0, xs1 = ys - origin[stamp, 1], xs0 - origin[stamp, 0], xs1 - origin[stamp, 0]
        bounds = np.searchsorted(stamp, np.arange(len(keys) + 1))
        count = np.diff(bounds)
        padded = np.append(ys, 0)  # the rows read for stamps without runs are not used
        first, last = padded[bounds[:-1]], padded[bounds[1:] - 1]
        repeated = np.zeros(len(keys), dtype=bool)
        repeated[stamp[1:][(stamp[1:] == stamp[:-1]) & (ys[1:] == ys[:-1])]] = True
        usable = (count > 0) & ~repeated
        safe = usable & (last - first + 1 == count)
        path_y0 = np.array([min(y for _, y in g[0]) for g in geometry])
        path_y1 = np.array([max(y for _, y in g[0]) for g in geometry])
        safe &= (first >= path_y0 - self._dot_radius) & (last <= path_y1 + self._dot_radius)
        safe &= self._covers_dots(np.flatnonzero(safe), paths, size, stamp, ys, xs0, xs1, int(cell[1]))
        packed = pack_runs(ys + lo[stamp, 1], xs0 + lo[stamp, 0], xs1 + lo[stamp, 0])
        row_lo, row_hi = first + lo[:, 1], last + lo[:, 1]
        return [(packed[bounds[i]:bounds[i + 1]], bool(usable[i]), bool(safe[i]),
                 int(row_lo[i]) if count[i] else 0, int(row_hi[i]) if count[i] else -1)
                for i in range(len(keys))]

    def _covers_dots(self, candidates: np.ndarray, paths: list[np.ndarray], size: np.ndarray, stamp: np.ndarray,
                     ys: np.ndarray, xs0: np.ndarray, xs1: np.ndarray, rows: int) -> np.ndarray:
        """Whether each stamp (one run per row, ``rows`` rows at most) contains the dots of both end
        points of its path, as far as they lie on its canvas of ``size``."""
        ok = np.zeros(len(paths), dtype=bool)
        if len(candidates) == 0:
            return ok
        left = np.full((len(paths), rows), np.iinfo(np.int64).max, dtype=np.int64)
        right = np.full((len(paths), rows), -1, dtype=np.int64)
        left[stamp, ys], right[stamp, ys] = xs0, xs1
        dot_rows, dot_left, dot_right = row_runs(self._dot)
        ends = np.array([[paths[i][0], paths[i][-1]] for i in candidates.tolist()])
        w, h = (size[candidates, k, None, None] for k in range(2))
        row = ends[:, :, 1, None] + dot_rows - self.reach
        c0 = np.maximum(ends[:, :, 0, None] + dot_left - self.reach, 0)
        c1 = np.minimum(ends[:, :, 0, None] + dot_right - self.reach, w - 1)
        on_canvas = (row >= 0) & (row < h) & (c0 <= c1)
        row = np.clip(row, 0, rows - 1)
        covered = (left[candidates[:, None, None], row] <= c0) & (right[candidates[:, None, None], row] >= c1)
        ok[candidates] = (covered | ~on_canvas).all(axis=(1, 2))
        return ok


class Rasterizer:
    """Rasterises lane polylines as ``cv2.line`` of thickness ``width`` (LINE_8) on a canvas of ``img_shape``."""

    def __init__(self, width: int = 30, img_shape: tuple[int, int] = (590, 1640), chunk: int = 8):
        self.width = width
        self.height, self.img_width = img_shape
        if max(img_shape) >= 2**15:
            raise ValueError(f"canvas {img_shape} too large (at most 32767 pixels a side)")
        self.stamps = StampCache(width, img_shape, chunk=chunk)
        self.margin = self.stamps.margin
        self.batch = max(1, np.iinfo(np.uint16).max // self.height)

    def rasterize(self, polylines: list[np.ndarray | None]) -> list[LaneMask]:
        """Rasterise float32 polylines (see ``spline.sample_lanes``); None gives an empty mask."""
        counts = np.array([0 if p is None else len(p) for p in polylines], dtype=np.int64)
        present = [p for p in polylines if p is not None]
        points = np.concatenate(present) if present else np.zeros((0, 2), np.float32)
        return self.rasterize_flat(points, counts)

    def rasterize_flat(self, points: np.ndarray, counts: np.ndarray) -> list[LaneMask]:
        """Rasterise polylines given as consecutive float32 ``points`` with ``counts`` per lane (0: empty)."""
        out = [EMPTY] * len(counts)
        bounds = np.r_[0, np.cumsum(counts)]
        todo = np.flatnonzero(counts > 0)
        for begin in range(0, len(todo), self.batch):
            part = todo[begin:begin + self.batch]
            if part[-1] - part[0] + 1 == len(part):
                pts = points[bounds[part[0]]:bounds[part[-1] + 1]]
            else:
                pts = np.concatenate([points[bounds[i]:bounds[i + 1]] for i in part])
            for i, mask in zip(part.tolist(), self._rasterize_batch(pts, counts[part])):
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
        if len(points) == 1:
            points = np.concatenate([points, points])
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

    def _rasterize_batch(self, points: np.ndarray, counts: np.ndarray) -> list[LaneMask]:
        num_lanes = len(counts)
        first = np.r_[0, np.cumsum(counts)[:-1]]
        rounded = _rint_clamped(points).T.copy()
        x, y = rounded
        keep = np.empty(len(x), dtype=bool)
        keep[0] = True
        np.not_equal(x[1:], x[:-1], out=keep[1:])
        keep[1:] |= y[1:] != y[:-1]
        keep[first] = True
        lane = np.repeat(np.arange(num_lanes), np.add.reduceat(keep, first, dtype=np.int64))
        x, y = x[keep].astype(np.int64), y[keep].astype(np.int64)
        # Segments join consecutive points of a lane (pairs across lanes are masked out below);
        # a lane reduced to one point is drawn as the dot (p, p).
        unique = np.bincount(lane, minlength=num_lanes)
        if np.any(unique == 1):
            dots = np.flatnonzero(np.bincount(lane, minlength=num_lanes)[lane] == 1)
            x, y, lane = np.insert(x, dots, x[dots]), np.insert(y, dots, y[dots]), np.insert(lane, dots, lane[dots])
        same = lane[1:] == lane[:-1]
        x0, y0, x1, y1 = x[:-1], y[:-1], x[1:], y[1:]
        dx, dy = x1 - x0, y1 - y0
        step = self.stamps.max_step
        lox, hix = np.minimum(x0, x1), np.maximum(x0, x1)
        loy, hiy = np.minimum(y0, y1), np.maximum(y0, y1)
        m = self.margin
        interior = (same & (dx <= step) & (dx >= -step) & (dy <= step) & (dy >= -step) & (lox >= m) & (loy >= m)
                    & (hix < self.img_width - m) & (hiy < self.height - m))
        rest = np.flatnonzero(same & ~interior)
        reach = self.stamps.reach
        rx0, rx1, ry0, ry1 = lox[rest], hix[rest], loy[rest], hiy[rest]
        visible = ((rx1 >= -reach - 1) & (rx0 <= self.img_width + reach)
                   & (ry1 >= -reach - 1) & (ry0 <= self.height + reach))
        short = (np.abs(dx[rest]) <= step) & (np.abs(dy[rest]) <= step)
        border = rest[visible & short]
        fallback = np.zeros(num_lanes, dtype=bool)
        fallback[lane[rest[visible & ~short]]] = True

        unit_seg, keys = self._unit_keys(dx, dy, interior, border, lox, hix, loy, hiy)
        cache = self.stamps
        ids = cache.lookup(keys)
        unit_lane = lane[unit_seg]
        fallback[unit_lane[~cache.usable[ids]]] = True
        # The fast path needs: no gap between stamped segments, y monotone along the lane, junction
        # points inside the canvas columns and "safe" stamps (see StampCache._draw). Then the runs
        # of the units covering a row are a chain (consecutive units share the junction's dot in
        # every row they both cover), so a row's union is [min start, max end].
        general = np.zeros(num_lanes, dtype=bool)
        general[lane[rest[~(visible & short)]]] = True
        seg_lane = lane[:-1]
        general[(np.bincount(seg_lane[same & (dy > 0)], minlength=num_lanes) > 0)
                & (np.bincount(seg_lane[same & (dy < 0)], minlength=num_lanes) > 0)] = True
        ux, uy = x0[unit_seg], y0[unit_seg]
        general[unit_lane[(ux < 0) | (ux >= self.img_width) | ~cache.safe[ids]]] = True
        general &= ~fallback
        fast = ~general & ~fallback
        masks = [EMPTY] * num_lanes
        on = fast[unit_lane]
        self._fast_masks(ids[on], ux[on], uy[on], unit_lane[on], masks)
        on = general[unit_lane]
        runs = self._stamp_runs(ids[on], ux[on], uy[on], unit_lane[on], general, fallback)
        self._assemble(runs, num_lanes, general & ~fallback, masks)
        for i in np.flatnonzero(fallback).tolist():
            sel = lane == i
            masks[i] = self.draw_whole(np.stack([x[sel], y[sel]], axis=1))
        return masks

    def _elements(self, ids: np.ndarray, ox: np.ndarray, oy: np.ndarray,
                  unit_lane: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lane * height + row, start, end) of every stamp row of the units, unit after unit."""
        cache = self.stamps
        length = cache.offsets[ids + 1] - cache.offsets[ids]
        total = int(length.sum())
        flat = np.repeat(cache.offsets[ids] - (np.cumsum(length) - length), length) + np.arange(total)
        value = cache.packed[flat] + np.repeat(pack_runs(unit_lane * self.height + oy, ox, ox), length)
        return ((value >> 32).astype(np.intp), ((value >> 16) & 0xFFFF).astype(np.int32),
                (value & 0xFFFF).astype(np.int32))

    def _fast_masks(self, ids: np.ndarray, ox: np.ndarray, oy: np.ndarray, unit_lane: np.ndarray,
                    masks: list[LaneMask]) -> None:
        """Masks of the fast-path lanes: per-row minimum start and maximum end by scatter."""
        if len(ids) == 0:
            return
        cache = self.stamps
        key, starts, ends = self._elements(ids, ox, oy, unit_lane)
        size = (int(unit_lane[-1]) + 1) * self.height
        left = np.full(size, np.iinfo(np.int16).max, dtype=np.int32)
        right = np.full(size, -1, dtype=np.int32)
        np.minimum.at(left, key, starts)
        np.maximum.at(right, key, ends)
        cumulative = np.r_[0, np.cumsum(np.maximum(right - left + 1, 0))]
        lanes = np.flatnonzero(np.r_[True, unit_lane[1:] != unit_lane[:-1]])
        row0 = np.minimum.reduceat(oy + cache.row_lo[ids], lanes)
        row1 = np.maximum.reduceat(oy + cache.row_hi[ids], lanes)
        base = unit_lane[lanes] * self.height
        begin, end = base + row0, base + row1 + 1
        area = cumulative[end] - cumulative[begin]
        edges = np.stack([begin, end], axis=1).ravel()[:-1]
        x0 = np.minimum.reduceat(left, edges)[::2]
        x1 = np.maximum.reduceat(right, edges)[::2]
        empty = right < 0
        left[empty], right[empty] = 1, 0
        # The lanes' rows, packed together (the masks are views of these arrays).
        length = end - begin
        stop = np.cumsum(length)
        rows = np.repeat(begin - (stop - length), length) + np.arange(int(stop[-1]))
        left, right = left[rows].astype(np.int16), right[rows].astype(np.int16)
        for i, b, e, y0, y1, a, lo, hi in zip(unit_lane[lanes].tolist(), (stop - length).tolist(), stop.tolist(),
                                              row0.tolist(), row1.tolist(), area.tolist(), x0.tolist(), x1.tolist()):
            masks[i] = LaneMask(area=a, bbox=(lo, y0, hi, y1), left=left[b:e], right=right[b:e])

    def _unit_keys(self, dx, dy, interior, border, lox, hix, loy, hiy) -> tuple[np.ndarray, np.ndarray]:
        """First segments and stamp keys of the stamp units, in path order.

        A unit is a chunk of consecutive interior segments (chunks are aligned to multiples of
        ``chunk`` in the segment array, so a run's first chunk may be shorter) or a single border
        segment.
        """
        cache = self.stamps
        n = len(dx)
        idx = np.arange(n)
        position = idx % cache.chunk
        starts = interior & ((position == 0) | np.r_[True, ~interior[:-1]])
        unit_int = np.flatnonzero(starts)
        power = cache.base ** np.arange(cache.chunk, dtype=np.int64)
        digits = np.where(interior, cache.step_ids(dx, dy) * power[position], 0)
        if len(unit_int):
            keys = np.add.reduceat(digits, unit_int) // power[position[unit_int]]
            length = np.add.reduceat(interior.astype(np.int64), unit_int)
            keys += (cache.base - 1) * cache.base ** length
        else:
            keys = np.zeros(0, dtype=np.int64)
        if len(border):
            bkeys = cache.border_keys(cache.step_ids(dx[border], dy[border]),
                                      [lox[border], self.img_width - 1 - hix[border], loy[border],
                                       self.height - 1 - hiy[border]])
            unit_seg = np.concatenate([unit_int, border])
            order = np.argsort(unit_seg, kind="stable")
            return unit_seg[order], np.concatenate([keys, bkeys])[order]
        return unit_int, keys

    def _stamp_runs(self, ids: np.ndarray, ox: np.ndarray, oy: np.ndarray, unit_lane: np.ndarray,
                    general: np.ndarray, fallback: np.ndarray) -> dict[str, np.ndarray]:
        """Row runs of the units of the general-path lanes, one per (lane, row), by sorting.

        Lanes whose runs in some row are not a chain of overlapping runs (in path order) are
        marked ``fallback``.
        """
        if len(ids) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return {"lane": empty, "row": empty, "left": empty, "right": empty}
        key, starts, ends = self._elements(ids, ox, oy, unit_lane)
        order = np.argsort(key.astype(np.uint16), kind="stable")
        key, starts, ends = key[order], starts[order], ends[order]
        same = key[1:] == key[:-1]
        apart = same & ((starts[1:] > ends[:-1] + 1) | (starts[:-1] > ends[1:] + 1))
        if np.any(apart):
            fallback[key[1:][apart] // self.height] = True
        group = np.flatnonzero(np.r_[True, ~same])
        lane_row = key[group]
        return {"lane": lane_row // self.height, "row": lane_row % self.height,
                "left": np.minimum.reduceat(starts, group), "right": np.maximum.reduceat(ends, group)}

    def _assemble(self, runs: dict[str, np.ndarray], num_lanes: int, wanted: np.ndarray,
                  masks: list[LaneMask]) -> None:
        """Masks of the ``wanted`` lanes from sorted per-(lane, row) runs."""
        lane, row, left, right = runs["lane"], runs["row"], runs["left"], runs["right"]
        bounds = np.searchsorted(lane, np.arange(num_lanes + 1)).tolist()
        cumulative = np.r_[0, np.cumsum(right - left + 1)]
        left, right = left.astype(np.int16), right.astype(np.int16)
        for i in np.flatnonzero(wanted).tolist():
            b0, b1 = bounds[i], bounds[i + 1]
            if b0 == b1:
                continue
            y0, y1 = int(row[b0]), int(row[b1 - 1])
            lo, hi = left[b0:b1], right[b0:b1]
            bbox = (int(lo.min()), y0, int(hi.max()), y1)
            if y1 - y0 + 1 != b1 - b0:
                lo, hi = _dense_rows(row[b0:b1] - y0, lo, hi, y1 - y0 + 1)
            masks[i] = LaneMask(area=int(cumulative[b1] - cumulative[b0]), bbox=bbox, left=lo, right=hi)


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
