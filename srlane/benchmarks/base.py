"""What every benchmark does: read a split into records, write predictions in its own format and
read them back, score them with its official metric."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from srlane.data.crop import Crop
from srlane.data.label_checks import good_labels
from srlane.data.records import LaneRecord
from srlane.evaluation.categories import category_metrics
from srlane.evaluation.culane import CULaneEvaluator
from srlane.lanes import Lane, has_kinds

Evaluator = Callable[[Sequence[Sequence[Lane]]], dict]
# (pixel lanes per record) -> metrics; a benchmark that ``scores_categories`` also takes each
# lane's category: (pixel lanes per record, their categories per record) -> metrics
PixelEvaluator = Callable[..., dict]


def check_count(predictions: Sequence, records: Sequence[LaneRecord]) -> None:
    """ValueError unless there is one prediction list per record."""
    if len(predictions) != len(records):
        raise ValueError(f"{len(predictions)} predictions for {len(records)} images")


def headline_counts(metrics: Mapping[str, object]) -> Mapping[str, object]:
    """The tp/fp/fn/f1 dict of a metrics entry: itself (CurveLanes, TuSimple), its IoU 0.5
    result or its first result (CULane)."""
    if "f1" in metrics:
        return metrics
    if isinstance(metrics.get("0.5"), Mapping):
        return metrics["0.5"]
    return next(v for v in metrics.values() if isinstance(v, Mapping) and "f1" in v)


class Benchmark:
    """One benchmark's layout, prediction format and metric.

    Args:
        data_root: the benchmark's folder.
        crop: rows dropped from the top of each image (where prediction files start).
        image_size: ``(height, width)`` of the benchmark's images when they all have one size (CULane,
            TuSimple: the readers leave ``LaneRecord.img_size`` empty and lanes are scored on
            that canvas); None when each record carries its own (CurveLanes).
        cache_dir: where parsed annotations are cached (None: ``datasets/.cache``).
        on_bad_label: "error" (a label that fails the checks of ``srlane.data.label_checks``
            stops the run) or "skip" (that training image is left out, reported in one line).
    """

    name = "benchmark"
    splits: tuple[str, ...] = ()
    fixed_size = True  # all images of one size: ori_img_h x ori_img_w of the config
    options: tuple[str, ...] = ()  # further dataset config keys the constructor takes
    scores_categories = False  # whether the metric reads each lane's category (OpenLane)
    category_iou = 0.5  # lanes are paired for the kind metrics at the headline metric's IoU threshold

    def __init__(self, data_root: str, crop: Crop, image_size: tuple[int, int] | None = None,
                 cache_dir: str | None = None, on_bad_label: str = "error") -> None:
        self.data_root, self.crop, self.image_size, self.cache_dir = data_root, crop, image_size, cache_dir
        self.on_bad_label = on_bad_label

    def read_split(self, split: str, training: bool, report: Callable[[str], None] | None = None) -> list[LaneRecord]:
        """The records of ``split`` (FileNotFoundError naming the root when it does not exist)
        whose labels pass the checks; an image whose label does not stops the run or, in a
        training split under ``on_bad_label="skip"``, is left out and ``report``-ed in one line
        (``good_labels``)."""
        if not os.path.isdir(self.data_root):
            raise FileNotFoundError(
                f"dataset.data_root {self.data_root!r} does not exist (resolved {os.path.abspath(self.data_root)}); "
                "fill it as datasets/README.md says or point dataset.data_root elsewhere (--set dataset.data_root=...)"
            )
        return good_labels(self._read_split(split, training), self.on_bad_label, training, report)

    def _read_split(self, split: str, training: bool) -> list[LaneRecord]:
        """The split's records as the reader made them, those with a ``bad_label`` included."""
        raise NotImplementedError

    def size_of(self, record: LaneRecord) -> tuple[int, int]:
        """``(height, width)`` in which the record's lanes are written: the image's own size when
        the record has one (CurveLanes, any image given to predict), else the benchmark's."""
        if record.img_size is not None:
            return record.img_size
        if self.image_size is None:
            raise ValueError(f"{record.img_path}: the record carries no image size")
        return self.image_size

    def evaluator(self, records: Sequence[LaneRecord]) -> Evaluator:
        """``predictions (one list of Lanes per record) -> metrics`` with ``"metric"``, the number
        that picks the best checkpoint; built once per split (annotation rasters are kept).

        The lanes are scored as their prediction files hold them (``prediction_points``) by the
        records' ``pixel_evaluator``, the code that scores prediction files read back with
        ``read_predictions``: scoring memory and scoring the written files agree exactly.
        """
        score = self.pixel_evaluator(records)

        def evaluate(predictions: Sequence[Sequence[Lane]]) -> dict:
            check_count(predictions, records)
            points = [self.prediction_points(record, lanes) for record, lanes in zip(records, predictions)]
            if not self.scores_categories:
                return score(points)
            return score(points, [self.prediction_categories(r, lanes) for r, lanes in zip(records, predictions)])

        return evaluate

    def pixel_evaluator(self, records: Sequence[LaneRecord]) -> PixelEvaluator:
        """``predictions (per record, its lanes as (N, 2) pixel arrays) -> metrics`` with
        ``"metric"``: the official metric over the records' annotations; where the benchmark
        ``scores_categories``, called with the lanes' categories too (``prediction_categories``,
        ``read_prediction_categories``), in the order of the lanes."""
        raise NotImplementedError

    def iou_evaluator(self, records: Sequence[LaneRecord], iou_thresholds: Sequence[float]) -> CULaneEvaluator | None:
        """The records' official per-lane IoU matching at several thresholds (``score_images``,
        ``summarize``, ``image_matches``: which lanes are true or false positives), over the
        pixel lanes ``prediction_points`` gives; None where the benchmark's metric has none
        (TuSimple's is per point; CurveLanes' is not exposed per lane)."""
        return None

    def category_evaluator(self, records: Sequence[LaneRecord]) -> Evaluator | None:
        """``predictions -> category metrics`` (``srlane.evaluation.categories``: accuracy,
        per-kind F1, confusion matrix) over the pairs ``iou_evaluator`` matches at ``category_iou``,
        an empty dict when no lane has a predicted kind; None when the records carry no lane kinds
        or the benchmark has no per-lane matching."""
        if not records or any(record.lane_categories is None for record in records):
            return None
        matcher = self.iou_evaluator(records, (self.category_iou,))
        if matcher is None:
            return None

        def evaluate(predictions: Sequence[Sequence[Lane]]) -> dict:
            check_count(predictions, records)
            if not any(has_kinds(lanes) for lanes in predictions):
                return {}
            images = []
            for index, (record, lanes) in enumerate(zip(records, predictions)):
                matches = matcher.image_matches(index, self.prediction_points(record, lanes), self.category_iou)
                images.append((record.lane_categories, self.prediction_categories(record, lanes), matches.pairs))
            return category_metrics(images)

        return evaluate

    def prediction_points(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[np.ndarray]:
        """The record's lanes as ``write_predictions`` writes them, read back: ``(N, 2)`` pixel
        arrays, the very values ``read_predictions`` gives for the written file (the samples
        rounded as the file prints them, ``srlane.lanes.printed``), computed without the file."""
        raise NotImplementedError

    def prediction_categories(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[int]:
        """The category (``Lane.category``) of each lane ``prediction_points`` gives, in its order:
        what the prediction file writes (benchmarks that ``scores_categories``)."""
        raise NotImplementedError

    def write_predictions(self, records: Sequence[LaneRecord], predictions: Sequence[Sequence[Lane]],
                          output_dir: str, run_times_ms: Sequence[float] | None = None) -> None:
        """The prediction files of ``records`` under ``output_dir``, in the benchmark's format
        (``run_times_ms``: per image, for formats that record it)."""
        raise NotImplementedError

    def read_predictions(self, records: Sequence[LaneRecord], source: str) -> list[list[np.ndarray]]:
        """The predicted lanes of each record, in the records' order, as ``(N, 2)`` pixel arrays,
        from the prediction files under ``source`` (the folder ``write_predictions`` wrote; a
        benchmark with one prediction file also takes that file). A malformed file is a
        DataFormatError naming the file and line."""
        raise NotImplementedError

    def read_prediction_categories(self, records: Sequence[LaneRecord], source: str) -> list[list[int]]:
        """The category of each lane ``read_predictions`` gives, from the same files (benchmarks
        that ``scores_categories``)."""
        raise NotImplementedError
