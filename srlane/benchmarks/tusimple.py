"""TuSimple: its official layout (json-lines label files next to ``clips/``), its prediction
file (``predictions.json``, one json line per image, written and read back) and the official
LaneEval accuracy.

Each label line: ``{"lanes": [[x or -2, ...], ...], "h_samples": [y, ...], "raw_file": "clips/..."}``;
each prediction line: ``{"raw_file": ..., "lanes": [[x or -2, ...], ...], "run_time": ms}``, with
``"categories": [id, ...]`` (each lane's OpenLane kind, as long as ``lanes``) when the network
predicts kinds (docs/lane_kinds.md). As pixel
lanes, a lane of either is its ``(x, y)`` points at the h_samples where x >= 0 (LaneEval treats
every negative x as absent, so nothing the metric sees is lost).

Every number of a label or prediction line must be finite (json's ``NaN``, ``Infinity`` are
errors naming the file, line, lane and value); training and validation lanes then pass the label
checks (``srlane.data.label_checks``, docs/labels.md) on the config's image size.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from srlane.benchmarks.base import Benchmark
from srlane.data.cache import cached_records
from srlane.data.label_checks import clean_lane, number_problem, short_repr
from srlane.data.records import DataFormatError, LaneRecord, read_text, relative_name, require_image
from srlane.evaluation.tusimple import tusimple_metric
from srlane.fileio import atomic_write_text
from srlane.lanes import Lane, categories_problem, has_kinds, tusimple_json_line

AccuracyEvaluator = Callable[[Sequence[Sequence[np.ndarray]], Sequence[float] | None], dict]

PREDICTION_ROW_STEP = 10  # TuSimple's h_samples step
SPLIT_FILES = {
    "train": ("label_data_0313.json", "label_data_0601.json"),
    "val": ("label_data_0531.json",),
    "trainval": ("label_data_0313.json", "label_data_0601.json", "label_data_0531.json"),
    "test": ("test_label.json",),
}


def split_files(data_root: str, split: str) -> list[str]:
    """The label files of a split (all must exist)."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown TuSimple split {split!r}: expected one of {sorted(SPLIT_FILES)}")
    paths = [os.path.join(data_root, name) for name in SPLIT_FILES[split]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"TuSimple split {split!r}: missing label files {missing}")
    return paths


def json_lines(path: str) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` of each non-blank line of a json-lines file (DataFormatError
    naming the file and line where a line is not a json object)."""
    for line_no, text in enumerate(read_text(path).split("\n"), 1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(path, line_no, f"malformed json ({err.msg})") from None
        if not isinstance(item, dict):
            raise DataFormatError(path, line_no, f"expected a json object, got {type(item).__name__}")
        yield line_no, item


def _require_numbers(values, path: str, line_no: int, what: str) -> None:
    """DataFormatError naming ``what`` (e.g. "lane 2") and its first value that is not a finite
    number (a string, a boolean, NaN, Infinity), unless ``values`` is a list of finite numbers."""
    if not isinstance(values, list):
        raise DataFormatError(path, line_no, f"{what} is {short_repr(values)}, expected a list of numbers")
    for j, value in enumerate(values):
        problem = number_problem(value)
        if problem is not None:
            raise DataFormatError(path, line_no, f"{what} value {j}: {problem}; expected a list of finite numbers")


def label_image(item: dict, path: str, line_no: int) -> str:
    """The ``raw_file`` of one label object, checked."""
    if "raw_file" not in item:
        raise DataFormatError(path, line_no, "missing key 'raw_file'")
    if not isinstance(item["raw_file"], str):
        raise DataFormatError(path, line_no, f"raw_file must be an image path, got {item['raw_file']!r}")
    return item["raw_file"]


def label_lanes(item: dict, path: str, line_no: int) -> tuple[list[list[float]], list[int]]:
    """One label object -> (lanes as xs per h_sample, h_samples), checked: lists of finite
    numbers, each lane as long as the h_samples."""
    for key in ("lanes", "h_samples"):
        if key not in item:
            raise DataFormatError(path, line_no, f"missing key {key!r}")
    h_samples, lanes = item["h_samples"], item["lanes"]
    _require_numbers(h_samples, path, line_no, "h_samples")
    if not isinstance(lanes, list):
        raise DataFormatError(path, line_no, f"lanes is {short_repr(lanes)}, expected a list of lanes")
    for i, lane in enumerate(lanes):
        _require_numbers(lane, path, line_no, f"lane {i}")
        if len(lane) != len(h_samples):
            raise DataFormatError(path, line_no, f"lane {i} has {len(lane)} values for {len(h_samples)} h_samples; "
                                                 "expected one x per h_sample")
    return lanes, h_samples


def label_fields(item: dict, path: str, line_no: int) -> tuple[str, list[list[float]], list[int]]:
    """One label object -> (raw_file, lanes as xs per h_sample, h_samples), checked."""
    return (label_image(item, path, line_no), *label_lanes(item, path, line_no))


def row_points(xs: Sequence[float], h_samples: Sequence[float]) -> np.ndarray:
    """A TuSimple lane (x at each h_sample, negative where absent) as float64 ``(N, 2)`` points."""
    pts = np.stack([np.asarray(xs, dtype=np.float64), np.asarray(h_samples, dtype=np.float64)], axis=1).reshape(-1, 2)
    return pts[pts[:, 0] >= 0]


def training_lanes(item: dict, path: str, line_no: int,
                   image_size: tuple[int, int] | None) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """The lanes (``clean_lane`` on ``image_size``) and h_samples of one label object; a label
    that cannot be true is a DataFormatError naming the file, line and lane."""
    lanes, h_samples = label_lanes(item, path, line_no)
    ys = np.asarray(h_samples, dtype=np.float64)
    kept = []
    for i, xs in enumerate(lanes):
        try:
            lane = clean_lane(np.stack([np.asarray(xs, dtype=np.float64), ys], axis=1), image_size)
        except ValueError as err:
            raise DataFormatError(path, line_no, f"lane {i}: {err}") from None
        if lane is not None:
            kept.append(lane)
    return kept, tuple(int(y) for y in h_samples)


def parse_label_file(data_root: str, path: str, image_size: tuple[int, int] | None = None) -> list[LaneRecord]:
    """Records of one label file; -2 (any negative x) marks a row where the lane is absent. A
    label whose lanes fail (``training_lanes``) gives a record without lanes and its ``bad_label``."""
    data_root = os.path.abspath(data_root)
    records = []
    for line_no, item in json_lines(path):
        img_name = relative_name(label_image(item, path, line_no))
        img_path = os.path.join(data_root, img_name)
        require_image(img_path, path, line_no)
        lanes, h_samples, bad = [], None, None
        try:
            lanes, h_samples = training_lanes(item, path, line_no, image_size)
        except DataFormatError as err:
            bad = (err.path, err.line, err.message)
        records.append(LaneRecord(img_path=img_path, img_name=img_name, lanes=lanes, h_samples=h_samples,
                                  bad_label=bad))
    return records


def load_tusimple(data_root: str, split: str, cache_dir: str | None = None,
                  image_size: tuple[int, int] | None = None) -> list[LaneRecord]:
    """LaneRecords of a TuSimple split: train (0313+0601), val (0531), trainval, test; lanes
    checked on ``image_size`` (None: no margin check), bad labels kept as ``bad_label``."""
    paths = split_files(data_root, split)

    def build() -> list[LaneRecord]:
        return [record for path in paths for record in parse_label_file(data_root, path, image_size)]

    return cached_records("tusimple", data_root, split, paths, build, cache_dir, image_size=image_size)


def label_rows(lanes: Sequence[np.ndarray], h_samples: Sequence[int], cast: Callable = float) -> list[list]:
    """Lanes of ``(x, y)`` points on the ``h_samples`` rows as TuSimple rows: ``cast(x)`` at
    each h_sample, -2 where the lane has no point."""
    rows = []
    for lane in lanes:
        by_row = {int(y): cast(x) for x, y in lane.tolist()}
        rows.append([by_row.get(int(h), -2) for h in h_samples])
    return rows


def label_line(raw_file: str, rows: Sequence[Sequence], h_samples: Sequence[int]) -> str:
    """One line of a TuSimple label file."""
    return json.dumps({"lanes": [list(r) for r in rows], "h_samples": list(h_samples), "raw_file": raw_file})


def write_label_files(data_root: str, lines_by_file: dict[str, Sequence[str]]) -> None:
    """Label files under the root, each from its json lines (``label_line``)."""
    for name, lines in lines_by_file.items():
        atomic_write_text(os.path.join(data_root, name), "".join(line + "\n" for line in lines))


def scoring_records(gt_path: str) -> list[LaneRecord]:
    """Records of a ground-truth label file for scoring prediction files: every lane as LaneEval
    reads it (``row_points``, float64, lanes without points kept), images not opened."""
    folder = os.path.dirname(os.path.abspath(gt_path))
    records, seen = [], set()
    for line_no, item in json_lines(gt_path):
        raw_file, lanes, h_samples = label_fields(item, gt_path, line_no)
        img_name = relative_name(raw_file)
        if img_name in seen:
            raise DataFormatError(gt_path, line_no, f"image {raw_file!r} appears twice in the ground truth")
        seen.add(img_name)
        records.append(LaneRecord(img_path=os.path.join(folder, img_name), img_name=img_name,
                                  lanes=[row_points(xs, h_samples) for xs in lanes], h_samples=tuple(h_samples)))
    return records


def read_prediction_file(path: str, records: Sequence[LaneRecord]) -> tuple[list[list[np.ndarray]], list[float]]:
    """The predicted lanes (``row_points`` at each record's h_samples) and run time (ms) of each
    record, in the records' order, from a prediction json-lines file.

    Every record must be there once and nothing else (as LaneEval requires); a line that breaks
    this or the format is a DataFormatError naming the file and line.
    """
    lanes, run_times, _ = read_prediction_lines(path, records)
    return lanes, run_times


def read_prediction_kinds(path: str, records: Sequence[LaneRecord]) -> list[list[int] | None]:
    """Each record's predicted lane kinds (``"categories"``, parallel to its lanes; None on a
    line without them), in the records' order, from a prediction json-lines file."""
    return read_prediction_lines(path, records)[2]


def read_prediction_lines(path: str, records: Sequence[LaneRecord]
                          ) -> tuple[list[list[np.ndarray]], list[float], list[list[int] | None]]:
    """``read_prediction_file``'s lanes and run times, and ``read_prediction_kinds``' kinds: a
    ``"categories"`` that is not one OpenLane id per lane is a DataFormatError naming the lane."""
    index = {record.img_name: i for i, record in enumerate(records)}
    lanes: list[list[np.ndarray] | None] = [None] * len(records)
    run_times = [0.0] * len(records)
    kinds: list[list[int] | None] = [None] * len(records)
    for line_no, item in json_lines(path):
        missing = [key for key in ("raw_file", "lanes", "run_time") if key not in item]
        if missing:
            raise DataFormatError(path, line_no, f"missing key(s) {missing}")
        raw_file, rows, run_time = item["raw_file"], item["lanes"], item["run_time"]
        i = index.get(relative_name(raw_file)) if isinstance(raw_file, str) else None
        if i is None:
            raise DataFormatError(path, line_no, f"image {raw_file!r} is not in the ground truth")
        if lanes[i] is not None:
            raise DataFormatError(path, line_no, f"image {raw_file!r} appears twice in the predictions")
        h_samples = records[i].h_samples
        if not isinstance(rows, list):
            raise DataFormatError(path, line_no,
                                  f"image {raw_file!r}: lanes is {short_repr(rows)}, expected a list of lanes")
        for j, xs in enumerate(rows):
            _require_numbers(xs, path, line_no, f"image {raw_file!r}: predicted lane {j}")
            if len(xs) != len(h_samples):
                raise DataFormatError(path, line_no, f"image {raw_file!r}: predicted lane {j} has {len(xs)} values, "
                                                     f"expected len(h_samples) = {len(h_samples)}")
        if number_problem(run_time) is not None:
            raise DataFormatError(path, line_no, f"image {raw_file!r}: run_time {run_time!r} is not a number")
        if "categories" in item:
            problem = categories_problem(item["categories"], len(rows))
            if problem is not None:
                raise DataFormatError(path, line_no, f"image {raw_file!r}: {problem}")
            kinds[i] = list(item["categories"])
        lanes[i] = [row_points(xs, h_samples) for xs in rows]
        run_times[i] = float(run_time)
    absent = [record.img_name for record, found in zip(records, lanes) if found is None]
    if absent:
        raise DataFormatError(path, None, f"{len(absent)} ground-truth image(s) have no prediction, e.g. {absent[0]!r}")
    return lanes, run_times, kinds


def read_predictions(records: Sequence[LaneRecord], source: str) -> list[list[np.ndarray]]:
    """The predicted lanes of each record from ``<source>/predictions.json`` (or the file
    ``source``): ``read_prediction_file`` without the run times."""
    path = os.path.join(source, "predictions.json") if os.path.isdir(source) else source
    return read_prediction_file(path, records)[0]


def accuracy_evaluator(records: Sequence[LaneRecord]) -> AccuracyEvaluator:
    """``(predictions (per record, its pixel lanes), run times in ms or None: 0) -> metrics``:
    LaneEval over the records' lanes at their h_samples, with ``"metric"`` (the accuracy)."""
    h_samples = [list(record.h_samples) for record in records]
    ground_truth = [label_rows(record.lanes, record.h_samples) for record in records]

    def evaluate(predictions: Sequence[Sequence[np.ndarray]], run_times_ms: Sequence[float] | None = None) -> dict:
        rows = [label_rows(lanes, h) for lanes, h in zip(predictions, h_samples, strict=True)]
        results = tusimple_metric(rows, ground_truth, h_samples, run_times_ms)
        return {"metric": float(results["accuracy"]), **results}

    return evaluate


class TuSimple(Benchmark):
    """TuSimple accuracy (LaneEval) as the metric; ``predictions.json`` with x at each image's
    h_samples."""

    name = "tusimple"
    splits = tuple(SPLIT_FILES)

    def _read_split(self, split: str, training: bool) -> list[LaneRecord]:
        return load_tusimple(self.data_root, split, self.cache_dir, self.image_size)

    def pixel_evaluator(self, records: Sequence[LaneRecord]) -> AccuracyEvaluator:
        return accuracy_evaluator(records)

    def _rows(self, record: LaneRecord) -> Sequence[int]:
        """The rows a record's lanes are written at: its h_samples, else every
        PREDICTION_ROW_STEP rows from its crop down (an image without them)."""
        ori_h, ori_w = self.size_of(record)
        return record.h_samples or range(self.crop(ori_h, ori_w), ori_h, PREDICTION_ROW_STEP)

    def prediction_points(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[np.ndarray]:
        ori_h, ori_w = self.size_of(record)
        rows = self._rows(record)
        return [row_points(lane.to_tusimple(rows, ori_w, ori_h), rows) for lane in lanes]

    def prediction_categories(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[int]:
        return [lane.category for lane in lanes]  # every lane is written, absent rows as -2

    def write_predictions(self, records: Sequence[LaneRecord], predictions: Sequence[Sequence[Lane]],
                          output_dir: str, run_times_ms: Sequence[float] | None = None) -> None:
        """One ``predictions.json``: x at each record's ``_rows``; ``run_time`` 0 where not measured;
        ``categories`` on every line when the lanes have kinds."""
        kinds = any(has_kinds(lanes) for lanes in predictions)
        lines = []
        for i, (record, lanes) in enumerate(zip(records, predictions, strict=True)):
            ori_h, ori_w = self.size_of(record)
            lines.append(tusimple_json_line(record.img_name, lanes, self._rows(record),
                                            run_times_ms[i] if run_times_ms else 0, ori_w, ori_h, kinds))
        atomic_write_text(os.path.join(output_dir, "predictions.json"), "".join(line + "\n" for line in lines))

    read_predictions = staticmethod(read_predictions)
