"""The official CULane evaluator's natural cubic spline, operation for operation, for many lanes at once.

The curve is parametric in x and y over the cumulative chord length: segment i runs over
``t in [0, h_i]`` with ``h_i = |P_{i+1} - P_i|``, and the second derivatives (moments) at the
inner points solve a tridiagonal system with zero moments at both ends. The arithmetic mirrors
the C++ tool: coordinate differences in float32, everything else in float64, the Thomas
algorithm in the same order, sampled points cast to float32. Lanes are processed together,
padded to the longest; every element sees the same IEEE operations as in a lane-by-lane loop.
"""
import numpy as np

SAMPLES_PER_SEGMENT = 50


def drop_repeats(points: np.ndarray) -> np.ndarray:
    """float32 ``(N, 2)`` points without repeated consecutive points."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    if len(pts) < 2:
        return pts
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = (pts[1:, 0] != pts[:-1, 0]) | (pts[1:, 1] != pts[:-1, 1])
    return pts[keep]


def _pad(lanes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    counts = np.array([len(p) for p in lanes])
    padded = np.zeros((len(lanes), counts.max(), 2), dtype=np.float32)
    mask = np.arange(counts.max()) < counts[:, None]
    padded[mask] = np.concatenate(lanes)
    return padded, counts


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


def _sample_splines(lanes: list[np.ndarray], times: int) -> list[np.ndarray]:
    padded, counts = _pad(lanes)
    m = _moments(padded, counts)
    diff, h = _chords(padded, counts)
    a = padded[:, :-1].astype(np.float64)
    b = diff / h[..., None] - (2.0 * h[..., None] * m[:, :-1] + h[..., None] * m[:, 1:]) / 6.0
    c = m[:, :-1] / 2.0
    d = (m[:, 1:] - m[:, :-1]) / (6.0 * h[..., None])
    t = (h / times)[..., None] * np.arange(times, dtype=np.float64)
    t2, t3 = t * t, np.power(t, 3.0)
    batch, segments = h.shape
    samples = np.empty((batch, segments * times + 1, 2), dtype=np.float32)
    for axis in range(2):
        value = (a[..., axis, None] + b[..., axis, None] * t) + c[..., axis, None] * t2 + d[..., axis, None] * t3
        samples[:, :-1, axis] = value.reshape(batch, -1)
    ends = (counts - 1) * times
    samples[np.arange(batch), ends] = padded[np.arange(batch), counts - 1]
    return [samples[i, :end + 1] for i, end in enumerate(ends.tolist())]


def sample_lanes(lanes: list[np.ndarray], times: int = SAMPLES_PER_SEGMENT) -> list[np.ndarray | None]:
    """The float32 polylines the official tool draws, one per lane (None for lanes of < 2 points).

    Repeated consecutive points are dropped first (the official spline divides by zero on them);
    a lane whose points are all equal becomes a dot (two equal points, as the official tool draws
    a two-point lane of equal points). Two distinct points are one segment; with more, the natural
    spline is sampled at ``t = k * (h_i / times)``, k < times, on each segment, and the last point
    is appended: ``times * (n - 1) + 1`` points, the input points among them exactly.
    """
    out: list[np.ndarray | None] = [None] * len(lanes)
    splined = []
    for i, lane in enumerate(lanes):
        raw = np.asarray(lane, dtype=np.float32).reshape(-1, 2)
        if len(raw) < 2:
            continue
        pts = drop_repeats(raw)
        if len(pts) == 1:
            out[i] = np.concatenate([pts, pts])
        elif len(pts) == 2:
            out[i] = pts
        else:
            splined.append((i, pts))
    if splined:
        for (i, _), samples in zip(splined, _sample_splines([p for _, p in splined], times)):
            out[i] = samples
    return out
