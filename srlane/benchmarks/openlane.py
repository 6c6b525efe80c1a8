"""OpenLane: its layout, its per-frame JSON labels and result files (written and read back), and
its official 2D F-score, category-aware (docs/openlane.md).

::

    <root>/images/<split>/<segment>/<frame>.jpg
    <root>/<lane_set>/<split>/<segment>/<frame>.json      lane_set: lane3d_1000 (or lane3d_300)
    <root>/lists/<split>.txt                               (optional) lines <split>/<segment>/<frame>.jpg

Splits are ``training`` and ``validation`` (every label under the split's folder, sorted), or a
list file relative to the root in the official tool's ``-l`` format. A frame's *name* is
``<split>/<segment>/<frame>`` (no extension): the label's ``file_path`` without ``.jpg``, the
official tool's list line without it, and the path of its result file under a results folder.

A label or result file is ``{"file_path": ..., "lane_lines": [{"uv": [[u...], [v...]],
"category": id, ...}, ...]}``; labels also carry ``xyz``, ``visibility``, ``attribute``,
``track_id``, ``intrinsic`` and ``extrinsic`` (read by ``read_frame``, 2D training uses ``uv``
and ``category``). Records keep each lane's category (``LaneRecord.lane_categories``); training
lanes pass the label checks (``srlane.data.label_checks``) on the 1920 x 1280 image, bottom point
first, lanes of fewer than 2 points dropped (the metric drops them too).
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from srlane.benchmarks.base import Benchmark, PixelEvaluator
from srlane.data.label_checks import check_lane, number_problem, short_repr
from srlane.data.records import DataFormatError, LaneRecord, read_list, read_text
from srlane.evaluation.culane import CULaneEvaluator
from srlane.evaluation.openlane import IMAGE_SHAPE, IOU_THRESHOLD, WIDTH, OpenLaneEvaluator, scored_lanes
from srlane.fileio import atomic_write_json, atomic_write_text
from srlane.lane_kinds import check_category
from srlane.lanes import Lane, printed

SPLITS = ("training", "validation")
LANE_SETS = ("lane3d_1000", "lane3d_300")
IMAGE_SIZE = IMAGE_SHAPE  # (height, width) of every OpenLane image: the official tool's canvas
PREDICTION_ROW_STEP = 8  # result files sample each lane every 8 rows from the crop down
RESULT_DECIMALS = 3  # coordinates in the result files we write

# placeholders write_frame_label fills where a 2D generator knows nothing: a Waymo-like front camera
PLACEHOLDER_INTRINSIC = [[2000.0, 0.0, 960.0], [0.0, 2000.0, 640.0], [0.0, 0.0, 1.0]]
PLACEHOLDER_EXTRINSIC = [[1.0, 0.0, 0.0, 1.5], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.1], [0.0, 0.0, 0.0, 1.0]]


def image_name(name: str) -> str:
    """``training/seg/frame -> images/training/seg/frame.jpg``: the image relative to the root."""
    return f"images/{name}.jpg"


def image_path(root: str | os.PathLike, name: str) -> str:
    """The image of frame ``name`` under the dataset root."""
    return os.path.join(root, image_name(name))


def label_path(root: str | os.PathLike, name: str, lane_set: str = "lane3d_1000") -> str:
    """``<root>/<lane_set>/<name>.json``: the label of frame ``name``."""
    return os.path.join(root, lane_set, name + ".json")


def result_path(results_dir: str | os.PathLike, name: str) -> str:
    """``<results_dir>/<name>.json``: the result file of frame ``name`` (the official layout)."""
    return os.path.join(results_dir, name + ".json")


def list_path(root: str | os.PathLike, split: str) -> str:
    """``<root>/lists/<split>.txt``: a split's list in the official tool's ``-l`` format."""
    return os.path.join(root, "lists", f"{split}.txt")


def split_names(root: str | os.PathLike, split: str, lane_set: str = "lane3d_1000") -> list[str]:
    """The names of a split's frames, sorted: every ``.json`` under ``<root>/<lane_set>/<split>``
    (FileNotFoundError naming that folder when it does not exist)."""
    folder = os.path.join(root, lane_set, split)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"OpenLane split {split!r}: no label folder {folder}")
    names = []
    for here, _, files in os.walk(folder):
        rel = os.path.relpath(here, os.path.join(root, lane_set)).replace(os.sep, "/")
        names.extend(f"{rel}/{f[:-5]}" for f in files if f.endswith(".json"))
    return sorted(names)


def write_list(root: str | os.PathLike, split: str, names: Sequence[str]) -> None:
    """``list_path(root, split)``: one ``<name>.jpg`` per line, as the official tool's ``-l`` reads."""
    atomic_write_text(list_path(root, split), "".join(f"{name}.jpg\n" for name in names))


def lane_entry(points: np.ndarray, category: int) -> dict:
    """One ``lane_lines`` entry of a result file: ``{"category", "uv": [[u...], [v...]]}``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return {"category": int(category), "uv": [pts[:, 0].tolist(), pts[:, 1].tolist()]}


def write_frame_label(root: str | os.PathLike, split: str, name: str, lanes: Sequence[np.ndarray],
                      categories: Sequence[int], lane_set: str = "lane3d_1000",
                      attributes: Sequence[int] | None = None, track_ids: Sequence[int] | None = None) -> str:
    """Write the label of frame ``<split>/<name>`` (``name``: ``<segment>/<frame>``) and return its path.

    ``lanes``: ``(N, 2)`` pixel arrays, ``categories``: their OpenLane ids. What a 2D scene does
    not know is filled with placeholders, documented as such (docs/openlane.md): ``xyz`` zeros,
    ``visibility`` ones, ``attribute`` 0 (not given) and ``track_id`` the lane's index unless
    given, ``intrinsic`` / ``extrinsic`` the fixed camera PLACEHOLDER_INTRINSIC / _EXTRINSIC.
    """
    if len(categories) != len(lanes):
        raise ValueError(f"{len(categories)} categories for {len(lanes)} lanes")
    frame = f"{split}/{name}"
    entries = []
    for i, (points, category) in enumerate(zip(lanes, categories)):
        entry = lane_entry(points, category)
        n = len(entry["uv"][0])
        entry.update(xyz=[[0.0] * n, [0.0] * n, [0.0] * n], visibility=[1.0] * n,
                     attribute=int(attributes[i]) if attributes is not None else 0,
                     track_id=int(track_ids[i]) if track_ids is not None else i)
        entries.append(entry)
    path = label_path(root, frame, lane_set)
    atomic_write_json(path, {"file_path": frame + ".jpg", "intrinsic": PLACEHOLDER_INTRINSIC,
                             "extrinsic": PLACEHOLDER_EXTRINSIC, "lane_lines": entries}, indent=None)
    return path


@dataclass
class Frame:
    """One label or result file as read: the lanes (float64 ``(N, 2)`` u, v in file order, every
    lane kept), their categories, and the labels' ``attribute`` and ``track_id`` per lane (None
    where a lane has none: result files)."""

    file_path: str | None
    lanes: list[np.ndarray]
    categories: list[int]
    attributes: list[int | None]
    track_ids: list[int | None]


def _uv(entry: dict, path: str, i: int) -> np.ndarray:
    """Lane ``i``'s ``uv`` as ``(N, 2)`` float64, or a one-line DataFormatError."""
    uv = entry.get("uv")
    if not isinstance(uv, list) or len(uv) != 2 or not all(isinstance(c, list) for c in uv):
        raise DataFormatError(path, None,
                              f'lane {i}: "uv" is {short_repr(uv)}, expected [[u0, u1, ...], [v0, v1, ...]]')
    if len(uv[0]) != len(uv[1]):
        raise DataFormatError(path, None, f'lane {i}: "uv" has {len(uv[0])} u and {len(uv[1])} v values, '
                                          "expected one v per u")
    for axis, values in zip("uv", uv):
        for j, value in enumerate(values):
            problem = number_problem(value)
            if problem is not None:
                raise DataFormatError(path, None, f"lane {i} point {j}: {axis} {problem}")
    return np.array(uv, dtype=np.float64).T.reshape(-1, 2)


def _optional_int(entry: dict, key: str, path: str, i: int) -> int | None:
    value = entry.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise DataFormatError(path, None, f'lane {i}: "{key}" is {short_repr(value)}, expected an integer')
    return value


def read_frame(path: str | os.PathLike) -> Frame:
    """A label or result file (``Frame``); anything that is not the schema is a one-line
    DataFormatError naming the file and (0-based) lane: not JSON, no ``lane_lines`` list, a
    ``uv`` that is not two lists of one length of finite numbers, a ``category`` that is not
    one of OpenLane's ids (``srlane.lane_kinds``)."""
    path = os.fspath(path)
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, None, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(data, dict) or "lane_lines" not in data:
        raise DataFormatError(path, None, 'no "lane_lines" key, expected {"file_path": ..., "lane_lines": '
                                          '[{"uv": [[u...], [v...]], "category": ...}, ...]}')
    entries = data["lane_lines"]
    if not isinstance(entries, list):
        raise DataFormatError(path, None, f'"lane_lines" is {short_repr(entries)}, expected a list of lanes')
    frame = Frame(data.get("file_path"), [], [], [], [])
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataFormatError(path, None,
                                  f'lane {i} is {short_repr(entry)}, expected {{"uv": ..., "category": ...}}')
        frame.lanes.append(_uv(entry, path, i))
        category = check_category(entry.get("category"))
        if category is None:
            raise DataFormatError(path, None, f'lane {i}: "category" is {short_repr(entry.get("category"))}, '
                                              f"expected an OpenLane category id (0-12, 20, 21)")
        frame.categories.append(category)
        frame.attributes.append(_optional_int(entry, "attribute", path, i))
        frame.track_ids.append(_optional_int(entry, "track_id", path, i))
    return frame


def training_lanes(path: str) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """A label's lanes of >= 2 points as records keep them (``check_lane`` on the 1920 x 1280
    image, float32, bottom point first) and their categories; a DataFormatError names the lane."""
    frame = read_frame(path)
    lanes, categories = [], []
    for i, (lane, category) in enumerate(zip(frame.lanes, frame.categories)):
        if len(lane) < 2:
            continue
        try:
            lane = check_lane(lane, IMAGE_SIZE)
        except ValueError as err:
            raise DataFormatError(path, None, f"lane {i}: {err}") from None
        lanes.append(lane[np.argsort(-lane[:, 1], kind="stable")])
        categories.append(category)
    return lanes, tuple(categories)


def frame_name(record: LaneRecord) -> str:
    """``images/training/seg/frame.jpg -> training/seg/frame``: the record's frame name."""
    return os.path.splitext(record.img_name)[0].removeprefix("images/")


def split_frames(root: str, split: str, lane_set: str) -> list[tuple[str, str, int | None]]:
    """``(name, source, line)`` of a split's frames: a split name walks its label folder; a
    ``.txt`` (relative to the root) is a list in the official ``-l`` format. Each image must exist."""
    if split.endswith(".txt"):
        source = os.path.join(root, split)
        return [(os.path.splitext(e.name)[0], source, e.line) for e in read_list(source, os.path.join(root, "images"))]
    if split not in SPLITS:
        raise ValueError(f"unknown OpenLane split {split!r}: expected one of {list(SPLITS)} "
                         "or a list file path relative to the data root")
    frames = []
    for name in split_names(root, split, lane_set):
        label = label_path(root, name, lane_set)
        if not os.path.isfile(image_path(root, name)):
            raise DataFormatError(label, None, f"image not found: {image_path(root, name)}")
        frames.append((name, label, None))
    return frames


def load_openlane(root: str, split: str, lane_set: str = "lane3d_1000") -> list[LaneRecord]:
    """The records of a split, each with its lanes and their categories; a label that cannot be
    used gives a record without lanes and its ``bad_label``."""
    records = []
    for name, source, line in split_frames(root, split, lane_set):
        label = label_path(root, name, lane_set)
        lanes, categories, bad = [], (), None
        if not os.path.isfile(label):
            raise DataFormatError(source, line, f"label not found: {label}")
        try:
            lanes, categories = training_lanes(label)
        except DataFormatError as err:  # a walked split's source is the label itself
            bad = (source, line, f"malformed label: {err}") if line is not None else (err.path, None, err.message)
        records.append(LaneRecord(img_path=os.path.abspath(image_path(root, name)), img_name=image_name(name),
                                  lanes=lanes, lane_categories=categories, bad_label=bad))
    return records


def scoring_frames(anno_dir: str, list_path: str) -> tuple[list[str], list[Frame]]:
    """The official tool's reading of the annotations: for each list line, ``<anno_dir>/<line
    without extension>.json`` (every lane, file order). A missing file is an error naming the
    list line (the official tool reads it as an image without lanes)."""
    names, frames = [], []
    for entry in read_list(list_path):
        name = os.path.splitext(entry.name)[0]
        path = result_path(anno_dir, name)
        if not os.path.isfile(path):
            raise DataFormatError(list_path, entry.line, f"annotation not found: {path}")
        names.append(name)
        frames.append(read_frame(path))
    return names, frames


def read_results(names: Sequence[str], results_dir: str) -> tuple[list[list[np.ndarray]], list[list[int]]]:
    """The predicted lanes and their categories of each frame, from ``<results_dir>/<name>.json``;
    a missing file is a frame without lanes, all of them reported by one warning."""
    lanes, categories, missing = [], [], []
    for name in names:
        path = result_path(results_dir, name)
        if not os.path.isfile(path):
            missing.append(path)
            lanes.append([])
            categories.append([])
            continue
        frame = read_frame(path)
        lanes.append(frame.lanes)
        categories.append(frame.categories)
    if missing:
        warnings.warn(f"{len(missing)} of {len(names)} result files are missing (counted as 0 lanes), "
                      f"e.g. {missing[0]}", stacklevel=2)
    return lanes, categories


def f1_results(counts: np.ndarray) -> dict:
    """The totals of per-image counts (``OpenLaneEvaluator.image_counts``) with ``"metric"``: the
    F1, 0 where it is undefined (so that checkpoints compare)."""
    result = OpenLaneEvaluator.summarize(counts)
    result["metric"] = result["f1"] or 0.0
    return result


def f1_evaluator(annotations: Sequence[Sequence[np.ndarray]], categories: Sequence[Sequence[int]],
                 category_aware: bool = True, iou_threshold: float = IOU_THRESHOLD,
                 width: int = WIDTH) -> PixelEvaluator:
    """``(predictions, their categories) -> metrics``: the official F-score over the annotations
    (``f1_results``)."""
    metric = OpenLaneEvaluator(annotations, categories, category_aware, iou_threshold, width, IMAGE_SIZE)
    return lambda predictions, kinds: f1_results(metric.image_counts(predictions, kinds))


class OpenLane(Benchmark):
    """OpenLane's 2D F-score (official: width 30, IoU > 0.3, 1920 x 1280, same category only) over
    its frames; result files ``<results>/<split>/<segment>/<frame>.json`` with each lane's
    ``Lane.category``, every PREDICTION_ROW_STEP rows from the crop down. ``lane_set``: the label
    folder (``lane3d_1000`` or ``lane3d_300``); ``category_aware`` False scores as the tool's ``-k``."""

    name = "openlane"
    splits = SPLITS
    scores_categories = True
    category_iou = IOU_THRESHOLD
    options = ("lane_set", "category_aware")

    def __init__(self, *args, lane_set: str = "lane3d_1000", category_aware: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if lane_set not in LANE_SETS:
            raise ValueError(f"dataset.lane_set must be one of {list(LANE_SETS)}, got {lane_set!r}")
        self.lane_set, self.category_aware = lane_set, bool(category_aware)

    def _read_split(self, split: str, training: bool) -> list[LaneRecord]:
        return load_openlane(self.data_root, split, self.lane_set)

    def iou_evaluator(self, records: Sequence[LaneRecord], iou_thresholds: Sequence[float]) -> CULaneEvaluator:
        """Per-lane matching on the tool's canvas and width, whatever the lanes' kinds (the tool's
        ``-k``): the pairs the kind metrics compare (``category_evaluator``) and the report's
        gallery. Each annotation keeps its index (records hold lanes of >= 2 points)."""
        lanes = [scored_lanes(r.lanes, (0,) * len(r.lanes))[0] for r in records]
        return CULaneEvaluator(lanes, iou_thresholds=iou_thresholds, width=WIDTH, img_shape=IMAGE_SIZE,
                               official_matching=True)

    def pixel_evaluator(self, records: Sequence[LaneRecord]) -> PixelEvaluator:
        return f1_evaluator([r.lanes for r in records], [r.lane_categories or (0,) * len(r.lanes) for r in records],
                            self.category_aware)

    def _sampled(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[tuple[np.ndarray, int]]:
        """Each lane of >= 2 samples as its result file holds it, with its category."""
        height, width = self.size_of(record)
        out = []
        for lane in lanes:
            points = lane.pixel_points(width, height, self.crop(height, width), PREDICTION_ROW_STEP)
            if len(points) >= 2:
                out.append((printed(points, RESULT_DECIMALS), lane.category))
        return out

    def prediction_points(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[np.ndarray]:
        return [points for points, _ in self._sampled(record, lanes)]

    def prediction_categories(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[int]:
        return [category for _, category in self._sampled(record, lanes)]

    def write_predictions(self, records: Sequence[LaneRecord], predictions: Sequence[Sequence[Lane]],
                          output_dir: str, run_times_ms: Sequence[float] | None = None) -> None:
        for record, lanes in zip(records, predictions, strict=True):
            name = frame_name(record)
            atomic_write_json(result_path(output_dir, name),
                              {"file_path": name + ".jpg",
                               "lane_lines": [lane_entry(p, c) for p, c in self._sampled(record, lanes)]}, indent=None)

    def read_predictions(self, records: Sequence[LaneRecord], source: str) -> list[list[np.ndarray]]:
        return read_results([frame_name(r) for r in records], source)[0]

    def read_prediction_categories(self, records: Sequence[LaneRecord], source: str) -> list[list[int]]:
        return read_results([frame_name(r) for r in records], source)[1]
