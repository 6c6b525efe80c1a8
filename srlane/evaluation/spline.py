"""The official CULane evaluator's natural cubic spline, operation for operation, for many lanes at once.

The curve is parametric in x and y over the cumulative chord length: segment i runs over
``t in [0, h_i]`` with ``h_i = |P_{i+1} - P_i|``, and the second derivatives (moments) at the
inner points solve a tridiagonal system with zero moments at both ends. The arithmetic mirrors
the C++ tool: coordinate differences in float32, everything else in float64, the Thomas
algorithm in the same order, sampled points cast to float32 (``t**3`` is ``t*t*t`` here, libm's
``pow`` in the tool: they may differ in the last bit of a float64 term, far below float32
resolution of the sum). Lanes are processed together,
padded to the longest; every element sees the same IEEE operations as in a lane-by-lane loop.
"""
import numpy as np

SAMPLES_PER_SEGMENT = 50
_GROUP = 32  # lanes sampled together: small enough for the temporaries to stay in cache


def drop_repeats(points: np.ndarray) -> np.ndarray:
    """float32 ``(N, 2)`` points without repeated consecutive points."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    if len(pts) < 2:
        return pts
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = (pts[1:, 0] != pts[:-1, 0]) | (pts[1:, 1] != pts[:-1, 1])
    return pts[keep]


def _chords(padded: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinate differences (float32 then float64) and chord lengths; padding chords are 1."""
    diff = (padded[:, 1:] - padded[:, :-1]).astype(np.float64)
    h = np.sqrt(diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1])
    h[np.arange(h.shape[1]) >= counts[:, None] - 1] = 1.0
    return diff, h


def _moments(padded: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Moments ``(B, n, 2)`` of the natural splines through padded lanes of ``counts >= 3`` points."""
    diff, h = _chords(padded, counts)
    batch, n = padded.shape[:2]
    slope = diff / h[..., None]
    rhs = 6.0 * (slope[:, 1:] - slope[:, :-1])
    c = h[:, 1:].copy()
    d = np.empty_like(rhs)
    b0 = 2.0 * (h[:, 0] + h[:, 1])
    c[:, 0] = c[:, 0] / b0
    d[:, 0] = rhs[:, 0] / b0[:, None]
    for i in range(1, n - 2):
        tmp = 2.0 * (h[:, i] + h[:, i + 1]) - h[:, i] * c[:, i - 1]
        c[:, i] = c[:, i] / tmp
        d[:, i] = (rhs[:, i] - h[:, i, None] * d[:, i - 1]) / tmp[:, None]
    moments = np.zeros((batch, n, 2), dtype=np.float64)
    lanes = np.arange(batch)
    moments[lanes, counts - 2] = d[lanes, counts - 3]
    for i in range(n - 4, -1, -1):
        active = (i <= counts - 4)[:, None]
        moments[:, i + 1] = np.where(active, d[:, i] - c[:, i, None] * moments[:, i + 2], moments[:, i + 1])
    return moments


def spline_moments(points: np.ndarray) -> np.ndarray:
    """Second derivatives ``(n, 2)`` of the natural spline through distinct consecutive points (n >= 3)."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    if len(pts) < 3:
        raise ValueError(f"a natural spline needs at least 3 points, got {len(pts)}")
    if len(drop_repeats(pts)) != len(pts):
        raise ValueError("repeated consecutive points: the chord length is zero")
    return _moments(pts[None], np.array([len(pts)]))[0]


def _sample_splines(points: np.ndarray, counts: np.ndarray, times: int) -> np.ndarray:
    """Samples of the splines through consecutive lanes of ``points`` (``counts >= 3`` each), flat, lane by lane."""
    width = counts.max()
    padded = np.zeros((len(counts), width, 2), dtype=np.float32)
    padded[np.arange(width) < counts[:, None]] = points
    m = _moments(padded, counts)
    diff, h = _chords(padded, counts)
    out = np.empty((int(((counts - 1) * times + 1).sum()), 2), dtype=np.float32)
    lane_end = np.cumsum((counts - 1) * times + 1) - 1
    out[lane_end] = padded[np.arange(len(counts)), counts - 1]
    segment = np.arange(width - 1) < counts[:, None] - 1
    offset = 0
    # Sampled in groups of lanes, with every per-sample array contiguous, for speed.
    for begin in range(0, len(counts), _GROUP):
        rows = slice(begin, begin + _GROUP)
        valid = segment[rows]
        hv = h[rows][valid][:, None]
        m0, m1 = m[rows, :-1][valid], m[rows, 1:][valid]
        a = padded[rows, :-1][valid].astype(np.float64)
        b = diff[rows][valid] / hv - (2.0 * hv * m0 + hv * m1) / 6.0
        c = m0 / 2.0
        d = (m1 - m0) / (6.0 * hv)
        t = np.repeat(hv[:, 0] / times, times) * np.tile(np.arange(times, dtype=np.float64), len(hv))
        t2 = t * t
        t3 = t2 * t
        lanes = counts[rows] - 1
        dest = offset + np.arange(len(t)) + np.repeat(np.arange(len(lanes)), lanes * times)
        for axis in range(2):
            ar, br, cr, dr = (np.repeat(v[:, axis], times) for v in (a, b, c, d))
            out[dest, axis] = (ar + br * t) + cr * t2 + dr * t3
        offset += len(t) + len(lanes)
    return out


def sample_lanes_flat(lanes: list[np.ndarray], times: int = SAMPLES_PER_SEGMENT) -> tuple[np.ndarray, np.ndarray]:
    """The float32 polylines the official tool draws, concatenated, and the number of points of each.

    Lanes of < 2 points get 0 points (they are not drawn). Repeated consecutive points are dropped
    first (the official spline divides by zero on them); a lane whose points are all equal becomes
    a dot (two equal points, as the official tool draws a two-point lane of equal points). Two
    distinct points are one segment; with more, the natural spline is sampled at
    ``t = k * (h_i / times)``, k < times, on each segment and the last point is appended:
    ``times * (n - 1) + 1`` points, the input points among them exactly.
    """
    raw = [np.asarray(lane, dtype=np.float32).reshape(-1, 2) for lane in lanes]
    raw_counts = np.array([len(r) for r in raw], dtype=np.int64)
    if not raw or raw_counts.sum() == 0:
        return np.zeros((0, 2), np.float32), np.zeros(len(raw), np.int64)
    pts = np.concatenate(raw)
    lane = np.repeat(np.arange(len(raw)), raw_counts)
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = (pts[1:, 0] != pts[:-1, 0]) | (pts[1:, 1] != pts[:-1, 1]) | (lane[1:] != lane[:-1])
    pts, lane = pts[keep], lane[keep]
    n = np.bincount(lane, minlength=len(raw))
    n[raw_counts < 2] = 0
    out_counts = np.where(n >= 3, (n - 1) * times + 1, np.where(n >= 1, 2, 0))
    spline = np.flatnonzero(n >= 3)
    if len(spline) == len(raw):
        return _sample_splines(pts, n, times), out_counts
    out_start = np.r_[0, np.cumsum(out_counts)[:-1]]
    out = np.empty((out_counts.sum(), 2), dtype=np.float32)
    point_start = np.r_[0, np.cumsum(np.bincount(lane, minlength=len(raw)))[:-1]]
    for kind in (1, 2):
        sel = np.flatnonzero(n == kind)
        out[out_start[sel]] = pts[point_start[sel]]
        out[out_start[sel] + 1] = pts[point_start[sel] + kind - 1]
    if len(spline):
        cnt = out_counts[spline]
        dest = np.repeat(out_start[spline] - np.r_[0, np.cumsum(cnt)[:-1]], cnt) + np.arange(cnt.sum())
        out[dest] = _sample_splines(pts[n[lane] >= 3], n[spline], times)
    return out, out_counts


def sample_lanes(lanes: list[np.ndarray], times: int = SAMPLES_PER_SEGMENT) -> list[np.ndarray | None]:
    """``sample_lanes_flat`` split per lane; None for lanes of < 2 points."""
    points, counts = sample_lanes_flat(lanes, times)
    bounds = np.r_[0, np.cumsum(counts)]
    return [points[bounds[i]:bounds[i + 1]] if counts[i] else None for i in range(len(counts))]
