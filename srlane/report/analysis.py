"""The numbers of a report, from saved raw outputs: the metrics at the config's thresholds, the
metric, precision and recall against the confidence threshold (each decoded again, as
``tools/redecode.py`` does), the F1 against the IoU threshold and the worst images with their
true positive, false positive and false negative lanes."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from srlane.benchmarks import Benchmark
from srlane.benchmarks.base import headline_counts
from srlane.data.records import LaneRecord
from srlane.evaluation.culane import LaneMatches, threshold_key
from srlane.inference.raw import RawWriter, decode_rows, split_rows
from srlane.lanes import Lane
from srlane.models.decode import build_decoder

CONF_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95
IOU_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))  # 0.1 ... 0.9
GALLERY_IOU = 0.5  # the IoU at which the gallery's lanes are true positives (CULane's metric)
Progress = Callable[[int], object]


@dataclasses.dataclass
class Outputs:
    """A split's raw outputs, one row per record (``rows``: the raw index's rows, for the crops)."""

    records: list[LaneRecord]
    outputs: np.ndarray
    rows: list[dict]


def split_outputs(outputs: np.ndarray, index: Mapping[str, Any], records: Sequence[LaneRecord],
                  split: str) -> Outputs:
    """The rows of a raw folder (``load_raw``) for the records of ``split``, in their order."""
    order = split_rows(index["rows"], records, split)
    return Outputs(list(records), outputs[order], [index["rows"][i] for i in order])


def writer_outputs(records: Sequence[LaneRecord], writer: RawWriter) -> Outputs:
    """The raw outputs a writer collected (``RawWriter.of`` predictions made with ``keep_raw``),
    one per record, in order."""
    return Outputs(list(records), np.stack(writer.outputs), writer.rows)


@dataclasses.dataclass
class GalleryImage:
    """One of the worst images: its record, the scored predicted lanes (pixels) and the matches."""

    index: int
    record: LaneRecord
    predictions: list[np.ndarray]
    matches: LaneMatches

    @property
    def counts(self) -> dict[str, int]:
        """``{"tp", "fp", "fn"}`` of the image."""
        tp = int(self.matches.prediction.sum())
        return {"tp": tp, "fp": len(self.matches.prediction) - tp, "fn": len(self.matches.annotation) - tp}


def decode(outputs: Outputs, cfg: Mapping[str, Any], progress: Progress | None = None,
           **overrides: Any) -> list[list[Lane]]:
    """The lanes of every record, decoded with the config's decoder and ``overrides``."""
    return decode_rows(outputs.outputs, outputs.rows, build_decoder(cfg, **overrides), progress)


def curve_point(threshold: float, metrics: Mapping[str, Any], lanes: int) -> dict:
    """One point of the threshold curve: the metric, precision, recall and F1 where defined."""
    counts = headline_counts(metrics)
    return {"conf_threshold": threshold, "metric": float(metrics["metric"]), "lanes": lanes,
            **{key: counts.get(key) for key in ("precision", "recall", "f1")}}


def threshold_curve(benchmark: Benchmark, outputs: Outputs, cfg: Mapping[str, Any],
                    thresholds: Sequence[float] = CONF_THRESHOLDS, progress: Progress | None = None,
                    step: Callable[[str], object] | None = None) -> list[dict]:
    """``curve_point`` at each confidence threshold: the outputs decoded again with it (the
    config's NMS) and scored by the benchmark's evaluator. ``progress(n)`` per decoded chunk
    and scored image; ``step(text)`` names each threshold."""
    evaluate = benchmark.evaluator(outputs.records)
    curve = []
    for threshold in thresholds:
        if step is not None:
            step(f"conf threshold {threshold:g}")
        lanes = decode(outputs, cfg, progress, conf_threshold=threshold)
        curve.append(curve_point(threshold, evaluate(lanes), sum(map(len, lanes))))
        if progress is not None:
            progress(len(lanes))
    return curve


def scored_points(benchmark: Benchmark, records: Sequence[LaneRecord],
                  lanes: Sequence[Sequence[Lane]]) -> list[list[np.ndarray]]:
    """Each record's lanes as the benchmark scores them (its prediction files' points)."""
    return [benchmark.prediction_points(record, image) for record, image in zip(records, lanes, strict=True)]


def iou_analysis(benchmark: Benchmark, records: Sequence[LaneRecord], points: Sequence[Sequence[np.ndarray]],
                 count: int, thresholds: Sequence[float] = IOU_THRESHOLDS,
                 progress: Progress | None = None) -> tuple[list[dict], list[GalleryImage]] | None:
    """The F1 (tp, fp, fn, precision, recall) at each IoU threshold and the ``count`` images with
    the most false positive and false negative lanes at ``GALLERY_IOU`` (ties: list order;
    images without an error left out); None where the benchmark has no per-lane IoU."""
    evaluator = benchmark.iou_evaluator(records, sorted({*thresholds, GALLERY_IOU}))
    if evaluator is None:
        return None
    scores = evaluator.score_images(list(points), progress)
    totals = evaluator.summarize(scores)
    curve = [{"iou": float(t), **totals[threshold_key(t)]} for t in thresholds]
    tp = scores.tp[:, list(evaluator.thresholds).index(GALLERY_IOU)]
    errors = scores.num_pred + scores.num_anno - 2 * tp
    worst = [int(i) for i in np.argsort(-errors, kind="stable")[:count] if errors[i] > 0]
    gallery = [GalleryImage(i, records[i], list(points[i]), evaluator.image_matches(i, points[i], GALLERY_IOU))
               for i in worst]
    return curve, gallery
