"""TuSimple: its official layout (json-lines label files next to ``clips/``), its prediction
file (``predictions.json``, one json line per image) and the official LaneEval accuracy.

Each label line: ``{"lanes": [[x or -2, ...], ...], "h_samples": [y, ...], "raw_file": "clips/..."}``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence

import numpy as np

from srlane.benchmarks.base import Benchmark, Evaluator, check_count
from srlane.data.cache import cached_records
from srlane.data.records import DataFormatError, LaneRecord, clean_lane, relative_name, require_image
from srlane.evaluation.tusimple import tusimple_metric
from srlane.fileio import atomic_write_text
from srlane.lanes import Lane, tusimple_json_line

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


def parse_label_line(text: str, path: str, line_no: int) -> tuple[str, list[list[float]], list[int]]:
    """One json line -> (raw_file, lanes as xs per h_sample, h_samples), checked."""
    try:
        item = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, line_no, f"invalid json: {err}") from None
    for key in ("raw_file", "lanes", "h_samples"):
        if key not in item:
            raise DataFormatError(path, line_no, f"missing key {key!r}")
    h_samples, lanes = item["h_samples"], item["lanes"]
    numbers = [h_samples, *lanes]
    if not all(isinstance(seq, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seq)
               for seq in numbers):
        raise DataFormatError(path, line_no, "lanes and h_samples must be lists of numbers")
    for i, lane in enumerate(lanes):
        if len(lane) != len(h_samples):
            raise DataFormatError(path, line_no, f"lane {i} has {len(lane)} values for {len(h_samples)} h_samples")
    return item["raw_file"], lanes, h_samples


def parse_label_file(data_root: str, path: str) -> list[LaneRecord]:
    """Records of one label file; -2 (any negative x) marks a row where the lane is absent."""
    data_root = os.path.abspath(data_root)
    records = []
    with open(path) as f:
        for line_no, text in enumerate(f, 1):
            if not text.strip():
                continue
            raw_file, lanes, h_samples = parse_label_line(text, path, line_no)
            img_name = relative_name(raw_file)
            img_path = os.path.join(data_root, img_name)
            require_image(img_path, path, line_no)
            ys = np.asarray(h_samples, dtype=np.float32)
            cleaned = [clean_lane(np.stack([np.asarray(xs, dtype=np.float32), ys], axis=1)) for xs in lanes]
            records.append(LaneRecord(
                img_path=img_path,
                img_name=img_name,
                lanes=[lane for lane in cleaned if lane is not None],
                h_samples=tuple(int(y) for y in h_samples),
            ))
    return records


def load_tusimple(data_root: str, split: str, cache_dir: str | None = None) -> list[LaneRecord]:
    """LaneRecords of a TuSimple split: train (0313+0601), val (0531), trainval, test."""
    paths = split_files(data_root, split)

    def build() -> list[LaneRecord]:
        return [record for path in paths for record in parse_label_file(data_root, path)]

    return cached_records("tusimple", data_root, split, paths, build, cache_dir)


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


class TuSimple(Benchmark):
    """TuSimple accuracy (LaneEval) as the metric; ``predictions.json`` with x at each image's
    h_samples."""

    name = "tusimple"
    splits = tuple(SPLIT_FILES)

    def _read_split(self, split: str, training: bool) -> list[LaneRecord]:
        return load_tusimple(self.data_root, split, self.cache_dir)

    def evaluator(self, records: Sequence[LaneRecord]) -> Evaluator:
        ground_truth = [{"raw_file": r.img_name, "lanes": label_rows(r.lanes, r.h_samples), "h_samples": list(r.h_samples)}
                        for r in records]
        ori_h, ori_w = self.image_size

        def evaluate(predictions: Sequence[Sequence[Lane]]) -> dict:
            check_count(predictions, records)
            preds = [{"raw_file": r.img_name, "run_time": 0,
                      "lanes": [lane.to_tusimple(r.h_samples, ori_w, ori_h) for lane in lanes]}
                     for lanes, r in zip(predictions, records)]
            results = tusimple_metric(preds, ground_truth)
            return {"metric": float(results["accuracy"]), **results}

        return evaluate

    def write_predictions(self, records: Sequence[LaneRecord], predictions: Sequence[Sequence[Lane]],
                          output_dir: str, run_times_ms: Sequence[float] | None = None) -> None:
        """One ``predictions.json``: x at each record's h_samples (an image without them: every
        PREDICTION_ROW_STEP rows from its crop down); ``run_time`` 0 where not measured."""
        lines = []
        for i, (record, lanes) in enumerate(zip(records, predictions, strict=True)):
            ori_h, ori_w = self.size_of(record)
            rows = record.h_samples or range(self.crop(ori_h, ori_w), ori_h, PREDICTION_ROW_STEP)
            lines.append(tusimple_json_line(record.img_name, lanes, rows, run_times_ms[i] if run_times_ms else 0,
                                            ori_w, ori_h))
        atomic_write_text(os.path.join(output_dir, "predictions.json"), "".join(line + "\n" for line in lines))
