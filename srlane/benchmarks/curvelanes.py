"""CurveLanes: its layout, its ``.lines.json`` labels and predictions, and its official F1.

::

    <root>/train/images/<hash>.jpg   <root>/train/labels/<hash>.lines.json   <root>/train/train.txt
    <root>/valid/images/<hash>.jpg   <root>/valid/labels/<hash>.lines.json   <root>/valid/valid.txt
    <root>/test/images/<hash>.jpg                                            <root>/test/test.txt

A list line is the image path relative to the root. A label is ``{"Lines": [[{"x": "1021.4",
"y": "1439.0"}, ...], ...]}`` in the image's pixels (coordinates as strings or numbers, points in
any order, a lane may have one point). Image sizes vary (2560x1440, 1570x660, 1280x720, ...):
each record carries its image's size, read from the file header, and the crop is configured per
size (``cut_heights``). Records keep every labelled lane (1-point lanes count for the metric);
training uses the lanes with at least 2 points. Papers score the ``valid`` split (test labels
are not public) with up to 16 lanes per image.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from srlane.benchmarks.base import Benchmark, Evaluator, check_count
from srlane.data.cache import cached_records
from srlane.data.records import DataFormatError, LaneRecord, relative_name, require_image
from srlane.evaluation.curvelanes import (CurveLanesEvaluator, CurveLanesFormatError, image_size, label_path,
                                          read_lines_json)
from srlane.fileio import atomic_write_text, line_fields
from srlane.lanes import Lane

SPLITS = ("train", "valid", "test")
PREDICTION_ROW_STEP = 8  # prediction files sample each lane every 8 rows from the crop down, as CULane's


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


def read_label(path: str) -> list[np.ndarray]:
    """Lanes of a ``.lines.json`` label as float32 ``(N, 2)`` arrays, bottom point first."""
    return [lane[np.argsort(-lane[:, 1], kind="stable")].astype(np.float32) for lane in read_lines_json(path)]


def label_text(lanes: Sequence[np.ndarray], digits: int = 3) -> str:
    """A ``.lines.json`` file: coordinates as strings with ``digits`` decimals, as the official labels."""
    return json.dumps({"Lines": [[{"x": f"{x:.{digits}f}", "y": f"{y:.{digits}f}"} for x, y in np.asarray(lane).tolist()]
                                 for lane in lanes]})


def parse_list(data_root: str, list_path: str, labelled: bool) -> list[LaneRecord]:
    """Records of a list file: image, size and (when ``labelled``) the label's lanes."""
    data_root = os.path.abspath(data_root)
    records = []
    for line_no, fields in line_fields(list_path):
        img_name = relative_name(fields[0])
        img_path = os.path.join(data_root, img_name)
        require_image(img_path, list_path, line_no)
        lanes: list[np.ndarray] = []
        if labelled:
            try:
                path = label_path(data_root, img_name)
            except ValueError as err:
                raise DataFormatError(list_path, line_no, str(err)) from None
            if not os.path.isfile(path):
                raise DataFormatError(list_path, line_no, f"label not found: {path}")
            try:
                lanes = read_label(path)
            except CurveLanesFormatError as err:
                raise DataFormatError(list_path, line_no, f"malformed label: {err}") from None
        try:
            width, height = image_size(img_path)
        except ValueError as err:
            raise DataFormatError(list_path, line_no, str(err)) from None
        records.append(LaneRecord(img_path=img_path, img_name=img_name, lanes=lanes, img_size=(height, width)))
    return records


def load_curvelanes(data_root: str, split: str, cache_dir: str | None = None) -> list[LaneRecord]:
    """LaneRecords of a CurveLanes split (``train``, ``valid``, ``test`` or a list path); the
    ``test`` split has no labels."""
    list_path = split_list_path(data_root, split)
    labelled = split != "test"
    return cached_records("curvelanes", data_root, split, [list_path],
                          lambda: parse_list(data_root, list_path, labelled), cache_dir)


def prediction_points(lane: Lane, height: int, width: int, crop_rows: int) -> np.ndarray:
    """A decoded lane in an image's pixels, every PREDICTION_ROW_STEP rows from the crop down."""
    return lane.to_culane(width, height, y_start=crop_rows, y_step=PREDICTION_ROW_STEP)


class CurveLanes(Benchmark):
    """CurveLanes F1 (official: 224x224 canvas, width 5, IoU > 0.5) over images of mixed sizes;
    prediction files ``<image name without extension>.lines.json``."""

    name = "curvelanes"
    splits = SPLITS
    fixed_size = False

    def _read_split(self, split: str, training: bool) -> list[LaneRecord]:
        return load_curvelanes(self.data_root, split, self.cache_dir)

    def _points(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[np.ndarray]:
        height, width = self.size_of(record)
        points = (prediction_points(lane, height, width, self.crop(height, width)) for lane in lanes)
        return [pts for pts in points if len(pts) >= 2]

    def evaluator(self, records: Sequence[LaneRecord]) -> Evaluator:
        def evaluate(predictions: Sequence[Sequence[Lane]]) -> dict:
            check_count(predictions, records)
            metric = CurveLanesEvaluator()
            for record, lanes in zip(records, predictions):
                height, width = self.size_of(record)
                metric.add(record.lanes, self._points(record, lanes), width, height)
            return metric.summary()

        return evaluate

    def write_predictions(self, records: Sequence[LaneRecord], predictions: Sequence[Sequence[Lane]],
                          output_dir: str, run_times_ms: Sequence[float] | None = None) -> None:
        for record, lanes in zip(records, predictions, strict=True):
            path = os.path.join(output_dir, os.path.splitext(record.img_name)[0] + ".lines.json")
            atomic_write_text(path, label_text(self._points(record, lanes)))
