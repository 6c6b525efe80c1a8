"""What a synthetic road scene is: its image layout, camera, road, lane lines, vehicles and
category, all drawn from one random generator, and the annotation its lane lines give.

A scene is a flat road seen by a pinhole camera. The lane lines are parallel offsets of a centre
curve whose heading changes linearly (or quadratically) with arc length, projected through the
camera, so they meet near a vanishing point on the horizon and are thick near, thin far. The
annotation of a line is its projected centre line, sampled every ``Layout.row_step`` rows from
the bottom up and clipped to the image; the paint is drawn over exactly the annotated stretch.
Each lane's OpenLane category is that of the paint drawn (``lane_kinds.category_of_paint``): it
costs no random draw, so the culane, tusimple and curvelanes sets are the same as before it.
The openlane layout draws every kind of line (``_OPENLANE_KINDS``) and annotates the visible
stretch of each road edge as a curb (20 left, 21 right), traced like a line.

Every scene has its own random generator seeded with (seed, split, index); its test category
comes from a shuffled block of 20 (``CATEGORY_BLOCK``) and, for a format with several image
sizes, its layout from a shuffled block holding each size once. A set is therefore the same for
a seed in any order, and each block of 20 test scenes holds every category.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from srlane.lane_kinds import LEFT_CURB, RIGHT_CURB, category_of_paint

SPLITS = ("train", "test")
CATEGORY_BLOCK = (("normal",) * 8 + ("crowd", "shadow", "noline", "night") * 2
                  + ("hlight", "arrow", "curve", "cross"))

_STEP = 0.25  # arc-length step of the road centre curve (m)
_ROAD_LENGTH = 400.0  # metres of road modelled ahead of the camera
_MAX_HEADING = 1.25  # rad: the road is drawn while it runs less than ~72 degrees across the view
_MIN_POINTS = 6  # a line visible over fewer annotation rows is neither drawn nor annotated


@dataclass(frozen=True)
class Layout:
    """One kind of image: its size, the ranges its camera and road are drawn from, and its
    annotation grid (rows from ``bottom_row`` up in steps of ``row_step``, not above ``top_row``)."""

    name: str
    width: int
    height: int
    horizon: tuple[float, float]  # range of the horizon row
    focal: tuple[float, float]  # range of the focal length as a fraction of the width
    bottom_row: int
    top_row: int
    max_side: int  # lines on each side of the camera
    max_lines: int
    row_step: float = 10.0
    x_digits: int = 3  # decimals of x as written
    flag_slots: bool = True  # CULane's existence-flag slots (0, 1 left, 2, 3 right), else left to right
    side_decay: float = 0.45  # P(k lines on one side) is proportional to side_decay ** (k - 1)
    bend: float = 0.0025  # curvature (1/m) of an ordinary scene: uniform in [-bend, bend]
    curve: tuple[float, float] = (0.006, 0.013)  # range of |curvature| of a "curve" scene
    curvature_rate: float = 2e-5  # range of the curvature's change per metre: [-rate, rate]
    top_margin: tuple[float, float] = (8.0, 22.0)  # lines fade this many rows below the horizon
    render_scale: float = 1.0  # drawn at this fraction of the size, then resized
    openlane_kinds: bool = False  # every OpenLane kind of line (_OPENLANE_KINDS), road edges annotated as curbs


CULANE = Layout("culane", 1640, 590, (264.0, 290.0), (0.55, 0.65), 589, 0, 2, 4)
TUSIMPLE = Layout("tusimple", 1280, 720, (245.0, 280.0), (0.62, 0.75), 710, 160, 3, 5, x_digits=0,
                  flag_slots=False)
# CurveLanes' three common sizes. The horizon lies near the top of the rows that CondLaneNet-style
# crops keep (the bottom 800 of 1440, 480 of 660, 352 of 720), so the road fills the kept part.
# Curves are sharper and roads wider (2 to 8 lines); the largest size is drawn at half size.
_CURVELANES = dict(top_row=0, max_side=4, max_lines=8, flag_slots=False, side_decay=0.7, bend=0.012,
                   curve=(0.018, 0.032), curvature_rate=1e-4)
CURVELANES = (
    Layout("curvelanes_2560x1440", 2560, 1440, (600.0, 660.0), (0.5, 0.6), 1439, row_step=20.0,
           top_margin=(16.0, 44.0), render_scale=0.5, **_CURVELANES),
    Layout("curvelanes_1570x660", 1570, 660, (160.0, 195.0), (0.5, 0.6), 659, **_CURVELANES),
    Layout("curvelanes_1280x720", 1280, 720, (345.0, 380.0), (0.55, 0.65), 719, **_CURVELANES),
)
# OpenLane's Waymo front camera: 1920 x 1280, a longer lens, annotated up to the horizon; drawn at
# half size. Slots as CULane's (0, 1 left, 2, 3 right: OpenLane's ``attribute`` 1 to 4).
OPENLANE = Layout("openlane", 1920, 1280, (560.0, 660.0), (0.8, 1.0), 1279, 0, 3, 6, row_step=20.0,
                  side_decay=0.6, top_margin=(16.0, 44.0), render_scale=0.5, openlane_kinds=True)
LAYOUTS: dict[str, tuple[Layout, ...]] = {"culane": (CULANE,), "tusimple": (TUSIMPLE,), "curvelanes": CURVELANES,
                                          "openlane": (OPENLANE,)}
# (yellow, style) of an openlane-format line and its weight, by where the line is: the leftmost
# (a centre line: mostly yellow), the rightmost of several, or one between
_OPENLANE_KINDS: dict[str, dict[tuple[bool, str], float]] = {
    "left": {(True, "solid"): 0.2, (True, "dashed"): 0.12, (True, "double"): 0.22, (True, "double-dashed"): 0.1,
             (True, "left-dashed"): 0.08, (True, "left-solid"): 0.08, (False, "solid"): 0.12, (False, "double"): 0.08},
    "right": {(False, "solid"): 0.6, (False, "dashed"): 0.25, (False, "double"): 0.15},
    "inner": {(False, "dashed"): 0.42, (False, "solid"): 0.14, (False, "double"): 0.1, (False, "double-dashed"): 0.1,
              (False, "left-dashed"): 0.08, (False, "left-solid"): 0.08, (True, "dashed"): 0.08},
}


@dataclass
class SceneLabel:
    """What an image is annotated with: its category and lanes exactly as written.

    ``lanes`` are ``(N, 2)`` float arrays of (x, y), bottom point first, y every ``row_step``
    rows, left to right; ``slots`` the CULane existence-flag index of each lane (0, 1 left of the
    camera, 2, 3 right; -1 for a curb) or its left-to-right index for the other formats;
    ``categories`` the OpenLane kind of each lane (``srlane.lane_kinds``): its paint, or a curb.
    """

    category: str
    lanes: list[np.ndarray] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)
    categories: list[int] = field(default_factory=list)


# ----------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class Camera:
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


class Road:
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
class Line:
    """One painted lane line: lateral offset from the road centre and its paint."""

    offset: float
    slot: int
    yellow: bool
    width: float
    style: str  # "solid", "dashed", "double" (two solid lines); openlane: "double-dashed", "left-dashed", "left-solid"
    dash: float
    gap: float
    phase: float
    paint: float  # opacity of the paint
    keep: float  # fraction of dashes left by wear (1: all)
    top_margin: float  # the line fades this many rows below the horizon


@dataclass
class Trace:
    """The visible stretch of a line: its annotation and the arc lengths to paint."""

    points: np.ndarray  # (N, 2) as written, bottom first
    s_lo: float
    s_hi: float


def _row_grid(layout: Layout, v_top: float) -> np.ndarray:
    """Annotation rows from the bottom row upwards, not above ``v_top`` nor ``layout.top_row``."""
    top = max(v_top, layout.top_row)
    count = int(np.floor((layout.bottom_row - top) / layout.row_step)) + 1
    return layout.bottom_row - layout.row_step * np.arange(max(count, 0))


def _longest_run(inside: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the longest run of True values (0, 0 when none)."""
    padded = np.concatenate([[False], inside, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    if len(edges) == 0:
        return 0, 0
    starts, stops = edges[0::2], edges[1::2]
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best])


def trace_line(road: Road, cam: Camera, layout: Layout, offset: float, v_top: float) -> Trace | None:
    """Annotation of the line at ``offset`` (None when visible over fewer than _MIN_POINTS rows)."""
    x, z = road.offset(offset)
    first = int(np.searchsorted(z[:road.end], cam.near))  # z grows along the drawn road (heading < 72 deg)
    if road.end - first < 4:
        return None
    u, v = cam.project(x[first:road.end], z[first:road.end])
    s = road.s[first:road.end]
    rows = _row_grid(layout, max(v_top, v[-1]))
    xs = np.round(np.interp(rows, v[::-1], u[::-1]), layout.x_digits)
    start, stop = _longest_run((xs >= 0) & (xs <= layout.width - 1))
    if stop - start < _MIN_POINTS:
        return None
    points = np.stack([xs[start:stop], rows[start:stop]], axis=1)
    # paint from just below the lowest point (or from below the image) to just above the highest;
    # where the run ends at an image side, paint on to the next row, which lies outside the image
    at_bottom = start == 0
    below = rows[start] + layout.row_step
    at_top = stop == len(rows)
    above = rows[stop - 1] - (2.0 if at_top else layout.row_step)
    s_lo = float(s[0]) if at_bottom else float(np.interp(below, v[::-1], s[::-1]))
    s_hi = float(np.interp(above, v[::-1], s[::-1]))
    return Trace(points, s_lo, s_hi)


# ----------------------------------------------------------------------------- scene sampling

@dataclass
class Vehicle:
    """A car or truck standing on the road (x, z: the middle of its rear, in metres)."""

    x: float
    z: float
    width: float
    height: float
    length: float
    color: np.ndarray
    kind: str  # "car" or "truck"


@dataclass
class Scene:
    """All random choices of one scene, and the visible stretch of each of its lines."""

    layout: Layout
    category: str
    cam: Camera
    road: Road
    lines: list[Line]
    road_left: float  # lateral road edges (m from the centre)
    road_right: float
    asphalt: np.ndarray
    verge: np.ndarray
    white: np.ndarray
    yellow: np.ndarray
    sky_top: np.ndarray
    sky_bottom: np.ndarray
    vehicles: list[Vehicle]
    arrows: list[tuple[str, float, float]]  # (kind, lane centre offset, arc length)
    crossing: tuple[float, float] | None  # (arc length, depth) of a transverse road
    crosswalk: tuple[float, float] | None  # (arc length, depth) of zebra bars
    stop_line: float | None
    traces: list[tuple[Line, Trace]] = field(default_factory=list)  # lines seen over >= _MIN_POINTS rows
    curbs: list[tuple[int, Trace]] = field(default_factory=list)  # openlane: (category, visible road edge)

    def label(self) -> SceneLabel:
        """The scene's annotation, left to right: the left curb, the lines, the right curb."""
        lanes = [(trace.points, line.slot, category_of_paint(line.yellow, line.style)) for line, trace in self.traces]
        left, right = ([(trace.points, -1, c) for c, trace in self.curbs if c == side]
                       for side in (LEFT_CURB, RIGHT_CURB))
        ordered = left + lanes + right
        return SceneLabel(self.category, [points for points, _, _ in ordered], [slot for _, slot, _ in ordered],
                          [category for _, _, category in ordered])


_WHITE = (232.0, 235.0, 235.0)
_YELLOW = (60.0, 190.0, 225.0)  # BGR
_CAR_COLORS = np.array([[235, 235, 235], [180, 180, 185], [40, 40, 45], [40, 40, 170], [150, 90, 40],
                        [90, 90, 95], [60, 120, 60], [200, 200, 210]], np.float32)


def layouts(fmt: str) -> tuple[Layout, ...]:
    """The layouts (image sizes) of a format; ValueError naming the known ones."""
    if fmt not in LAYOUTS:
        raise ValueError(f"unknown synthetic format {fmt!r}: expected one of {sorted(LAYOUTS)}")
    return LAYOUTS[fmt]


def _split_index(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {SPLITS}")
    return SPLITS.index(split)


def category_of(seed: int, split: str, index: int) -> str:
    """Category of one scene: a slot of a per-block shuffled CATEGORY_BLOCK."""
    block, slot = divmod(index, len(CATEGORY_BLOCK))
    order = np.random.default_rng([seed, _split_index(split), block, len(CATEGORY_BLOCK)]).permutation(
        len(CATEGORY_BLOCK))
    return CATEGORY_BLOCK[int(order[slot])]


def layout_of(fmt: str, seed: int, split: str, index: int) -> Layout:
    """Layout of one scene: the format's only one, or a slot of a per-block shuffled list of them
    (every block of ``len(layouts)`` consecutive scenes holds each size once)."""
    options = layouts(fmt)
    if len(options) == 1:
        return options[0]
    block, slot = divmod(index, len(options))
    order = np.random.default_rng([seed, _split_index(split), block, len(CATEGORY_BLOCK), len(options)]).permutation(
        len(options))
    return options[int(order[slot])]


def _openlane_kind(rng: np.random.Generator, where: str) -> tuple[bool, str]:
    """(yellow, style) of an openlane-format line drawn from ``_OPENLANE_KINDS[where]``."""
    kinds = _OPENLANE_KINDS[where]
    weights = np.array(list(kinds.values()))
    return list(kinds)[int(rng.choice(len(kinds), p=weights / weights.sum()))]


def _sample_lines(rng: np.random.Generator, layout: Layout, category: str, lane_width: float) -> list[Line]:
    """Lane lines left to right with their slots; empty for ``cross``."""
    side_counts = np.arange(1, layout.max_side + 1)
    while True:
        weights = layout.side_decay ** (side_counts - 1) if category != "crowd" else np.ones(layout.max_side)
        n_left, n_right = (int(rng.choice(side_counts, p=weights / weights.sum())) for _ in range(2))
        if n_left + n_right <= layout.max_lines:
            break
    widths = lane_width * rng.uniform(0.94, 1.06, size=max(n_left, n_right))
    left = [-widths[0] / 2 - widths[1:k + 1].sum() for k in range(n_left)]
    right = [widths[0] / 2 + widths[1:k + 1].sum() for k in range(n_right)]
    offsets = left[::-1] + right
    if layout.flag_slots:
        slots = [1 - k for k in range(n_left)][::-1] + [2 + k for k in range(n_right)]
    else:
        slots = list(range(n_left + n_right))
    worn = category == "noline"
    lines = []
    for i, offset in enumerate(offsets):
        outer = i == 0 or i == len(offsets) - 1
        if layout.openlane_kinds:
            yellow, style = _openlane_kind(rng, "left" if i == 0 else "right" if outer else "inner")
        else:
            style = "solid" if rng.random() < (0.55 if outer else 0.15) else "dashed"
            yellow = bool(rng.random() < (0.25 if i == 0 else 0.0 if outer else 0.08))
            if yellow and i == 0 and rng.random() < 0.4:
                style = "double"
        dash = rng.uniform(2.5, 6.0)
        lines.append(Line(
            offset=float(offset), slot=slots[i], yellow=yellow,
            width=rng.uniform(0.12, 0.2), style=style, dash=dash, gap=dash * rng.uniform(1.0, 2.0),
            phase=rng.uniform(0.0, 15.0),
            paint=rng.uniform(0.55, 0.8) if worn else rng.uniform(0.85, 1.0),
            keep=rng.uniform(0.45, 0.8) if worn else 1.0,
            top_margin=rng.uniform(*layout.top_margin),
        ))
    return [] if category == "cross" else lines


def _sample_vehicles(rng: np.random.Generator, road: Road, category: str, centres: list[float]) -> list[Vehicle]:
    """Vehicles standing in lane centres, the number and distances set by the category."""
    if category == "crowd":
        count, near = int(rng.integers(3, 7)), 2
    elif category == "normal":
        count, near = int(rng.random() < 0.4), 0
    elif category == "cross":
        count, near = int(rng.integers(0, 4)), 0
    else:
        count, near = int(rng.integers(0, 3)), 0
    vehicles: list[Vehicle] = []
    taken: list[tuple[float, float, float]] = []
    for _ in range(count * 4):
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
        vehicles.append(Vehicle(
            x=float(x[0]), z=float(z[0]),
            width=rng.uniform(2.3, 2.5) if kind == "truck" else rng.uniform(1.7, 1.95),
            height=rng.uniform(3.0, 3.6) if kind == "truck" else rng.uniform(1.4, 1.8),
            length=length, color=_CAR_COLORS[rng.integers(len(_CAR_COLORS))] * rng.uniform(0.85, 1.05), kind=kind))
    return sorted(vehicles, key=lambda veh: -veh.z)


def _sky(rng: np.random.Generator, category: str) -> tuple[np.ndarray, np.ndarray]:
    """Sky colours at the top of the image and at the horizon (BGR)."""
    if category == "night":
        sky_top, sky_bottom = np.array([45.0, 30, 25]), np.array([70.0, 60, 55])
    elif category == "hlight":
        sky_top, sky_bottom = np.array([225.0, 220, 215]), np.array([235.0, 245, 250])
    elif rng.random() < 0.5:
        sky_top, sky_bottom = np.array([215.0, 170, 120]), np.array([240.0, 225, 210])
    else:
        sky_top, sky_bottom = np.array([190.0, 190, 190]), np.array([225.0, 225, 225])
    return sky_top * rng.uniform(0.9, 1.05), sky_bottom


def sample_scene(rng: np.random.Generator, layout: Layout, category: str) -> Scene:
    """All random choices of one scene drawn from ``rng``, and its visible lines."""
    lane_width = rng.uniform(3.0, 3.9)
    f, horizon, height = layout.width * rng.uniform(*layout.focal), rng.uniform(*layout.horizon), rng.uniform(1.25, 1.75)
    cam = Camera(f=f, cx=layout.width / 2 + rng.uniform(-20, 20), horizon=horizon, height=height,
                 x=lane_width * rng.uniform(-0.3, 0.3), near=f * height / (layout.height + 50 - horizon))
    if category == "curve":
        curvature = rng.choice([-1.0, 1.0]) * rng.uniform(*layout.curve)
    else:
        curvature = rng.uniform(-layout.bend, layout.bend)
    road = Road(heading=np.deg2rad(rng.uniform(-2.5, 2.5)), curvature=curvature,
                curvature_rate=rng.uniform(-layout.curvature_rate, layout.curvature_rate))
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
    sky_top, sky_bottom = _sky(rng, category)

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
    scene = Scene(layout=layout, category=category, cam=cam, road=road, lines=lines,
                  road_left=road_left, road_right=road_right, asphalt=asphalt, verge=verge,
                  white=np.array(_WHITE) * rng.uniform(0.9, 1.02), yellow=np.array(_YELLOW) * rng.uniform(0.9, 1.02),
                  sky_top=sky_top, sky_bottom=sky_bottom,
                  vehicles=_sample_vehicles(rng, road, category, centres),
                  arrows=arrows, crossing=crossing, crosswalk=crosswalk, stop_line=stop_line)
    for line in lines:
        trace = trace_line(road, cam, layout, line.offset, cam.horizon + line.top_margin)
        if trace is not None:
            scene.traces.append((line, trace))
    if layout.openlane_kinds:
        scene.curbs = _trace_curbs(rng, scene)
    return scene


def _trace_curbs(rng: np.random.Generator, scene: Scene) -> list[tuple[int, Trace]]:
    """The visible stretch of each road edge as a curb (below a crossing road, which breaks it)."""
    curbs = []
    for category, edge in ((LEFT_CURB, scene.road_left), (RIGHT_CURB, scene.road_right)):
        v_top = scene.cam.horizon + rng.uniform(*scene.layout.top_margin)
        if scene.crossing is not None:
            v_top = max(v_top, float(scene.cam.project(*scene.road.offset(edge, np.array([scene.crossing[0]])))[1][0]))
        trace = trace_line(scene.road, scene.cam, scene.layout, edge, v_top)
        if trace is not None:
            curbs.append((category, trace))
    return curbs


def sample(fmt: str, seed: int, split: str, index: int) -> tuple[Scene, np.random.Generator]:
    """Scene ``index`` of a ``split`` of a set of format ``fmt``, and its generator (which goes
    on to drive the drawing)."""
    layout = layout_of(fmt, seed, split, index)
    category = category_of(seed, split, index)
    rng = np.random.default_rng([seed, _split_index(split), index])
    return sample_scene(rng, layout, category), rng
