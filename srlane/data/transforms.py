"""Joint image + lane augmentation with OpenCV and numpy (spec section 2).

Coordinates are continuous image coordinates, as the release's imgaug uses them: pixel column
``i`` covers ``[i, i + 1)``, so resizing scales points by ``new / old`` and a horizontal flip
maps ``x -> w - x``; both are exact for cv2's resize and flip. Affine matrices are built in
these coordinates and shifted by half a pixel for ``cv2.warpAffine`` (which addresses pixel
centres), so image and lane points move together.

All randomness comes from the ``numpy.random.Generator`` passed in: the same generator state
gives the same image and lanes.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from srlane.lane_kinds import UNKNOWN, mirrored_category

Lanes = list[np.ndarray]


def resize_lanes(lanes: Sequence[np.ndarray], sx: float, sy: float) -> Lanes:
    """Scale (x, y) points by (sx, sy)."""
    scale = np.array([sx, sy], dtype=np.float64)
    return [np.asarray(lane, dtype=np.float64) * scale for lane in lanes]


def flip_lanes(lanes: Sequence[np.ndarray], width: int) -> Lanes:
    """Mirror points for ``cv2.flip(img, 1)``: ``x -> width - x``."""
    out = []
    for lane in lanes:
        lane = np.array(lane, dtype=np.float64)
        lane[:, 0] = width - lane[:, 0]
        out.append(lane)
    return out


def affine_matrix(width: int, height: int, translate: tuple[float, float], rotate: float,
                  scale: float, shear: float) -> np.ndarray:
    """2x3 matrix about the image centre: scale, shear x (degrees), rotate (degrees), then
    translate (pixels), in continuous coordinates."""
    cx, cy = width / 2.0, height / 2.0
    r, s = math.radians(rotate), math.tan(math.radians(shear))
    rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
    linear = rot @ np.array([[1.0, s], [0.0, 1.0]]) * scale
    offset = np.array([cx + translate[0], cy + translate[1]]) - linear @ np.array([cx, cy])
    return np.hstack([linear, offset[:, None]])


def warp_image(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a continuous-coordinate affine matrix with cv2 (bilinear, black border)."""
    if img.ndim == 3 and img.shape[2] == 3:
        # OpenCV's vectorised path for 4 channels takes under half the 3-channel time, same pixels
        return cv2.cvtColor(warp_image(cv2.cvtColor(img, cv2.COLOR_RGB2RGBA), matrix), cv2.COLOR_RGBA2RGB)
    linear, offset = matrix[:, :2], matrix[:, 2]
    centre_offset = offset + linear @ np.array([0.5, 0.5]) - 0.5
    cv_matrix = np.hstack([linear, centre_offset[:, None]])
    h, w = img.shape[:2]
    return cv2.warpAffine(img, cv_matrix, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def warp_lanes(lanes: Sequence[np.ndarray], matrix: np.ndarray) -> Lanes:
    """Apply a 2x3 matrix to (x, y) points."""
    return [np.asarray(lane, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2] for lane in lanes]


def clip_lanes(lanes: Sequence[np.ndarray], width: float, height: float) -> Lanes:
    """Cut polylines to the box ``[0, width] x [0, height]``.

    A line is cut where it crosses the border; a lane that leaves and re-enters becomes
    several lanes. Pieces with fewer than 2 points are dropped.
    """
    return [piece for _, piece in clip_lane_pieces(lanes, width, height)]


def clip_lane_pieces(lanes: Sequence[np.ndarray], width: float,
                     height: float) -> list[tuple[int, np.ndarray]]:
    """``clip_lanes`` with the index in ``lanes`` of the lane each piece comes from."""
    out = []
    for index, lane in enumerate(lanes):
        pts = np.asarray(lane, dtype=np.float64)
        if len(pts) < 2:
            continue
        inside = (pts[:, 0] >= 0) & (pts[:, 0] <= width) & (pts[:, 1] >= 0) & (pts[:, 1] <= height)
        pieces = [pts] if inside.all() else _clip_polyline(pts, width, height)
        out.extend((index, piece) for piece in pieces)
    return out


def _clip_polyline(pts: np.ndarray, width: float, height: float) -> Lanes:
    a, d = pts[:-1], pts[1:] - pts[:-1]
    t0, t1 = np.zeros(len(a)), np.ones(len(a))
    rejected = np.zeros(len(a), dtype=bool)
    # Liang-Barsky: p * t <= q for the four borders, all segments at once.
    for p, q in ((-d[:, 0], a[:, 0]), (d[:, 0], width - a[:, 0]),
                 (-d[:, 1], a[:, 1]), (d[:, 1], height - a[:, 1])):
        parallel = p == 0
        rejected |= parallel & (q < 0)
        ratio = np.where(parallel, 0.0, q / np.where(parallel, 1.0, p))
        t0 = np.where(~parallel & (p < 0), np.maximum(t0, ratio), t0)
        t1 = np.where(~parallel & (p > 0), np.minimum(t1, ratio), t1)
    keep = ~rejected & (t0 <= t1)
    starts, ends = a + t0[:, None] * d, a + t1[:, None] * d
    pieces: Lanes = []
    current: list[np.ndarray] = []
    previous = -2
    for i in np.flatnonzero(keep):
        if not (current and i == previous + 1 and t0[i] == 0.0):
            pieces.append(np.array(current))
            current = [starts[i]]
        current.append(ends[i])
        previous = i
        if t1[i] < 1.0:
            pieces.append(np.array(current))
            current = []
    pieces.append(np.array(current))
    return [piece for piece in pieces if len(piece) >= 2 and np.ptp(piece, axis=0).any()]


def brightness_lut(mul: float, add: int, add_first: bool) -> np.ndarray:
    """uint8 table: luma multiplied by ``mul`` and shifted by ``add`` (in the given order)."""
    v = np.arange(256, dtype=np.float64)
    if add_first:
        v = np.round(np.clip(v + add, 0, 255) * mul)
    else:
        v = np.clip(np.round(v * mul), 0, 255) + add
    return np.clip(v, 0, 255).astype(np.uint8)


def adjust_brightness(img: np.ndarray, mul: float, add: int, add_first: bool) -> np.ndarray:
    """Multiply and add on the Y channel of YCrCb, as imgaug's MultiplyAndAddToBrightness."""
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)
    cv2.insertChannel(cv2.LUT(cv2.extractChannel(ycc, 0), brightness_lut(mul, add, add_first)), ycc, 0)
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def adjust_hue_saturation(img: np.ndarray, value: int) -> np.ndarray:
    """Add ``value`` (imgaug's -255..255 scale) to hue (cyclic, OpenCV's 0..179) and saturation."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    v = np.arange(256)
    hue = np.where(v < 180, (v + int(round(value * 180 / 255))) % 180, v)
    sat = np.clip(v + value, 0, 255)
    lut = np.stack([hue, sat, v], axis=1).astype(np.uint8)[None]
    return cv2.cvtColor(cv2.LUT(hsv, lut), cv2.COLOR_HSV2RGB)


def motion_blur(img: np.ndarray, k: int, angle: float, direction: float) -> np.ndarray:
    """Line kernel of size k at ``angle`` degrees; ``direction`` in [-1, 1] weights its ends."""
    kernel = np.zeros((k, k), dtype=np.float32)
    end = (direction + 1.0) / 2.0
    kernel[:, k // 2] = np.linspace(end, 1.0 - end, k)
    centre = ((k - 1) / 2.0, (k - 1) / 2.0)
    kernel = cv2.warpAffine(kernel, cv2.getRotationMatrix2D(centre, angle, 1.0), (k, k))
    total = kernel.sum()
    if total <= 0:
        return img
    return cv2.filter2D(img, -1, kernel / total, borderType=cv2.BORDER_REFLECT_101)


def jpeg_compress(img: np.ndarray, compression: float) -> np.ndarray:
    """Round-trip through JPEG; ``compression`` on imgaug's 0..100 scale
    (quality = round(1 + 99 * (1 - compression / 101)), so 85..95 is quality 17..7)."""
    quality = int(np.clip(np.round(1 + 99 * (1 - compression / 101)), 1, 100))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def coarse_dropout(img: np.ndarray, p: float, size: float, rng: np.random.Generator) -> np.ndarray:
    """Zero rectangular regions: a mask of ``size`` x the image size with drop rate ``p``,
    upscaled (nearest) to the image."""
    h, w = img.shape[:2]
    small = rng.random((max(1, round(h * size)), max(1, round(w * size)))) < p
    mask = cv2.resize(small.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    out = img.copy()
    out[mask] = 0
    return out


class LaneAugmenter:
    """The training augmentation of spec section 2, on an image already resized to the
    network input (RGB uint8) and its lanes in the same pixels.

    Args:
        flip, channel_shuffle: probabilities.
        brightness: ``dict(p, mul=(lo, hi), add=(lo, hi))`` or None.
        hue_saturation: ``dict(p, shift=(lo, hi))`` or None.
        blur: ``dict(p, motion=(k lo, k hi), median=(k lo, k hi), jpeg=(compression lo, hi),
            dropout=dict(p=(lo, hi), size=(lo, hi)))``; one of the entries that are not None.
        affine: ``dict(p, translate=fraction, rotate=degrees, scale=(lo, hi), shear=degrees)``.
    """

    def __init__(self, flip: float = 0.0, channel_shuffle: float = 0.0, brightness: dict | None = None,
                 hue_saturation: dict | None = None, blur: dict | None = None, affine: dict | None = None) -> None:
        self.flip, self.channel_shuffle = flip, channel_shuffle
        self.brightness, self.hue_saturation, self.affine = brightness, hue_saturation, affine
        self.blur = blur
        self.blur_kinds = [k for k in ("motion", "median", "jpeg", "dropout") if blur and blur.get(k) is not None]
        if blur and blur.get("p", 0) > 0 and not self.blur_kinds:
            raise ValueError("augmentation.blur has p > 0 but no motion/median/jpeg/dropout entry")

    def __call__(self, img: np.ndarray, lanes: Sequence[np.ndarray],
                 rng: np.random.Generator) -> tuple[np.ndarray, Lanes]:
        """Augmented image and lanes (clipped to the image; may split or drop lanes)."""
        img, lanes, _ = self.augment(img, lanes, [UNKNOWN] * len(lanes), rng)
        return img, lanes

    def augment(self, img: np.ndarray, lanes: Sequence[np.ndarray], categories: Sequence[int],
                rng: np.random.Generator) -> tuple[np.ndarray, Lanes, list[int]]:
        """``__call__`` with each lane's category (``categories``, parallel to ``lanes``)
        following it: a piece of a split lane keeps its lane's category, a dropped lane's goes
        and a horizontal flip mirrors them (``srlane.lane_kinds.mirrored_category``)."""
        if len(categories) != len(lanes):
            raise ValueError(f"{len(categories)} lane categories for {len(lanes)} lanes")
        h, w = img.shape[:2]
        lanes = [np.asarray(lane, dtype=np.float64) for lane in lanes]
        categories = [int(c) for c in categories]
        if rng.random() < self.flip:
            img = cv2.flip(img, 1)
            lanes = flip_lanes(lanes, w)
            categories = [mirrored_category(c) for c in categories]
        if rng.random() < self.channel_shuffle:
            img = np.ascontiguousarray(img[..., rng.permutation(3)])
        if self.brightness and rng.random() < self.brightness["p"]:
            mul = rng.uniform(*self.brightness["mul"])
            add = int(rng.integers(self.brightness["add"][0], self.brightness["add"][1] + 1))
            img = adjust_brightness(img, mul, add, add_first=bool(rng.random() < 0.5))
        if self.hue_saturation and rng.random() < self.hue_saturation["p"]:
            lo, hi = self.hue_saturation["shift"]
            img = adjust_hue_saturation(img, int(rng.integers(lo, hi + 1)))
        if self.blur_kinds and rng.random() < self.blur["p"]:
            img = self._blur(img, self.blur_kinds[int(rng.integers(len(self.blur_kinds)))], rng)
        if self.affine and rng.random() < self.affine["p"]:
            matrix = self._affine_matrix(w, h, rng)
            img = warp_image(img, matrix)
            lanes = warp_lanes(lanes, matrix)
        pieces = clip_lane_pieces(lanes, w, h)
        return img, [piece for _, piece in pieces], [categories[index] for index, _ in pieces]

    def _blur(self, img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
        cfg = self.blur[kind]
        if kind == "motion":
            k = int(rng.integers(cfg[0], cfg[1] + 1))
            return motion_blur(img, k, rng.uniform(0.0, 360.0), rng.uniform(-1.0, 1.0))
        if kind == "median":
            odd = [k for k in range(cfg[0], cfg[1] + 1) if k % 2]
            return cv2.medianBlur(img, odd[int(rng.integers(len(odd)))])
        if kind == "jpeg":
            return jpeg_compress(img, rng.uniform(*cfg))
        return coarse_dropout(img, rng.uniform(*cfg["p"]), rng.uniform(*cfg["size"]), rng)

    def _affine_matrix(self, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
        a = self.affine
        t = a["translate"]
        return affine_matrix(w, h, translate=(rng.uniform(-t, t) * w, rng.uniform(-t, t) * h),
                             rotate=rng.uniform(-a["rotate"], a["rotate"]),
                             scale=rng.uniform(*a["scale"]), shear=rng.uniform(-a["shear"], a["shear"]))


def build_augmenter(aug_cfg) -> LaneAugmenter:
    """LaneAugmenter from a config's ``augmentation`` dict (see configs/datasets/culane.py)."""
    return LaneAugmenter(flip=aug_cfg.get("flip", 0.0), channel_shuffle=aug_cfg.get("channel_shuffle", 0.0),
                         brightness=aug_cfg.get("brightness"), hue_saturation=aug_cfg.get("hue_saturation"),
                         blur=aug_cfg.get("blur"), affine=aug_cfg.get("affine"))
