"""Procedural road scenes written in the CULane or TuSimple layout (the embedded default data set).

A scene is a flat road seen by a pinhole camera. The lane lines are parallel offsets of a centre
curve whose heading changes linearly (or quadratically) with arc length, projected through the
camera, so they meet near a vanishing point on the horizon and are thick near, thin far. The
annotation of a line is its projected centre line, sampled every 10 rows from the bottom up and
clipped to the image; the paint is drawn over exactly the annotated stretch.

Every image has its own random generator seeded with (seed, split, index), and its test category
comes from a shuffled block of 20 (``CATEGORY_BLOCK``), so a set is byte-identical for a seed in
any order and with any number of worker processes, and each block of 20 test images holds every
category.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from srlane.data.culane import CATEGORIES
from srlane.fileio import atomic_write_bytes

GENERATOR_VERSION = 1
MARKER = ".complete"
SPLITS = ("train", "test")
CATEGORY_BLOCK = (("normal",) * 8 + ("crowd", "shadow", "noline", "night") * 2
                  + ("hlight", "arrow", "curve", "cross"))
JPEG_QUALITY = 90
TUSIMPLE_H_SAMPLES = tuple(range(160, 720, 10))
TUSIMPLE_TRAIN_FILES = ("label_data_0313.json",) * 5 + ("label_data_0531.json", "label_data_0601.json")

_STEP = 0.25  # arc-length step of the road centre curve (m)
_ROAD_LENGTH = 400.0  # metres of road modelled ahead of the camera
_MAX_HEADING = 1.25  # rad: the road is drawn while it runs less than ~72 degrees across the view
_MIN_POINTS = 6  # a line visible over fewer annotation rows is neither drawn nor annotated
_SUBPIXEL = 3  # fillPoly shift: coordinates in 1/8 pixel
_BEV_X, _BEV_Z = 40.0, 150.0  # texture / shadow map: +-40 m across, 0..150 m ahead
_BEV_SX, _BEV_SZ = 0.2, 0.2  # its cell size (m)


@dataclass(frozen=True)
class Layout:
    """Image size and annotation grid of one dataset layout."""

    name: str
    width: int
    height: int
    horizon: tuple[float, float]  # range of the horizon row
    focal: tuple[float, float]  # range of the focal length as a fraction of the width
    bottom_row: int  # lowest annotated row; rows go up from it in steps of 10
    top_row: int  # highest row an annotation may reach
    max_side: int  # lines on each side of the camera
    max_lines: int


CULANE = Layout("culane", 1640, 590, (264.0, 290.0), (0.55, 0.65), 589, 0, 2, 4)
TUSIMPLE = Layout("tusimple", 1280, 720, (245.0, 280.0), (0.62, 0.75), 710, 160, 3, 5)
LAYOUTS = {"culane": CULANE, "tusimple": TUSIMPLE}


@dataclass
class SceneLabel:
    """What an image is annotated with: its category and lanes exactly as written.

    ``lanes`` are ``(N, 2)`` float arrays of (x, y), bottom point first, y every 10 rows, left to
    right; ``slots`` the CULane existence-flag index of each lane (0, 1 left of the camera, 2, 3
    right) or its left-to-right index for TuSimple.
    """

    category: str
    lanes: list[np.ndarray] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)


# ----------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class _Camera:
    """Pinhole camera at height ``height`` and lateral position ``x`` looking along +Z."""

    f: float
    cx: float
    horizon: float
    height: float
    x: float
    near: float  # depth of the ground 50 rows below the image: nothing nearer is drawn

    def project(self, x: np.ndarray, z: np.ndarray, y: float | np.ndarray = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Image (u, v) of world points (x across, y up, z ahead)."""
        return self.cx + self.f * (x - self.x) / z, self.horizon + self.f * (self.height - y) / z

    def ground_homography(self) -> np.ndarray:
        """3x3 matrix taking ground points (x, z, 1) to homogeneous image points."""
        return np.array([[self.f, self.cx, -self.f * self.x],
                         [0.0, self.horizon, self.f * self.height],
                         [0.0, 1.0, 0.0]])


class _Road:
    """Centre curve of the road sampled every ``_STEP`` m of arc length from s = -4 m."""

    def __init__(self, heading: float, curvature: float, curvature_rate: float) -> None:
        self.s = np.arange(-4.0, _ROAD_LENGTH, _STEP)
        self.theta = heading + curvature * self.s + 0.5 * curvature_rate * self.s ** 2
        dx, dz = np.sin(self.theta), np.cos(self.theta)
        x = np.concatenate([[0.0], np.cumsum((dx[1:] + dx[:-1]) * 0.5 * _STEP)])
        z = np.concatenate([[0.0], np.cumsum((dz[1:] + dz[:-1]) * 0.5 * _STEP)])
        origin = int(round(4.0 / _STEP))
        self.x, self.z = x - x[origin], z - z[origin]
        beyond = np.flatnonzero(np.abs(self.theta) > _MAX_HEADING)
        self.end = int(beyond[0]) if len(beyond) else len(self.s)  # samples past this are not drawn

    def offset(self, lateral: float | np.ndarray, s: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ground (x, z) of the curve at ``lateral`` metres right of the centre, at arc lengths
        ``s`` (default: every sample)."""
        if s is None:
            theta, x, z = self.theta, self.x, self.z
        else:
            theta, x, z = (np.interp(s, self.s, a) for a in (self.theta, self.x, self.z))
        return x + lateral * np.cos(theta), z - lateral * np.sin(theta)


@dataclass
class _Line:
    """One painted lane line: lateral offset from the road centre and its paint."""

    offset: float
    slot: int
    yellow: bool
    width: float
    style: str  # "solid", "dashed" or "double"
    dash: float
    gap: float
    phase: float
    paint: float  # opacity of the paint
    keep: float  # fraction of dashes left by wear (1: all)
    top_margin: float  # the line fades this many rows below the horizon


@dataclass
class _Trace:
    """The visible stretch of a line: its annotation and the arc lengths to paint."""

    points: np.ndarray  # (N, 2) as written, bottom first
    s_lo: float
    s_hi: float


def _row_grid(layout: Layout, v_top: float) -> np.ndarray:
    """Annotation rows from the bottom row upwards, not above ``v_top`` nor ``layout.top_row``."""
    top = max(v_top, layout.top_row)
    count = int(np.floor((layout.bottom_row - top) / 10.0)) + 1
    return layout.bottom_row - 10.0 * np.arange(max(count, 0))


def _round_x(x: np.ndarray, layout: Layout) -> np.ndarray:
    """x as written: 3 decimals for CULane, integers for TuSimple."""
    return np.round(x, 3) if layout.name == "culane" else np.round(x)


def _longest_run(inside: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the longest run of True values (0, 0 when none)."""
    padded = np.concatenate([[False], inside, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    if len(edges) == 0:
        return 0, 0
    starts, stops = edges[0::2], edges[1::2]
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best])


def _trace(road: _Road, cam: _Camera, layout: Layout, offset: float, v_top: float) -> _Trace | None:
    """Annotation of the line at ``offset`` (None when visible over fewer than _MIN_POINTS rows)."""
    x, z = road.offset(offset)
    first = int(np.searchsorted(z, cam.near))  # z grows along the curve while the heading is < 90 deg
    if road.end - first < 4:
        return None
    u, v = cam.project(x[first:road.end], z[first:road.end])
    s = road.s[first:road.end]
    rows = _row_grid(layout, max(v_top, v[-1]))
    xs = _round_x(np.interp(rows, v[::-1], u[::-1]), layout)
    start, stop = _longest_run((xs >= 0) & (xs <= layout.width - 1))
    if stop - start < _MIN_POINTS:
        return None
    points = np.stack([xs[start:stop], rows[start:stop]], axis=1)
    # paint from just below the lowest point (or from below the image) to just above the highest;
    # where the run ends at an image side, paint on to the next row, which lies outside the image
    at_bottom = start == 0
    below = rows[start] + 10.0
    at_top = stop == len(rows)
    above = rows[stop - 1] - (2.0 if at_top else 10.0)
    s_lo = float(s[0]) if at_bottom else float(np.interp(below, v[::-1], s[::-1]))
    s_hi = float(np.interp(above, v[::-1], s[::-1]))
    return _Trace(points, s_lo, s_hi)


# ----------------------------------------------------------------------------- scene sampling

@dataclass
class _Vehicle:
    x: float
    z: float
    width: float
    height: float
    length: float
    color: np.ndarray
    kind: str  # "car" or "truck"


@dataclass
class _Scene:
    layout: Layout
    category: str
    cam: _Camera
    road: _Road
    lines: list[_Line]
    road_left: float  # lateral road edges (m from the centre)
    road_right: float
    asphalt: np.ndarray
    verge: np.ndarray
    white: np.ndarray
    yellow: np.ndarray
    sky_top: np.ndarray
    sky_bottom: np.ndarray
    vehicles: list[_Vehicle]
    arrows: list[tuple[str, float, float]]  # (kind, lane centre offset, arc length)
    crossing: tuple[float, float] | None  # (arc length, depth) of a transverse road
    crosswalk: tuple[float, float] | None  # (arc length, depth) of zebra bars
    stop_line: float | None


_WHITE = (232.0, 235.0, 235.0)
_YELLOW = (60.0, 190.0, 225.0)  # BGR
_CAR_COLORS = np.array([[235, 235, 235], [180, 180, 185], [40, 40, 45], [40, 40, 170], [150, 90, 40],
                        [90, 90, 95], [60, 120, 60], [200, 200, 210]], np.float32)


def _category(seed: int, split: str, index: int) -> str:
    """Category of one image: a slot of a per-block shuffled CATEGORY_BLOCK."""
    block, slot = divmod(index, len(CATEGORY_BLOCK))
    order = np.random.default_rng([seed, SPLITS.index(split), block, len(CATEGORY_BLOCK)]).permutation(
        len(CATEGORY_BLOCK))
    return CATEGORY_BLOCK[int(order[slot])]


def _sample_lines(rng: np.random.Generator, layout: Layout, category: str, lane_width: float) -> list[_Line]:
    """Lane lines left to right with CULane slots; empty for ``cross``."""
    side_counts = np.arange(1, layout.max_side + 1)
    while True:
        weights = 0.45 ** (side_counts - 1) if category != "crowd" else np.ones(layout.max_side)
        n_left, n_right = (int(rng.choice(side_counts, p=weights / weights.sum())) for _ in range(2))
        if n_left + n_right <= layout.max_lines:
            break
    widths = lane_width * rng.uniform(0.94, 1.06, size=max(n_left, n_right))
    left = [-widths[0] / 2 - widths[1:k + 1].sum() for k in range(n_left)]
    right = [widths[0] / 2 + widths[1:k + 1].sum() for k in range(n_right)]
    offsets = left[::-1] + right
    if layout.name == "culane":
        slots = [1 - k for k in range(n_left)][::-1] + [2 + k for k in range(n_right)]
    else:
        slots = list(range(n_left + n_right))
    worn = category == "noline"
    lines = []
    for i, offset in enumerate(offsets):
        outer = i == 0 or i == len(offsets) - 1
        style = "solid" if rng.random() < (0.55 if outer else 0.15) else "dashed"
        yellow = bool(rng.random() < (0.25 if i == 0 else 0.0 if outer else 0.08))
        if yellow and i == 0 and rng.random() < 0.4:
            style = "double"
        dash = rng.uniform(2.5, 6.0)
        lines.append(_Line(
            offset=float(offset), slot=slots[i], yellow=yellow,
            width=rng.uniform(0.12, 0.2), style=style, dash=dash, gap=dash * rng.uniform(1.0, 2.0),
            phase=rng.uniform(0.0, 15.0),
            paint=rng.uniform(0.55, 0.8) if worn else rng.uniform(0.85, 1.0),
            keep=rng.uniform(0.45, 0.8) if worn else 1.0,
            top_margin=rng.uniform(8.0, 22.0),
        ))
    return [] if category == "cross" else lines


def _sample_vehicles(rng: np.random.Generator, road: _Road, category: str, centres: list[float]) -> list[_Vehicle]:
    """Vehicles standing in lane centres, the number and distances set by the category."""
    if category == "crowd":
        count, near = int(rng.integers(3, 7)), 2
    elif category == "normal":
        count, near = int(rng.random() < 0.4), 0
    elif category == "cross":
        count, near = int(rng.integers(0, 4)), 0
    else:
        count, near = int(rng.integers(0, 3)), 0
    vehicles: list[_Vehicle] = []
    taken: list[tuple[float, float, float]] = []
    for k in range(count * 4):
        if len(vehicles) == count:
            break
        lane = float(rng.choice(centres)) + rng.uniform(-0.3, 0.3)
        s = rng.uniform(7.0, 25.0) if len(vehicles) < near else rng.uniform(12.0 if category == "crowd" else 30.0, 75.0)
        kind = "truck" if rng.random() < 0.15 else "car"
        length = rng.uniform(7.0, 11.0) if kind == "truck" else rng.uniform(4.0, 4.9)
        if any(abs(lane - l) < 2.2 and s < s2 + l2 + 2.0 and s2 < s + length + 2.0 for l, s2, l2 in taken):
            continue
        x, z = road.offset(lane, np.array([s]))
        if z[0] < 6.0:
            continue
        taken.append((lane, s, length))
        vehicles.append(_Vehicle(
            x=float(x[0]), z=float(z[0]),
            width=rng.uniform(2.3, 2.5) if kind == "truck" else rng.uniform(1.7, 1.95),
            height=rng.uniform(3.0, 3.6) if kind == "truck" else rng.uniform(1.4, 1.8),
            length=length, color=_CAR_COLORS[rng.integers(len(_CAR_COLORS))] * rng.uniform(0.85, 1.05), kind=kind))
    return sorted(vehicles, key=lambda veh: -veh.z)


def _sample_scene(rng: np.random.Generator, layout: Layout, category: str) -> _Scene:
    """All random choices of one scene."""
    night = category == "night"
    lane_width = rng.uniform(3.0, 3.9)
    f, horizon, height = layout.width * rng.uniform(*layout.focal), rng.uniform(*layout.horizon), rng.uniform(1.25, 1.75)
    cam = _Camera(f=f, cx=layout.width / 2 + rng.uniform(-20, 20), horizon=horizon, height=height,
                  x=lane_width * rng.uniform(-0.3, 0.3), near=f * height / (layout.height + 50 - horizon))
    if category == "curve":
        curvature = rng.choice([-1.0, 1.0]) * rng.uniform(0.006, 0.013)
    else:
        curvature = rng.uniform(-0.0025, 0.0025)
    road = _Road(heading=np.deg2rad(rng.uniform(-2.5, 2.5)), curvature=curvature,
                 curvature_rate=rng.uniform(-2e-5, 2e-5))
    lines = _sample_lines(rng, layout, category, lane_width)
    if lines:
        left_line, right_line = lines[0].offset, lines[-1].offset
    else:
        left_line, right_line = -1.5 * lane_width, 1.5 * lane_width
    shoulder = (8.0, 25.0) if category == "cross" else (0.4, 3.5)
    road_left = left_line - rng.uniform(*shoulder)
    road_right = right_line + rng.uniform(*shoulder)
    centres = [0.0] if lines else [0.0, -lane_width, lane_width]
    centres += [(a.offset + b.offset) / 2 for a, b in zip(lines, lines[1:]) if a.offset * b.offset > 0]
    if road_left < left_line - 2.5:
        centres.append(left_line - lane_width / 2)
    if road_right > right_line + 2.5:
        centres.append(right_line + lane_width / 2)

    grey = rng.uniform(70, 125) if rng.random() < 0.85 else rng.uniform(130, 160)
    asphalt = grey + rng.uniform(-5, 5, 3)
    verge_kind = rng.integers(3)
    verge = np.array([[55, 110, 75], [80, 110, 130], [130, 135, 135]], np.float64)[verge_kind]
    verge = verge * rng.uniform(0.8, 1.15) + rng.uniform(-8, 8, 3)
    if night:
        sky_top, sky_bottom = np.array([45.0, 30, 25]), np.array([70.0, 60, 55])
    elif category == "hlight":
        sky_top, sky_bottom = np.array([225.0, 220, 215]), np.array([235.0, 245, 250])
    elif rng.random() < 0.5:
        sky_top, sky_bottom = np.array([215.0, 170, 120]), np.array([240.0, 225, 210])
    else:
        sky_top, sky_bottom = np.array([190.0, 190, 190]), np.array([225.0, 225, 225])
    sky_top = sky_top * rng.uniform(0.9, 1.05)

    arrows = []
    if category == "arrow":
        lane_centres = [0.0] + [(a.offset + b.offset) / 2 for a, b in zip(lines, lines[1:]) if a.offset * b.offset > 0]
        for _ in range(int(rng.integers(1, 4))):
            kind = str(rng.choice(["straight", "left", "right", "straight_left", "straight_right"]))
            arrows.append((kind, float(rng.choice(lane_centres)), rng.uniform(5.0, 18.0)))
    crossing = crosswalk = stop_line = None
    if category == "cross":
        if rng.random() < 0.7:
            crossing = (rng.uniform(14.0, 35.0), rng.uniform(8.0, 16.0))
        if rng.random() < 0.4:
            crosswalk = (rng.uniform(6.0, 14.0), rng.uniform(3.0, 4.5))
        if rng.random() < 0.3:
            stop_line = rng.uniform(5.0, 10.0)
    return _Scene(layout=layout, category=category, cam=cam, road=road, lines=lines,
                  road_left=road_left, road_right=road_right, asphalt=asphalt, verge=verge,
                  white=np.array(_WHITE) * rng.uniform(0.9, 1.02), yellow=np.array(_YELLOW) * rng.uniform(0.9, 1.02),
                  sky_top=sky_top, sky_bottom=sky_bottom,
                  vehicles=_sample_vehicles(rng, road, category, centres),
                  arrows=arrows, crossing=crossing, crosswalk=crosswalk, stop_line=stop_line)


# ----------------------------------------------------------------------------- drawing helpers

def _polygon(u: np.ndarray, v: np.ndarray, row0: float = 0.0) -> np.ndarray:
    """fillPoly vertices (1/8 pixel) of image points, rows counted from ``row0``."""
    pts = np.stack([u, v - row0], axis=1) * (1 << _SUBPIXEL)
    return np.round(np.clip(pts, -2e5, 2e5)).astype(np.int32)


def _strip(road: _Road, cam: _Camera, lateral: tuple[float, float], s0: float, s1: float,
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

def _line_segments(line: _Line, trace: _Trace, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Painted arc-length intervals of a line: dashes, or one solid run, thinned by wear."""
    lo, hi = trace.s_lo, trace.s_hi
    if line.style == "dashed":
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


def _paint_masks(scene: _Scene, traces: list[tuple[_Line, _Trace]], rng: np.random.Generator,
                 row0: int) -> tuple[np.ndarray, np.ndarray]:
    """White and yellow paint opacity (uint8, ground rows) of lines, arrows and crossings."""
    road, cam, layout = scene.road, scene.cam, scene.layout
    shape = (layout.height - row0, layout.width)
    white, yellow = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    for line, trace in traces:
        if line.style == "double":
            strips = [line.offset - line.width - 0.05, line.offset + 0.05]
        else:
            strips = [line.offset - line.width / 2]
        polys = [_strip(road, cam, (a, a + line.width), s0, s1, row0)
                 for s0, s1 in _line_segments(line, trace, rng) for a in strips]
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


def _skyline(img: np.ndarray, scene: _Scene, rng: np.random.Generator, row0: int) -> None:
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


def _base_image(scene: _Scene, rng: np.random.Generator, row0: int) -> np.ndarray:
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


def _ground_factor(scene: _Scene, rng: np.random.Generator, row0: int) -> np.ndarray:
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


def _quad(img: np.ndarray, cam: _Camera, corners: list[tuple[float, float, float]], color: np.ndarray) -> None:
    """Fill the image of a planar quadrilateral given by (x, y, z) corners."""
    x, y, z = (np.array(c, np.float64) for c in zip(*corners))
    u, v = cam.project(x, z, y)
    cv2.fillPoly(img, [_polygon(u, v)], np.clip(color, 0, 255).tolist(), cv2.LINE_8, _SUBPIXEL)


def _box(img: np.ndarray, cam: _Camera, xs: tuple[float, float], ys: tuple[float, float],
         zs: tuple[float, float], color: np.ndarray) -> None:
    """Fill an axis-aligned rectangle in a plane of constant z (zs equal) or constant x (xs equal)."""
    (x0, x1), (y0, y1), (z0, z1) = xs, ys, zs
    if z0 == z1:
        corners = [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)]
    else:
        corners = [(x0, y0, z0), (x0, y0, z1), (x0, y1, z1), (x0, y1, z0)]
    _quad(img, cam, corners, color)


def _draw_vehicle(img: np.ndarray, cam: _Camera, veh: _Vehicle) -> list[tuple[float, float, float]]:
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


def _haze(img: np.ndarray, scene: _Scene, rng: np.random.Generator) -> None:
    """Fade everything near the horizon towards the sky colour (aerial perspective)."""
    tau, strength = rng.uniform(8.0, 18.0), rng.uniform(0.3, 0.55)
    horizon = scene.cam.horizon
    lo, hi = max(0, int(horizon - 4 * tau)), min(img.shape[0], int(horizon + 6 * tau))
    weight = (strength * np.exp(-np.abs(np.arange(lo, hi) - horizon) / tau)).astype(np.float32)[:, None, None]
    img[lo:hi] += (scene.sky_bottom.astype(np.float32) - img[lo:hi]) * weight


def _night(img: np.ndarray, scene: _Scene, rng: np.random.Generator, lights: list, row0: int) -> None:
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


def _glare(img: np.ndarray, scene: _Scene, rng: np.random.Generator, row0: int) -> None:
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


def _render(scene: _Scene, traces: list[tuple[_Line, _Trace]], rng: np.random.Generator) -> np.ndarray:
    """The uint8 BGR image of a scene."""
    layout, cam = scene.layout, scene.cam
    row0 = int(np.floor(cam.horizon)) + 1
    img = _base_image(scene, rng, row0)
    ground = img[row0:]
    white, yellow = _paint_masks(scene, traces, rng, row0)
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
    sigma = rng.uniform(4.0, 7.0) if scene.category == "night" else rng.uniform(2.0, 4.5)
    img += rng.standard_normal(img.shape[:2], dtype=np.float32)[..., None] * np.float32(sigma)
    return np.clip(img, 0, 255).astype(np.uint8)


def _layout(fmt: str) -> Layout:
    if fmt not in LAYOUTS:
        raise ValueError(f"unknown synthetic format {fmt!r}: expected one of {sorted(LAYOUTS)}")
    return LAYOUTS[fmt]


def render(fmt: str, seed: int, split: str, index: int) -> tuple[np.ndarray, SceneLabel]:
    """Image (uint8 BGR) and label of one scene of a ``culane`` or ``tusimple`` set."""
    layout = _layout(fmt)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {SPLITS}")
    category = _category(seed, split, index)
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    scene = _sample_scene(rng, layout, category)
    traces = [(line, _trace(scene.road, scene.cam, layout, line.offset, scene.cam.horizon + line.top_margin))
              for line in scene.lines]
    traces = [(line, trace) for line, trace in traces if trace is not None]
    image = _render(scene, traces, rng)
    return image, SceneLabel(category, [trace.points for _, trace in traces], [line.slot for line, _ in traces])


# ----------------------------------------------------------------------------- files

def culane_name(split: str, index: int) -> str:
    """Image path (relative to the root) of a CULane-layout scene."""
    return f"driver_synth_{split}/clip_{index // 100:04d}.MP4/{index % 100 * 30:05d}.jpg"


def tusimple_name(split: str, index: int) -> tuple[str, str]:
    """(label file, image path relative to the root) of a TuSimple-layout scene."""
    if split == "test":
        return "test_label.json", f"clips/0530/{index}/20.jpg"
    label_file = TUSIMPLE_TRAIN_FILES[index % len(TUSIMPLE_TRAIN_FILES)]
    clip_dir = {"label_data_0313.json": "0313-1", "label_data_0531.json": "0531", "label_data_0601.json": "0601"}
    return label_file, f"clips/{clip_dir[label_file]}/{index}/20.jpg"


def _tusimple_lanes(label: SceneLabel) -> list[list[int]]:
    """Lanes as x per TuSimple h_sample, -2 where the lane is absent."""
    out = []
    for lane in label.lanes:
        by_row = {int(y): int(x) for x, y in lane}
        out.append([by_row.get(h, -2) for h in TUSIMPLE_H_SAMPLES])
    return out


def _write_scene(root: str, fmt: str, seed: int, task: tuple[str, int]) -> dict:
    """Render one scene, write its image and annotation; returns what the lists need."""
    split, index = task
    image, label = render(fmt, seed, split, index)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {split} scene {index}")
    record = {"split": split, "category": label.category, "lanes": len(label.lanes)}
    if fmt == "culane":
        name = culane_name(split, index)
        atomic_write_bytes(Path(root, name), jpeg.tobytes())
        text = "".join(" ".join(f"{x:.3f} {int(y)}" for x, y in lane) + "\n" for lane in label.lanes)
        atomic_write_bytes(Path(root, name[:-len(".jpg")] + ".lines.txt"), text.encode())
        record.update(name=name, flags=[int(slot in label.slots) for slot in range(4)])
    else:
        label_file, name = tusimple_name(split, index)
        atomic_write_bytes(Path(root, name), jpeg.tobytes())
        record.update(name=name, label_file=label_file, json=json.dumps(
            {"lanes": _tusimple_lanes(label), "h_samples": list(TUSIMPLE_H_SAMPLES), "raw_file": name}))
    return record


def _write_culane_lists(root: Path, records: list[dict]) -> None:
    train = [r for r in records if r["split"] == "train"]
    test = [r for r in records if r["split"] == "test"]

    def gt_line(r: dict) -> str:
        mask = "/laneseg_label_w16/" + r["name"][:-len(".jpg")] + ".png"
        return f"/{r['name']} {mask} " + " ".join(str(f) for f in r["flags"]) + "\n"

    lists = {
        "list/train_gt.txt": [gt_line(r) for r in train],
        "list/train.txt": [f"/{r['name']}\n" for r in train],
        "list/val_gt.txt": [gt_line(r) for r in test],
        "list/val.txt": [f"/{r['name']}\n" for r in test],
        "list/test.txt": [f"/{r['name']}\n" for r in test],
    }
    for i, category in enumerate(CATEGORIES):
        lists[f"list/test_split/test{i}_{category}.txt"] = [f"/{r['name']}\n" for r in test if r["category"] == category]
    for rel, lines in lists.items():
        atomic_write_bytes(root / rel, "".join(lines).encode())


def _write_tusimple_labels(root: Path, records: list[dict]) -> None:
    files = dict.fromkeys([*TUSIMPLE_TRAIN_FILES, "test_label.json"], "")
    for r in records:
        files[r["label_file"]] += r["json"] + "\n"
    for name, text in files.items():
        atomic_write_bytes(root / name, text.encode())


def _parameters(fmt: str, n_train: int, n_test: int, seed: int) -> dict:
    return {"format": fmt, "train": n_train, "test": n_test, "seed": seed, "version": GENERATOR_VERSION}


def is_complete(out_dir: str | os.PathLike, fmt: str, n_train: int, n_test: int, seed: int) -> bool:
    """True when ``out_dir`` holds a finished set generated with exactly these parameters (and this
    generator version); a trainer regenerates otherwise."""
    marker = Path(out_dir, MARKER)
    try:
        return json.loads(marker.read_text()) == _parameters(fmt, n_train, n_test, seed)
    except (OSError, ValueError):
        return False


def generate(out_dir: str | os.PathLike, fmt: str = "culane", n_train: int = 1000, n_test: int = 300,
             seed: int = 0, progress: bool = True, workers: int = 1) -> dict:
    """Write a synthetic set in the ``culane`` or ``tusimple`` layout under ``out_dir``.

    Same arguments, same bytes. The ``.complete`` marker (the parameters as JSON) is removed first
    and written last, so an interrupted run is detected by ``is_complete``. CULane lists: train
    scenes in ``train_gt.txt``/``train.txt``; test scenes in ``test.txt``, the nine
    ``test_split`` lists and, as the validation split, ``val.txt``/``val_gt.txt``. TuSimple: train
    scenes spread over the three ``label_data_*.json`` files (5:1:1), test scenes in
    ``test_label.json``.

    Returns a summary: root, format, seed, image counts and per-split category counts.
    """
    _layout(fmt)
    for key, value, low in (("n_train", n_train, 0), ("n_test", n_test, 0), ("seed", seed, 0), ("workers", workers, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
    if n_train + n_test == 0:
        raise ValueError("nothing to generate: n_train and n_test are both 0")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).unlink(missing_ok=True)
    tasks = [(split, i) for split, n in (("train", n_train), ("test", n_test)) for i in range(n)]
    job = partial(_write_scene, str(root), fmt, int(seed))
    records = []
    with tqdm(total=len(tasks), desc=f"synthetic {fmt}", unit="img", disable=not progress) as bar:
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for record in pool.imap(job, tasks, chunksize=4):
                    records.append(record)
                    bar.update()
        else:
            for task in tasks:
                records.append(job(task))
                bar.update()
    if fmt == "culane":
        _write_culane_lists(root, records)
    else:
        _write_tusimple_labels(root, records)
    parameters = _parameters(fmt, int(n_train), int(n_test), int(seed))
    atomic_write_bytes(root / MARKER, json.dumps(parameters).encode())
    return {
        "root": str(root), "format": fmt, "seed": int(seed), "train": int(n_train), "test": int(n_test),
        "lanes": sum(r["lanes"] for r in records),
        "categories": {split: dict(Counter(r["category"] for r in records if r["split"] == split)) for split in SPLITS},
    }
