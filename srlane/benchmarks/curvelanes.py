"""CurveLanes: its layout, its ``.lines.json`` labels and predictions (written and read back), and
its official F1.

::

    <root>/train/images/<hash>.jpg   <root>/train/labels/<hash>.lines.json   <root>/train/train.txt
    <root>/valid/images/<hash>.jpg   <root>/valid/labels/<hash>.lines.json   <root>/valid/valid.txt
    <root>/test/images/<hash>.jpg                                            <root>/test/test.txt

A list line is the image path relative to the root. A label is ``{"Lines": [[{"x": "1021.4",
"y": "1439.0"}, ...], ...]}`` in the image's pixels (coordinates as strings or numbers, points in
any order, a lane may have one point). Image sizes vary (2560x1440, 1570x660, 1280x720, ...):
each record carries its image's size, read from the file header, and the crop is configured per
size (``cut_heights``). Records keep every labelled lane (1-point lanes count for the metric);
training uses the lanes with at least 2 points, bottom point first. Training and validation
labels pass the label checks (``srlane.data.label_checks``, docs/labels.md) on their image's
size; scoring reads them as the official script does (numbers must be finite, no other check).
Papers score the ``valid`` split (test labels are not public) with up to 16 lanes per image.

Scoring prediction files (``scoring_records``, ``read_predictions``) differs from the official
script where it would fail or guess (spec: evaluation.md):
- labels are read in file order, every lane kept, as the official script reads them;
- a missing prediction file counts as 0 lanes with one warning giving the number of such files
  (the official script skips the image, ground truth included); a missing label file is an
  error (the official script skips the image silently);
- predictions are ``<name without extension>.lines.json`` (the label schema; a lane may also be
  a scored ``{"score": s, "points": [...]}``, all kept when no score threshold is given, where the
  official code fails) or ``.lines.txt``, read strictly: a value that is not a number or an odd
  number of values on a line is an error naming the file and line;
- a network with a category head adds ``"Categories"`` to the ``.lines.json`` predictions: each
  lane's OpenLane id, parallel to ``"Lines"`` (docs/lane_kinds.md), checked when read.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from srlane.benchmarks.base import Benchmark, PixelEvaluator
from srlane.data.cache import cached_records
from srlane.data.image_size import image_size
from srlane.data.label_checks import check_lane, number_problem, require_good_labels, short_repr
from srlane.data.records import DataFormatError, LaneRecord, read_list, read_text
from srlane.evaluation.curvelanes import CurveLanesEvaluator
from srlane.fileio import atomic_write_text
from srlane.lanes import Lane, categories_problem, has_kinds, printed, sampled_lanes

SPLITS = ("train", "valid", "test")
PREDICTION_ROW_STEP = 8  # prediction files sample each lane every 8 rows from the crop down, as CULane's
LABEL_DECIMALS = 3  # coordinates in .lines.json files we write, as the official labels


def list_path(data_root: str, split: str) -> str:
    """``<root>/<split>/<split>.txt``: the list file of a split."""
    return os.path.join(data_root, split, f"{split}.txt")


def write_list(data_root: str, split: str, names: Sequence[str]) -> None:
    """The list file of ``split``: one image path (relative to the root) per line."""
    atomic_write_text(list_path(data_root, split), "".join(name + "\n" for name in names))


def split_list_path(data_root: str, split: str) -> str:
    """The existing list file of a split name, or a list path relative to the root."""
    if split.endswith(".txt"):
        path = os.path.join(data_root, split)
    elif split in SPLITS:
        path = list_path(data_root, split)
    else:
        raise ValueError(f"unknown CurveLanes split {split!r}: expected one of {list(SPLITS)} "
                         "or a list file path relative to the data root")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CurveLanes split {split!r}: no list file {path}")
    return path


def label_path(root: str | os.PathLike, name: str) -> str:
    """``valid/images/x.jpg -> ROOT/valid/labels/x.lines.json`` (the last ``images`` folder becomes ``labels``)."""
    parts = name.split("/")
    folders = [i for i, part in enumerate(parts[:-1]) if part == "images"]
    if not folders:
        raise ValueError(f"image name {name!r} has no 'images' folder, expected e.g. 'valid/images/<hash>.jpg'")
    parts[folders[-1]] = "labels"
    return os.path.join(root, os.path.splitext("/".join(parts))[0] + ".lines.json")


def _number(value, path, where: str) -> float:
    """``float(value)`` of a string or number, finite, or a one-line DataFormatError."""
    problem = number_problem(value, strings=True)
    if problem is not None:
        raise DataFormatError(path, None, f"{where} {problem}")
    return float(value)


def _points(lane, path, i: int) -> np.ndarray:
    """float64 ``(N, 2)`` x, y of lane ``i`` of a file (a list of ``{"x", "y"}`` objects, strings or
    numbers), checked: finite numbers or a DataFormatError."""
    if not isinstance(lane, list):
        raise DataFormatError(path, None,
                              f'lane {i} is {short_repr(lane)}, expected a list of {{"x": ..., "y": ...}} points')
    try:
        pts = np.array([[float(p["x"]), float(p["y"])] for p in lane], dtype=np.float64).reshape(-1, 2)
        if np.isfinite(pts).all():
            return pts
    except (TypeError, KeyError, ValueError, IndexError):
        pass
    for j, p in enumerate(lane):  # slow path: find the first bad point for the message
        if not isinstance(p, dict) or "x" not in p or "y" not in p:
            raise DataFormatError(path, None, f'lane {i} point {j}: {short_repr(p)}, expected {{"x": ..., "y": ...}}')
        _number(p["x"], path, f"lane {i} point {j}: x")
        _number(p["y"], path, f"lane {i} point {j}: y")
    raise AssertionError("unreachable: a bad point was not found")


def read_lines_json(path: str | os.PathLike, score_threshold: float | None = None) -> list[np.ndarray]:
    """Lanes of a ``.lines.json`` file as float64 ``(N, 2)`` x, y arrays, in file order.

    ``{"Lines": [lane, ...]}``; a lane is a list of ``{"x": ..., "y": ...}`` points (strings or
    numbers) or a scored prediction ``{"score": s, "points": [...]}``, kept only when
    ``s > score_threshold`` (all kept when the threshold is None). Lanes with no points are kept
    here (scoring drops them). Anything else is a one-line DataFormatError naming the file (lane
    and point indices in messages are 0-based).
    """
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, None, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(data, dict) or "Lines" not in data:
        raise DataFormatError(path, None, 'no "Lines" key, expected {"Lines": [[{"x": ..., "y": ...}, ...], ...]}')
    lines = data["Lines"]
    if not isinstance(lines, list):
        raise DataFormatError(path, None, f'"Lines" is {short_repr(lines)}, expected a list of lanes')
    if "Categories" in data:
        problem = categories_problem(data["Categories"], len(lines))
        if problem is not None:
            raise DataFormatError(path, None, f'"Categories": {problem}')
    lanes = []
    for i, lane in enumerate(lines):
        if isinstance(lane, dict):
            if "score" not in lane or "points" not in lane:
                raise DataFormatError(path, None, f"lane {i} is an object with keys {sorted(lane)}, expected a "
                                                  'list of points or {"score": ..., "points": [...]}')
            score = _number(lane["score"], path, f"lane {i}: score")
            if score_threshold is not None and not score > score_threshold:
                continue
            lane = lane["points"]
        lanes.append(_points(lane, path, i))
    return lanes


def read_lines_txt(path: str | os.PathLike) -> list[np.ndarray]:
    """Lanes of a ``.lines.txt`` file (``x y x y ...`` per text line) as float64 ``(N, 2)`` arrays.

    A blank line is a lane with 0 points; a value that is not a finite number or an odd number of
    values is a DataFormatError naming the file and the (1-based) line.
    """
    lanes = []
    for k, line in enumerate(read_text(path).splitlines(), 1):
        values = [_number(v, path, f"line {k}: value") for v in line.split()]
        if len(values) % 2:
            raise DataFormatError(path, None, f"line {k}: {len(values)} values, expected x y pairs")
        lanes.append(np.array(values, dtype=np.float64).reshape(-1, 2))
    return lanes


def read_label(path: str, size: tuple[int, int]) -> list[np.ndarray]:
    """Training lanes of a ``.lines.json`` label as float32 ``(N, 2)`` arrays, bottom point first,
    checked on an image of ``size`` (``check_lane``; a DataFormatError naming the file and lane)."""
    lanes = []
    for i, lane in enumerate(read_lines_json(path)):
        try:
            lane = check_lane(lane, size)
        except ValueError as err:
            raise DataFormatError(path, None, f"lane {i}: {err}") from None
        lanes.append(lane[np.argsort(-lane[:, 1], kind="stable")])
    return lanes


def label_text(lanes: Sequence[np.ndarray], digits: int = LABEL_DECIMALS,
               categories: Sequence[int] | None = None) -> str:
    """A ``.lines.json`` file: coordinates as strings with ``digits`` decimals, as the official labels;
    with ``categories``, also ``"Categories"``: each lane's OpenLane id, parallel to ``"Lines"``."""
    data: dict[str, list] = {"Lines": [[{"x": f"{x:.{digits}f}", "y": f"{y:.{digits}f}"}
                                        for x, y in np.asarray(lane).tolist()] for lane in lanes]}
    if categories is not None:
        data["Categories"] = [int(c) for c in categories]
    return json.dumps(data)


def parse_list(data_root: str, list_path: str,
               read_lanes: Callable[[str, tuple[int, int]], list[np.ndarray]] | None) -> list[LaneRecord]:
    """Records of a list file: image, size and (with ``read_lanes(label path, (height, width))``)
    the lanes of its label; a label ``read_lanes`` rejects gives a record without lanes and its
    ``bad_label`` (the list file and line, the label's message)."""
    records = []
    for entry in read_list(list_path, data_root):
        try:
            width, height = image_size(entry.path)
        except ValueError as err:
            raise DataFormatError(list_path, entry.line, str(err)) from None
        lanes: list[np.ndarray] = []
        bad = None
        if read_lanes is not None:
            try:
                path = label_path(os.path.abspath(data_root), entry.name)
            except ValueError as err:
                raise DataFormatError(list_path, entry.line, str(err)) from None
            if not os.path.isfile(path):
                raise DataFormatError(list_path, entry.line, f"label not found: {path}")
            try:
                lanes = read_lanes(path, (height, width))
            except DataFormatError as err:
                bad = (list_path, entry.line, f"malformed label: {err}")
        records.append(LaneRecord(img_path=entry.path, img_name=entry.name, lanes=lanes, img_size=(height, width),
                                  bad_label=bad))
    return records


def load_curvelanes(data_root: str, split: str, cache_dir: str | None = None) -> list[LaneRecord]:
    """LaneRecords of a CurveLanes split (``train``, ``valid``, ``test`` or a list path); the
    ``test`` split has no labels."""
    list_path = split_list_path(data_root, split)
    labelled = split != "test"
    return cached_records("curvelanes", data_root, split, [list_path],
                          lambda: parse_list(data_root, list_path, read_label if labelled else None), cache_dir)


def scoring_records(data_root: str, list_path: str) -> list[LaneRecord]:
    """Records of a list file for scoring prediction files: each image's size (from its header)
    and its label's lanes as the official script reads them (``read_lines_json``: file order,
    every lane); a malformed label is a DataFormatError."""
    return require_good_labels(parse_list(data_root, list_path, lambda path, size: read_lines_json(path)))


def prediction_file(pred_dir: str, name: str, score_threshold: float | None = None) -> list[np.ndarray] | None:
    """Predicted lanes of an image from ``PRED/<name without extension>.lines.json`` or ``.lines.txt``.

    None when neither exists; both existing is an error (which one is meant is unclear).
    """
    stem = os.path.join(pred_dir, os.path.splitext(name)[0])
    json_path, txt_path = stem + ".lines.json", stem + ".lines.txt"
    has_json, has_txt = os.path.exists(json_path), os.path.exists(txt_path)
    if has_json and has_txt:
        raise DataFormatError(json_path, None, f"both this and {txt_path} exist: keep one prediction file per image")
    if has_json:
        return read_lines_json(json_path, score_threshold)
    return read_lines_txt(txt_path) if has_txt else None


def read_predictions(records: Sequence[LaneRecord], source: str,
                     score_threshold: float | None = None) -> list[list[np.ndarray]]:
    """The predicted lanes of each record from ``source`` (``prediction_file``); a missing file
    is an image without lanes, all of them reported by one warning."""
    lanes, missing = [], []
    for record in records:
        found = prediction_file(source, record.img_name, score_threshold)
        if found is None:
            missing.append(record.img_name)
        lanes.append(found or [])
    if missing:
        warnings.warn(f"{len(missing)} of {len(records)} prediction files are missing (counted as 0 lanes), e.g. "
                      f"{os.path.join(source, os.path.splitext(missing[0])[0])}.lines.json", stacklevel=2)
    return lanes


def f1_evaluator(records: Sequence[LaneRecord], progress: Callable[[int], object] | None = None) -> PixelEvaluator:
    """``predictions (per record, its pixel lanes) -> metrics``: the official F1 over the records'
    lanes, each image on the canvas of its own size, with ``"metric"`` (the F1); ``progress(1)``
    after each image (a tqdm bar's ``update``)."""

    def evaluate(predictions: Sequence[Sequence[np.ndarray]]) -> dict:
        metric = CurveLanesEvaluator()
        for record, lanes in zip(records, predictions, strict=True):
            height, width = record.img_size
            metric.add(record.lanes, lanes, width, height)
            if progress is not None:
                progress(1)
        return metric.summary()

    return evaluate


class CurveLanes(Benchmark):
    """CurveLanes F1 (official: 224x224 canvas, width 5, IoU > 0.5) over images of mixed sizes;
    prediction files ``<image name without extension>.lines.json``, every PREDICTION_ROW_STEP
    rows from the crop down."""

    name = "curvelanes"
    splits = SPLITS
    fixed_size = False

    def _read_split(self, split: str, training: bool) -> list[LaneRecord]:
        return load_curvelanes(self.data_root, split, self.cache_dir)

    def pixel_evaluator(self, records: Sequence[LaneRecord]) -> PixelEvaluator:
        return f1_evaluator(records)

    def _sampled(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[tuple[Lane, np.ndarray]]:
        """The lanes written, each with its points in the record's pixels, every
        PREDICTION_ROW_STEP rows from its crop down."""
        height, width = self.size_of(record)
        return sampled_lanes(lanes, width, height, self.crop(height, width), PREDICTION_ROW_STEP)

    def prediction_points(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[np.ndarray]:
        return [printed(points, LABEL_DECIMALS) for _, points in self._sampled(record, lanes)]

    def prediction_categories(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[int]:
        return [lane.category for lane, _ in self._sampled(record, lanes)]

    def write_predictions(self, records: Sequence[LaneRecord], predictions: Sequence[Sequence[Lane]],
                          output_dir: str, run_times_ms: Sequence[float] | None = None) -> None:
        """``<name>.lines.json`` per image, with ``"Categories"`` when the lanes have kinds."""
        kinds = any(has_kinds(lanes) for lanes in predictions)
        for record, lanes in zip(records, predictions, strict=True):
            path = os.path.join(output_dir, os.path.splitext(record.img_name)[0] + ".lines.json")
            sampled = self._sampled(record, lanes)
            atomic_write_text(path, label_text([points for _, points in sampled], LABEL_DECIMALS,
                                               [lane.category for lane, _ in sampled] if kinds else None))

    read_predictions = staticmethod(read_predictions)
