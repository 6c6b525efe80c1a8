"""Drawing a sampled scene: sky and skyline, road surface with texture and shadows, paint,
vehicles, haze, night and glare, sensor noise. A layout with ``render_scale < 1`` is drawn at
that fraction of its size through a scaled camera and resized, which keeps large images fast.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from srlane.synthetic.scene import Camera, Line, Road, Scene, SceneLabel, Trace, Vehicle, sample

_SUBPIXEL = 3  # fillPoly shift: coordinates in 1/8 pixel
_BEV_X, _BEV_Z = 40.0, 150.0  # texture / shadow map: +-40 m across, 0..150 m ahead
_BEV_SX, _BEV_SZ = 0.2, 0.2  # its cell size (m)
# the painted strips of a line style, left to right: each solid or dashed (two strips 0.1 m apart)
_STRIPS = {"solid": ("solid",), "dashed": ("dashed",), "double": ("solid", "solid"),
           "double-dashed": ("dashed", "dashed"), "left-dashed": ("dashed", "solid"), "left-solid": ("solid", "dashed")}
_KERB = 0.25  # width (m) of the kerb stone drawn outside an openlane road edge


# ----------------------------------------------------------------------------- drawing helpers

def _polygon(u: np.ndarray, v: np.ndarray, row0: float = 0.0) -> np.ndarray:
    """fillPoly vertices (1/8 pixel) of image points, rows counted from ``row0``."""
    pts = np.stack([u, v - row0], axis=1) * (1 << _SUBPIXEL)
    return np.round(np.clip(pts, -2e5, 2e5)).astype(np.int32)


def _strip(road: Road, cam: Camera, lateral: tuple[float, float], s0: float, s1: float,
           row0: float = 0.0) -> np.ndarray:
    """Image polygon of the ground strip between two lateral offsets from arc length s0 to s1."""
    s = np.linspace(s0, s1, max(2, int(np.ceil((s1 - s0) / 0.5)) + 1))
    xl, zl = road.offset(lateral[0], s)
    xr, zr = road.offset(lateral[1], s)
    x, z = np.concatenate([xl, xr[::-1]]), np.concatenate([zl, zr[::-1]])
    u, v = cam.project(x, np.maximum(z, cam.near))
    return _polygon(u, v, row0)


def _smooth_noise(rng: np.random.Generator, coarse: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Unit-variance-ish noise drawn on a ``coarse`` (rows, cols) grid and upscaled to ``size`` (w, h)."""
    return cv2.resize(rng.standard_normal(coarse).astype(np.float32), size, interpolation=cv2.INTER_CUBIC)


def _bev_noise(rng: np.random.Generator, cell: float) -> np.ndarray:
    """Smooth noise on the bird's-eye ground grid with features about ``cell`` metres across."""
    cols, rows = int(2 * _BEV_X / _BEV_SX), int(_BEV_Z / _BEV_SZ)
    coarse = (int(np.ceil(_BEV_Z / cell)) + 1, int(np.ceil(2 * _BEV_X / cell)) + 1)
    return _smooth_noise(rng, coarse, (cols, rows))


def _add_glow(img: np.ndarray, u: float, v: float, radius: float, color: tuple[float, float, float]) -> None:
    """Add a Gaussian light blob of peak ``color`` (BGR) centred at (u, v)."""
    h, w = img.shape[:2]
    x0, x1 = max(0, int(u - 3 * radius)), min(w, int(u + 3 * radius) + 1)
    y0, y1 = max(0, int(v - 3 * radius)), min(h, int(v + 3 * radius) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    gx = np.exp(-0.5 * ((np.arange(x0, x1) - u) / radius) ** 2).astype(np.float32)
    gy = np.exp(-0.5 * ((np.arange(y0, y1) - v) / radius) ** 2).astype(np.float32)
    img[y0:y1, x0:x1] += np.outer(gy, gx)[..., None] * np.asarray(color, np.float32)


def _arrow_shapes(kind: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Polygons (lateral, along) in metres of a painted arrow whose tail is at the origin."""
    total, stem, head_len, head_w = rng.uniform(4.5, 6.5), rng.uniform(0.15, 0.25), rng.uniform(1.4, 2.0), rng.uniform(0.6, 0.9)

    def bar(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        n = np.array([q[1] - p[1], p[0] - q[0]]) / np.linalg.norm(q - p) * stem / 2
        return np.array([p - n, p + n, q + n, q - n])

    def head(p: np.ndarray, d: np.ndarray) -> np.ndarray:
        d = d / np.linalg.norm(d)
        n = np.array([d[1], -d[0]]) * head_w / 2
        return np.array([p - n, p + n, p + d * head_len])

    shapes = []
    if kind.startswith("straight"):
        top = np.array([0.0, total - head_len])
        shapes += [bar(np.zeros(2), top), head(top, np.array([0.0, 1.0]))]
    else:
        shapes.append(bar(np.zeros(2), np.array([0.0, total * 0.55])))
    side = -1.0 if kind.endswith("left") else 1.0 if kind.endswith("right") else 0.0
    if side:
        start, end = np.array([0.0, total * 0.4]), np.array([side * 0.5, total * 0.55])
        shapes += [bar(start, end), head(end, np.array([side, 0.45]))]
    return shapes


# ----------------------------------------------------------------------------- rendering

def _line_segments(line: Line, trace: Trace, rng: np.random.Generator, style: str) -> list[tuple[float, float]]:
    """Painted arc-length intervals of a ``solid`` or ``dashed`` strip of a line: dashes, or one
    solid run, thinned by wear."""
    lo, hi = trace.s_lo, trace.s_hi
    if style == "dashed":
        period = line.dash + line.gap
        starts = np.arange(lo - (lo - line.phase) % period, hi, period)
        segments = [(max(a, lo), min(a + line.dash, hi)) for a in starts]
    elif line.keep < 1.0:  # worn solid paint: pieces with short bare gaps
        pieces = np.cumsum(rng.uniform(1.5, 4.0, size=int((hi - lo) / 1.5) + 2)) + lo
        segments = [(a, b - rng.uniform(0.3, 1.0)) for a, b in zip(np.concatenate([[lo], pieces[:-1]]), pieces)]
        segments = [(a, min(b, hi)) for a, b in segments if a < hi]
    else:
        segments = [(lo, hi)]
    segments = [(a, b) for a, b in segments if b > a]
    if line.keep < 1.0 and segments:
        count = int(np.ceil(line.keep * len(segments)))
        segments = [segments[i] for i in np.sort(rng.choice(len(segments), count, replace=False))]
    return segments


def _paint_masks(scene: Scene, rng: np.random.Generator, row0: int) -> tuple[np.ndarray, np.ndarray]:
    """White and yellow paint opacity (uint8, ground rows) of lines, arrows and crossings."""
    road, cam, layout = scene.road, scene.cam, scene.layout
    shape = (layout.height - row0, layout.width)
    white, yellow = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    for line, trace in scene.traces:
        styles = _STRIPS[line.style]
        if len(styles) == 1:
            lefts = [line.offset - line.width / 2]
        else:
            lefts = [line.offset - line.width - 0.05, line.offset + 0.05]
        polys = [_strip(road, cam, (a, a + line.width), s0, s1, row0)
                 for style in dict.fromkeys(styles) for s0, s1 in _line_segments(line, trace, rng, style)
                 for a, strip_style in zip(lefts, styles) if strip_style == style]
        if polys:
            cv2.fillPoly(yellow if line.yellow else white, polys, int(255 * line.paint), cv2.LINE_AA, _SUBPIXEL)
    marks = []
    for kind, centre, s0 in scene.arrows:
        for shape_m in _arrow_shapes(kind, rng):
            x, z = road.offset(centre + shape_m[:, 0], s0 + shape_m[:, 1])
            marks.append(_polygon(*cam.project(x, z), row0))
    if scene.crosswalk is not None:
        s0, depth = scene.crosswalk
        for a in np.arange(scene.road_left + 0.5, scene.road_right - 0.5, 1.0):
            marks.append(_strip(road, cam, (a, a + 0.45), s0, s0 + depth, row0))
    if scene.stop_line is not None:
        marks.append(_strip(road, cam, (scene.road_left + 0.5, 0.6 * scene.road_right), scene.stop_line,
                            scene.stop_line + 0.4, row0))
    for poly in marks:
        cv2.fillPoly(white, [poly], int(255 * rng.uniform(0.8, 0.95)), cv2.LINE_AA, _SUBPIXEL)
    return white, yellow


def _skyline(img: np.ndarray, scene: Scene, rng: np.random.Generator, row0: int) -> None:
    """Buildings and a tree line standing on the horizon."""
    w = scene.layout.width
    tall = int(0.12 * scene.layout.height)
    top = max(0, row0 - tall)
    rows = np.arange(top, row0)[:, None].astype(np.float32)
    edges = np.cumsum(rng.integers(40, 220, size=w // 40 + 2))
    blocks = rng.uniform(0, tall, size=len(edges)) * (rng.random(len(edges)) < 0.5)
    building = blocks[np.searchsorted(edges, np.arange(w))]
    knots = rng.uniform(0, tall * 0.7, size=w // 60 + 2) * (rng.random(w // 60 + 2) < 0.8)
    trees = np.interp(np.arange(w), np.linspace(0, w, len(knots)), knots) + rng.uniform(0, 4, size=w)
    region = img[top:row0]
    grey = rng.uniform(90, 160)
    region[rows >= scene.cam.horizon - building[None, :]] = (grey, grey, grey * rng.uniform(0.95, 1.05))
    region[rows >= scene.cam.horizon - trees[None, :]] = np.array([50, 85, 55]) * rng.uniform(0.7, 1.2)


def _base_image(scene: Scene, rng: np.random.Generator, row0: int) -> np.ndarray:
    """Sky, skyline, verge and road surface (float32 BGR)."""
    layout, road, cam = scene.layout, scene.road, scene.cam
    img = np.empty((layout.height, layout.width, 3), np.uint8)
    t = np.linspace(0.0, 1.0, row0)[:, None]
    img[:row0] = np.round(scene.sky_top * (1 - t) + scene.sky_bottom * t)[:, None, :]
    _skyline(img, scene, rng, row0)
    img[row0:] = np.round(np.clip(scene.verge, 0, 255))
    asphalt = np.clip(scene.asphalt, 0, 255).tolist()
    s_end = float(road.s[road.end - 1])
    cv2.fillPoly(img, [_strip(road, cam, (scene.road_left, scene.road_right), -4.0, s_end)], asphalt,
                 cv2.LINE_AA, _SUBPIXEL)
    if layout.openlane_kinds:  # kerb stones, a little paler than the asphalt, just outside its edges
        kerb = np.clip(scene.asphalt * 1.15 + 12.0, 0, 255).tolist()
        kerbs = [_strip(road, cam, (scene.road_left - _KERB, scene.road_left), -4.0, s_end),
                 _strip(road, cam, (scene.road_right, scene.road_right + _KERB), -4.0, s_end)]
        cv2.fillPoly(img, kerbs, kerb, cv2.LINE_AA, _SUBPIXEL)
    if scene.crossing is not None:
        s0, depth = scene.crossing
        cv2.fillPoly(img, [_strip(road, cam, (-80.0, 80.0), s0, s0 + depth)], asphalt, cv2.LINE_AA, _SUBPIXEL)
    return img.astype(np.float32)


def _cast_shadows(shade: np.ndarray, rng: np.random.Generator, to_bev) -> None:
    """Tree, building or pole shadows (opacity in ``shade``, a ground map)."""
    rows, cols = shade.shape
    depth = rng.uniform(0.45, 0.68)
    kinds = rng.permutation(["trees", "building", "poles"])[:int(rng.integers(1, 3))]
    if "trees" in kinds:
        n = _bev_noise(rng, 5.0) + 0.6 * _bev_noise(rng, 1.5)
        cover = np.clip((n - rng.uniform(-0.4, 0.2)) / 0.3, 0.0, 1.0) * depth
        near = rng.uniform(0.0, 15.0)
        ahead = (_BEV_Z - _BEV_SZ * np.arange(rows))[:, None]
        cover *= (ahead >= near) & (ahead <= near + rng.uniform(30.0, 90.0))
        np.maximum(shade, cover, out=shade)
    if "building" in kinds:
        side = rng.choice([-1.0, 1.0])
        z1 = rng.uniform(0.0, 15.0)
        z2 = z1 + rng.uniform(20.0, 80.0)
        e1, e2 = rng.uniform(-3.0, 3.0, size=2)
        x = side * np.array([-60.0, e1, e2, -60.0])
        cv2.fillPoly(shade, [to_bev(x, np.array([z1, z1, z2, z2]))], float(depth), cv2.LINE_8, _SUBPIXEL)
    if "poles" in kinds:
        for _ in range(int(rng.integers(3, 7))):
            za, zb = rng.uniform(5.0, 50.0), rng.uniform(-15.0, 15.0)
            width = rng.uniform(0.4, 0.9)
            x = np.array([-30.0, 30.0, 30.0, -30.0])
            z = za + np.array([-zb, zb, zb + width, -zb + width])
            cv2.fillPoly(shade, [to_bev(x, z)], float(depth), cv2.LINE_8, _SUBPIXEL)


def _ground_factor(scene: Scene, rng: np.random.Generator, row0: int) -> np.ndarray:
    """Multiplicative texture and shadow map of the ground rows, drawn on a bird's-eye grid and
    warped through the camera so that it shrinks with distance."""
    road, cam, layout = scene.road, scene.cam, scene.layout
    cols, rows = int(2 * _BEV_X / _BEV_SX), int(_BEV_Z / _BEV_SZ)
    left = cam.x - _BEV_X

    def to_bev(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        pts = np.stack([(x - left) / _BEV_SX, (_BEV_Z - z) / _BEV_SZ], axis=1) * (1 << _SUBPIXEL)
        return np.round(np.clip(pts, -2e5, 2e5)).astype(np.int32)

    def strip(lateral: tuple[float, float], s0: float, s1: float) -> np.ndarray:
        s = np.linspace(s0, s1, max(2, int((s1 - s0) / 1.0) + 1))
        xl, zl = road.offset(lateral[0], s)
        xr, zr = road.offset(lateral[1], s)
        return to_bev(np.concatenate([xl, xr[::-1]]), np.concatenate([zl, zr[::-1]]))

    paved = np.zeros((rows, cols), np.float32)
    s_end = min(float(road.s[road.end - 1]), _BEV_Z + 20.0)
    cv2.fillPoly(paved, [strip((scene.road_left, scene.road_right), -4.0, s_end)], 1.0, cv2.LINE_8, _SUBPIXEL)
    if scene.crossing is not None:
        s0, depth = scene.crossing
        cv2.fillPoly(paved, [strip((-80.0, 80.0), s0, s0 + depth)], 1.0, cv2.LINE_8, _SUBPIXEL)
    coarse, fine = _bev_noise(rng, 10.0), _bev_noise(rng, 1.0)
    texture = 1.0 + (0.05 + 0.05 * (1.0 - paved)) * coarse + (0.035 + 0.05 * (1.0 - paved)) * fine
    if scene.lines and rng.random() < 0.5:  # darker wheel paths along the lane centres
        tracks = np.zeros((rows, cols), np.uint8)
        s = np.arange(0.0, s_end, 1.0)
        for a, b in zip(scene.lines, scene.lines[1:]):
            centre = (a.offset + b.offset) / 2
            curves = [to_bev(*road.offset(centre + side, s)) for side in (-0.8, 0.8)]
            cv2.polylines(tracks, curves, False, 255, 3, cv2.LINE_AA, _SUBPIXEL)
        texture *= 1.0 - rng.uniform(0.04, 0.1) * tracks.astype(np.float32) / 255.0

    shade = np.zeros((rows, cols), np.float32)
    for veh in scene.vehicles:
        x = veh.x + np.array([-0.5, 0.5, 0.5, -0.5]) * (veh.width + 0.3)
        z = veh.z + np.array([-0.3, -0.3, veh.length, veh.length])
        cv2.fillPoly(shade, [to_bev(x, z)], 0.55, cv2.LINE_8, _SUBPIXEL)
    if scene.category == "shadow":
        _cast_shadows(shade, rng, to_bev)
    factor = texture * (1.0 - cv2.blur(shade, (3, 3)))
    bev_to_ground = np.array([[_BEV_SX, 0.0, left], [0.0, -_BEV_SZ, _BEV_Z], [0.0, 0.0, 1.0]])
    crop = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -row0], [0.0, 0.0, 1.0]])
    return cv2.warpPerspective(factor, crop @ cam.ground_homography() @ bev_to_ground,
                               (layout.width, layout.height - row0), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)


def _quad(img: np.ndarray, cam: Camera, corners: list[tuple[float, float, float]], color: np.ndarray) -> None:
    """Fill the image of a planar quadrilateral given by (x, y, z) corners."""
    x, y, z = (np.array(c, np.float64) for c in zip(*corners))
    u, v = cam.project(x, z, y)
    cv2.fillPoly(img, [_polygon(u, v)], np.clip(color, 0, 255).tolist(), cv2.LINE_8, _SUBPIXEL)


def _box(img: np.ndarray, cam: Camera, xs: tuple[float, float], ys: tuple[float, float],
         zs: tuple[float, float], color: np.ndarray) -> None:
    """Fill an axis-aligned rectangle in a plane of constant z (zs equal) or constant x (xs equal)."""
    (x0, x1), (y0, y1), (z0, z1) = xs, ys, zs
    if z0 == z1:
        corners = [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)]
    else:
        corners = [(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)]
    _quad(img, cam, corners, color)


def _draw_vehicle(img: np.ndarray, cam: Camera, veh: Vehicle) -> list[tuple[float, float, float]]:
    """Draw a car or truck seen from behind; returns its tail lights as image (u, v, radius)."""
    x, z, w, h, length, color = veh.x, veh.z, veh.width, veh.height, veh.length, veh.color
    dark, glass, red = np.array([22.0, 22, 24]), np.array([55.0, 50, 48]) + 0.15 * color, np.array([40.0, 40, 190])
    half = w / 2
    side = x - half if x - half > cam.x else x + half if x + half < cam.x else None
    _box(img, cam, (x - half + 0.1, x + half - 0.1), (0.0, 0.4), (z + 0.3, z + 0.3), dark)
    if veh.kind == "truck":
        floor, lights_y = 0.6, (0.75, 0.95)
        _box(img, cam, (x - half + 0.2, x + half - 0.2), (0.0, floor), (z + 0.5, z + 0.5), dark)
        if side is not None:
            _box(img, cam, (side, side), (floor, h), (z, z + length), color * 0.7)
            _box(img, cam, (side, side), (0.0, 1.0), (z + 1.0, z + 2.0), dark)
        _box(img, cam, (x - half, x + half), (floor, h), (z, z), color * 0.9)
        _box(img, cam, (x - 0.03, x + 0.03), (floor + 0.1, h - 0.1), (z, z), color * 0.6)
    else:
        belt, cabin = 0.58 * h, 0.2 * length
        lights_y = (belt - 0.25, belt - 0.08)
        if side is not None:
            inset = side + (0.1 * w if side < x else -0.1 * w)
            _box(img, cam, (side, side), (0.25, belt), (z, z + length), color * 0.7)
            for a in (z + 0.6, z + length - 1.4):
                _box(img, cam, (side, side), (0.0, 0.6), (a, a + 0.8), dark)
            _box(img, cam, (inset, inset), (belt, h), (z + cabin, z + 0.8 * length), color * 0.55)
            _box(img, cam, (inset, inset), (belt + 0.08, h - 0.08), (z + cabin + 0.2, z + 0.75 * length), glass * 0.8)
        _box(img, cam, (x - half, x + half), (0.25, belt), (z, z), color * 0.9)
        _quad(img, cam, [(x - half, belt, z), (x + half, belt, z), (x + 0.4 * w, belt, z + cabin),
                         (x - 0.4 * w, belt, z + cabin)], color)
        _box(img, cam, (x - 0.4 * w, x + 0.4 * w), (belt, h), (z + cabin, z + cabin), color * 0.8)
        _box(img, cam, (x - 0.36 * w, x + 0.36 * w), (belt + 0.05, h - 0.08), (z + cabin, z + cabin), glass)
        _box(img, cam, (x - 0.25, x + 0.25), (0.3, 0.42), (z, z), np.array([200.0, 200, 200]))
    lights = []
    for a in (x - half + 0.05, x + half - 0.35):
        _box(img, cam, (a, a + 0.3), lights_y, (z, z), red)
        u, v = cam.project(np.array([a + 0.15]), np.array([z]), np.array([sum(lights_y) / 2]))
        lights.append((float(u[0]), float(v[0]), max(2.0, cam.f * 0.25 / z)))
    return lights


def _haze(img: np.ndarray, scene: Scene, rng: np.random.Generator) -> None:
    """Fade everything near the horizon towards the sky colour (aerial perspective)."""
    tau, strength = rng.uniform(8.0, 18.0), rng.uniform(0.3, 0.55)
    horizon = scene.cam.horizon
    lo, hi = max(0, int(horizon - 4 * tau)), min(img.shape[0], int(horizon + 6 * tau))
    weight = (strength * np.exp(-np.abs(np.arange(lo, hi) - horizon) / tau)).astype(np.float32)[:, None, None]
    img[lo:hi] += (scene.sky_bottom.astype(np.float32) - img[lo:hi]) * weight


def _night(img: np.ndarray, scene: Scene, rng: np.random.Generator, lights: list, row0: int) -> None:
    """Darken to 30-45 % and light the near road with headlights, lamps and tail lights."""
    h, w = img.shape[:2]
    cam = scene.cam
    img *= rng.uniform(0.3, 0.45)
    depth = np.clip((np.arange(row0, h) - cam.horizon) / (h - cam.horizon), 0.0, 1.0) ** 0.8
    across = np.exp(-0.5 * ((np.arange(w) - cam.cx) / (w * rng.uniform(0.25, 0.4))) ** 2)
    img[row0:] *= (1.0 + rng.uniform(1.0, 1.6) * np.outer(depth, across)).astype(np.float32)[..., None]
    for _ in range(int(rng.integers(0, 4))):
        _add_glow(img, rng.uniform(0, w), cam.horizon - rng.uniform(15, 90), rng.uniform(5, 14), (120, 190, 240))
    for u, v, radius in lights:
        _add_glow(img, u, v, radius * 2.0, (60, 60, 230))


def _glare(img: np.ndarray, scene: Scene, rng: np.random.Generator, row0: int) -> None:
    """A low sun: a saturated glow, a veil over the view, a streak on the road and lens ghosts."""
    h, w = img.shape[:2]
    horizon = scene.cam.horizon
    us, vs = rng.uniform(0.15, 0.85) * w, horizon - rng.uniform(30.0, 130.0)
    radius = rng.uniform(0.06, 0.12) * w
    cols, rows = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)

    def bump(values: np.ndarray, centre: float, sigma: float) -> np.ndarray:
        return np.exp(-0.5 * ((values - centre) / sigma) ** 2)

    veil = rng.uniform(0.15, 0.3) * np.outer(bump(rows, vs, 0.6 * w), bump(cols, us, 0.6 * w))
    img += (255.0 - img) * veil[..., None]
    img += rng.uniform(120.0, 200.0) * np.outer(bump(rows, vs, radius), bump(cols, us, radius))[..., None] \
        * np.array([1.0, 0.97, 0.92], np.float32)
    streak = np.outer(bump(rows[row0:], horizon + 0.35 * (h - horizon), 0.3 * (h - horizon)),
                      bump(cols, us, 0.3 * radius))
    img[row0:] += rng.uniform(40.0, 90.0) * streak[..., None]
    for t in (0.6, 1.2, 1.6):
        gu, gv = us + (w / 2 - us) * 2 * t, vs + (h / 2 - vs) * 2 * t
        _add_glow(img, gu, gv, rng.uniform(12, 40), tuple(rng.uniform(20, 50, size=3)))


def _draw(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The float32 BGR image of a scene, before sensor noise."""
    layout, cam = scene.layout, scene.cam
    row0 = int(np.floor(cam.horizon)) + 1
    img = _base_image(scene, rng, row0)
    ground = img[row0:]
    white, yellow = _paint_masks(scene, rng, row0)
    wear = None
    if scene.category == "noline":
        coarse = (max(2, (layout.height - row0) // 10), layout.width // 10)
        noise = cv2.resize(rng.random(coarse, dtype=np.float32), (layout.width, layout.height - row0))
        wear = 0.5 + 0.5 * np.clip((noise - rng.uniform(0.25, 0.5)) / 0.25, 0.0, 1.0)
    for mask, color in ((white, scene.white), (yellow, scene.yellow)):
        if mask.any():
            alpha = mask.astype(np.float32) * np.float32(1 / 255)
            if wear is not None:
                alpha *= wear
            ground += (color.astype(np.float32) - ground) * alpha[..., None]
    ground *= _ground_factor(scene, rng, row0)[..., None]
    lights = [light for veh in scene.vehicles for light in _draw_vehicle(img, cam, veh)]
    _haze(img, scene, rng)
    if scene.category == "night":
        _night(img, scene, rng, lights, row0)
    elif scene.category == "hlight":
        _glare(img, scene, rng, row0)
    return img


def _scaled(scene: Scene, scale: float) -> Scene:
    """The scene as seen at ``scale`` times the image size: a pixel centre (u, v) of the small
    image lands on ((u + 0.5) / scale - 0.5, ...) of the full one, as ``cv2.resize`` maps it."""
    layout, cam = scene.layout, scene.cam
    shift = 0.5 * scale - 0.5
    small = dataclasses.replace(layout, width=round(layout.width * scale), height=round(layout.height * scale))
    view = dataclasses.replace(cam, f=cam.f * scale, cx=cam.cx * scale + shift, horizon=cam.horizon * scale + shift)
    return dataclasses.replace(scene, layout=small, cam=view)


def render(fmt: str, seed: int, split: str, index: int) -> tuple[np.ndarray, SceneLabel]:
    """Image (uint8 BGR) and label of scene ``index`` of a ``split`` (``train`` or ``test``) of a
    ``culane``, ``tusimple``, ``curvelanes`` or ``openlane`` set."""
    scene, rng = sample(fmt, seed, split, index)
    layout = scene.layout
    if layout.render_scale == 1.0:
        img = _draw(scene, rng)
    else:
        img = cv2.resize(_draw(_scaled(scene, layout.render_scale), rng), (layout.width, layout.height),
                         interpolation=cv2.INTER_LINEAR)
    sigma = rng.uniform(4.0, 7.0) if scene.category == "night" else rng.uniform(2.0, 4.5)
    img += rng.standard_normal(img.shape[:2], dtype=np.float32)[..., None] * np.float32(sigma)
    return np.clip(img, 0, 255).astype(np.uint8), scene.label()
