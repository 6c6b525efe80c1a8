"""The checks every benchmark's reader applies to the lanes of a label, and what happens to an
image whose label fails them (``dataset.on_bad_label``). The rules are in docs/labels.md.

A reader turns a label it cannot use into a record with ``bad_label`` set (the file, the line and
the message) and no lanes; records are cached that way, so a cached split reports the same
images. ``Benchmark.read_split`` then stops at the first (``"error"``) or leaves them out of a
training split, each reported in one line (``"skip"``).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from srlane.data.records import DataFormatError, LaneRecord

# a point may lie up to this fraction of the image's width (height) left or right of (above or below) it
LABEL_MARGIN = 1.0
ON_BAD_LABEL = ("error", "skip")  # dataset.on_bad_label: stop at a bad label, or leave that training image out


def _point(x: float, y: float) -> str:
    return f"({x:g}, {y:g})"


def short_repr(value: object) -> str:
    """``repr`` of a value, on one line and at most about 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def number_problem(value: object, strings: bool = False) -> str | None:
    """Why ``value`` (a parsed json value; with ``strings``, also a number written as a string)
    is not a finite number, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str) if strings else (int, float)):
        return f"{short_repr(value)} is not a number"
    try:
        number = float(value)
    except ValueError:
        return f"{short_repr(value)} is not a number"
    return None if math.isfinite(number) else f"{short_repr(value)} is not a finite number"


def check_lane(points: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """A lane of ``(x, y)`` pixel points as records keep it, or ValueError (one line: the value
    and what was expected).

    Every coordinate must be finite and, with ``size`` (the image's ``(height, width)``), at most
    ``LABEL_MARGIN`` times the width (height) outside the image. Two points in one row are an
    error unless they are the same point, which is kept once (the first); a lane of two or more
    points must have two distinct ones. Returns the lane as float32, in the given order.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    bad = ~np.isfinite(pts)
    if bad.any():
        i, j = np.argwhere(bad)[0]  # the first non-finite coordinate
        raise ValueError(f"{'xy'[j]} {float(pts[i, j])!r} is not a finite number; expected pixels")
    if size is not None:
        height, width = size
        low, high = -LABEL_MARGIN * np.array([width, height]), (1 + LABEL_MARGIN) * np.array([width, height])
        outside = ((pts < low) | (pts > high)).any(axis=1)
        if outside.any():
            i = int(np.argmax(outside))
            raise ValueError(f"point {_point(*pts[i])} is outside the {width}x{height} image by more than the "
                             f"margin; expected x in [{low[0]:g}, {high[0]:g}], y in [{low[1]:g}, {high[1]:g}]")
    order = np.argsort(pts[:, 1], kind="stable")
    same_row = np.flatnonzero(pts[order[1:], 1] == pts[order[:-1], 1])
    repeated = np.zeros(len(pts), bool)
    for k in same_row:
        first, later = pts[order[k]], pts[order[k + 1]]
        if first[0] != later[0]:
            raise ValueError(f"points {_point(*first)} and {_point(*later)} lie in one row; expected one point per row")
        repeated[order[k + 1]] = True
    if len(pts) >= 2 and repeated.sum() == len(pts) - 1:
        raise ValueError(f"{len(pts)} points, all at {_point(*pts[0])}; expected at least two distinct points")
    return pts[~repeated].astype(np.float32)


def clean_lane(points: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray | None:
    """``check_lane`` of the points without a negative coordinate (CULane's and TuSimple's mark
    of a point that is not there); None when fewer than 2 such points remain."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[~(pts < 0).any(axis=1)]  # a non-finite coordinate stays for check_lane to name
    return check_lane(pts, size) if len(pts) >= 2 else None


def records_pass(records: Sequence[LaneRecord], image_size: tuple[int, int] | None = None) -> bool:
    """Whether every lane of every usable record is as ``check_lane`` keeps it (each record's
    own size, else ``image_size``): what a cache built before these checks may not be.

    ``check_lane``'s rules on all lanes at once (a cache holds many): finite coordinates within
    the margin, no two points of a lane in one row (so a lane of two or more points has two
    distinct ones)."""
    usable = [r for r in records if r.bad_label is None and r.lanes]
    lanes = [lane for r in usable for lane in r.lanes]
    if not lanes:
        return True
    points = np.concatenate(lanes).reshape(-1, 2)
    if not np.isfinite(points).all():
        return False
    counts = np.array([len(lane) for lane in lanes])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[counts > 0]
    sizes = [r.img_size or image_size for r in usable]
    if all(size is not None for size in sizes):
        wh = np.repeat(np.array([[w, h] for h, w in sizes], np.float64), [len(r.lanes) for r in usable], axis=0)
        wh = wh[counts > 0]
        low, high = np.minimum.reduceat(points, starts), np.maximum.reduceat(points, starts)
        if ((low < -LABEL_MARGIN * wh) | (high > (1 + LABEL_MARGIN) * wh)).any():
            return False
    # no sort over the whole cache: a lane whose rows rise (or fall) strictly has no row twice;
    # the few that turn are checked one by one
    dy = np.diff(points[:, 1])
    inner = np.ones(len(dy), bool)
    inner[starts[1:] - 1] = False
    if (dy[inner] == 0).any():
        return False
    turning = np.zeros(len(starts), bool)
    if len(dy):  # per lane: rises somewhere and falls somewhere (the segments start at the lanes' first diff)
        segments = np.minimum(starts, len(dy) - 1)
        turning = ((np.add.reduceat((dy > 0) & inner, segments) > 0)
                   & (np.add.reduceat((dy < 0) & inner, segments) > 0))
    kept = [lane for lane in lanes if len(lane)]
    for i in np.flatnonzero(turning):
        ys = kept[i][:, 1]
        if len(np.unique(ys)) != len(ys):
            return False
    return True


def bad_label_error(record: LaneRecord, hint: str = "") -> DataFormatError:
    """The one-line error of a record whose label cannot be used."""
    path, line, message = record.bad_label
    return DataFormatError(path, line, message + hint)


def require_good_labels(records: Sequence[LaneRecord]) -> list[LaneRecord]:
    """``records`` when none has a bad label, else the first one's DataFormatError."""
    bad = next((r for r in records if r.bad_label is not None), None)
    if bad is not None:
        raise bad_label_error(bad)
    return list(records)


def warn(line: str) -> None:
    """Report a skipped image as a warning (where no log was given)."""
    warnings.warn(line, stacklevel=3)


def good_labels(records: Sequence[LaneRecord], on_bad_label: str, training: bool,
                report: Callable[[str], None] | None = None) -> list[LaneRecord]:
    """The records of a split that can be used, by ``on_bad_label``: "error" stops at the first
    bad label (DataFormatError); "skip" leaves each out of a training split, ``report``-ed
    (default: a warning) in one line. Other splits are validated or scored: a bad label there
    stops the run whatever ``on_bad_label`` says, since a metric over part of a split is not the
    benchmark's."""
    bad = [r for r in records if r.bad_label is not None]
    if not bad:
        return list(records)
    if not training:
        raise bad_label_error(bad[0], " (dataset.on_bad_label='skip' leaves out training images only: a split that "
                                      "is validated or scored keeps every image)")
    if on_bad_label != "skip":
        raise bad_label_error(bad[0], " (dataset.on_bad_label='skip' leaves such training images out)")
    for record in bad:
        (report or warn)(f"skipped {record.img_name}: {bad_label_error(record)}")
    return [r for r in records if r.bad_label is None]


class SkippedLabels:
    """The training images left out for bad labels: each line told to ``log`` as it comes (the
    ``report`` of ``good_labels``), counted for the run's summary."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self.log(line)

    def summary(self) -> str:
        """One line: how many images were skipped and the first of them."""
        return (f"{len(self.lines)} training images skipped for bad labels (dataset.on_bad_label='skip'), each "
                f"logged when the split was read; the first: {self.lines[0]}")
