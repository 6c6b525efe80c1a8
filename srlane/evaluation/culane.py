"""The official CULane F1 (width 30, IoU > threshold, 590 x 1640 canvas), exact and fast.

Per image, every lane is drawn as the official C++ tool draws it (``spline.sample_lanes`` and
``raster.Rasterizer``), the IoU matrix of annotation and predicted lanes is computed once, and a
one-to-one assignment maximising total IoU serves every IoU threshold and every category.

Documented deviations from the official tool (spec: evaluation.md): repeated consecutive points
are dropped before the spline; a pair of lanes that are both empty on the canvas has IoU 0 (not
NaN); the assignment is exact (the official Kuhn-Munkres has a 0.01 tolerance). Reading the
``.lines.txt`` files is ``srlane.benchmarks.culane``'s.
"""
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from srlane.evaluation.kuhn_munkres import official_assign
from srlane.evaluation.raster import LaneMask, Rasterizer, mask_iou
from srlane.evaluation.spline import sample_lanes_flat

MF1_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
_CHUNK_IMAGES = 256


@dataclass
class LaneMatches:
    """Which lanes of one image the assignment matched at an IoU threshold: ``annotation`` and
    ``prediction`` are boolean per lane (True: a true positive pair; an unmatched annotation is a
    false negative, an unmatched prediction a false positive); ``iou`` per prediction, the IoU
    of its assigned annotation (0 when none); ``pairs`` the ``(annotation, prediction)`` index of
    each true positive pair, ``(K, 2)``."""

    annotation: np.ndarray
    prediction: np.ndarray
    iou: np.ndarray
    pairs: np.ndarray


@dataclass
class ImageScores:
    """Per-image results: tp for each threshold, lane counts and the IoUs of the assigned pairs."""

    tp: np.ndarray
    num_anno: np.ndarray
    num_pred: np.ndarray
    matched_iou: list[np.ndarray]


def iou_matrix(annos: list[LaneMask], preds: list[LaneMask]) -> np.ndarray:
    """IoU of every (annotation, prediction) pair of one image."""
    out = np.zeros((len(annos), len(preds)), dtype=np.float64)
    lanes = [m for m in annos + preds if m.area]
    if not lanes:
        return out
    if any(m.mask is not None for m in lanes):
        for i, a in enumerate(annos):
            for j, p in enumerate(preds):
                out[i, j] = mask_iou(a, p)
        return out
    y0 = min(m.bbox[1] for m in lanes)
    y1 = max(m.bbox[3] for m in lanes)
    left = np.ones((len(annos) + len(preds), y1 - y0 + 1), dtype=np.int16)
    right = np.zeros_like(left)
    for i, m in enumerate(annos + preds):
        if m.area:
            left[i, m.bbox[1] - y0:m.bbox[3] - y0 + 1] = m.left
            right[i, m.bbox[1] - y0:m.bbox[3] - y0 + 1] = m.right
    na = len(annos)
    width = (np.minimum(right[:na, None], right[None, na:]).astype(np.int32)
             - np.maximum(left[:na, None], left[None, na:]) + 1)
    inter = np.maximum(width, 0).sum(axis=-1)
    area = np.array([m.area for m in annos + preds], dtype=np.int64)
    union = area[:na, None] + area[None, na:] - inter
    np.divide(inter, union, out=out, where=union > 0)
    return out


def assign(iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (annotation, prediction) pairs of the one-to-one assignment maximising total IoU."""
    if iou.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return linear_sum_assignment(iou, maximize=True)


def match_image(iou: np.ndarray, thresholds: np.ndarray, official: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """tp per threshold (IoU > threshold) of the assignment maximising total IoU (``official``:
    the tool's own Kuhn-Munkres, ``kuhn_munkres.official_assign``); also the assigned IoUs."""
    if iou.size == 0:
        return np.zeros(len(thresholds), dtype=np.int64), np.zeros(0)
    rows, cols = official_assign(iou) if official else assign(iou)
    matched = iou[rows, cols]
    return (matched[:, None] > thresholds[None, :]).sum(axis=0), matched


def same_kind_only(iou: np.ndarray, anno_kinds: Sequence[int], pred_kinds: Sequence[int]) -> np.ndarray:
    """``iou`` with the pairs of different kinds (lane categories) set to 0: they cannot match."""
    same = np.asarray(anno_kinds, np.int64).reshape(-1, 1) == np.asarray(pred_kinds, np.int64).reshape(1, -1)
    return np.where(same, iou, 0.0)


_WORKER_RASTERIZER: dict[tuple, Rasterizer] = {}


def _rasterizer(width: int, img_shape: tuple[int, int]) -> Rasterizer:
    """One rasterizer (with its stamp cache) per process and geometry."""
    key = (width, tuple(img_shape))
    if key not in _WORKER_RASTERIZER:
        _WORKER_RASTERIZER[key] = Rasterizer(width, img_shape)
    return _WORKER_RASTERIZER[key]


def rasterize_lanes(lanes: list[np.ndarray], width: int, img_shape: tuple[int, int]) -> list[LaneMask]:
    """Official drawing of many lanes (lanes with < 2 points give empty masks that match nothing)."""
    return _rasterizer(width, img_shape).rasterize_flat(*sample_lanes_flat(lanes))


def _init_worker(width: int, img_shape: tuple[int, int], stamps: dict[str, np.ndarray]) -> None:
    """Pool initializer: start with the stamps the parent has collected."""
    _rasterizer(width, img_shape).stamps.absorb(stamps)


def _score_chunk(task: tuple) -> tuple:
    """Score a chunk of images; rasterises the annotations too when they are not given as masks.

    Returns per-image tp and matched IoUs, the annotation masks when it made them, and the
    stamps it drew (for the parent to pass to the next pool).
    """
    width, img_shape, thresholds, annos, preds, anno_kinds, pred_kinds, official = task
    cache = _rasterizer(width, img_shape).stamps
    generation, known = cache.generation, len(cache)
    flat_preds = [lane for image in preds for lane in image]
    pred_masks = rasterize_lanes(flat_preds, width, img_shape)
    new_anno_masks = None
    if annos and not isinstance(annos[0], _MaskList):
        flat = rasterize_lanes([lane for image in annos for lane in image], width, img_shape)
        new_anno_masks, pos = [], 0
        for image in annos:
            new_anno_masks.append(_MaskList(flat[pos:pos + len(image)]))
            pos += len(image)
        annos = new_anno_masks
    tp = np.zeros((len(preds), len(thresholds)), dtype=np.int64)
    matched, pos = [], 0
    for i, (anno, pred) in enumerate(zip(annos, preds)):
        image_preds = pred_masks[pos:pos + len(pred)]
        iou = iou_matrix(list(anno), image_preds)
        pos += len(pred)
        if official:  # two lanes both off the canvas: 0 / 0, as the tool computes it
            iou[np.ix_([m.area == 0 for m in anno], [m.area == 0 for m in image_preds])] = np.nan
        if anno_kinds is not None:
            iou = same_kind_only(iou, anno_kinds[i], pred_kinds[i])
        tp[i], ious = match_image(iou, thresholds, official)
        matched.append(ious)
    return tp, matched, new_anno_masks, cache.export(known if cache.generation == generation else 0)


class _MaskList(list):
    """The rasterised annotation lanes of one image (distinguishes cached masks from raw points)."""


class CULaneEvaluator:
    """Official CULane F1 over a fixed set of annotated images, at several thresholds and per category.

    ``annotations``: per image, the lanes as float ``(N, 2)`` pixel arrays. ``categories``: name ->
    image indices. The rasterised annotation lanes are cached after the first ``evaluate`` call,
    so repeated calls only rasterise predictions. ``workers``: processes of the pool made for
    each call (None: all cores; 0 or 1: in this process). ``lane_kinds``: per image, a kind
    (category id) per annotation lane; then ``score_images`` takes the predictions' kinds too and
    only lanes of one kind can match (OpenLane's default); None: kinds play no part (CULane).
    ``official_matching``: match as the C++ tool does, not exactly (``kuhn_munkres``; two lanes
    both off the canvas have IoU NaN): the tool's counts on every image (OpenLane).
    """

    def __init__(self, annotations: list[list[np.ndarray]], categories: dict[str, list[int]] | None = None,
                 iou_thresholds=(0.5,), width: int = 30, img_shape: tuple[int, int] = (590, 1640),
                 workers: int | None = None, lane_kinds: Sequence[Sequence[int]] | None = None,
                 official_matching: bool = False):
        self.annotations = [[_as_points(lane, f"annotation of image {i}, lane {j}") for j, lane in enumerate(image)]
                            for i, image in enumerate(annotations)]
        self.thresholds = np.array(sorted(float(t) for t in iou_thresholds), dtype=np.float64)
        if len(self.thresholds) == 0 or np.any((self.thresholds < 0) | (self.thresholds >= 1)):
            raise ValueError(f"iou_thresholds must be in [0, 1), got {list(iou_thresholds)}")
        self.categories = {}
        for name, indices in (categories or {}).items():
            idx = np.asarray(indices, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= len(annotations)):
                raise ValueError(f"category {name!r} has image indices outside 0..{len(annotations) - 1}")
            self.categories[name] = idx
        self.width = width
        self.img_shape = tuple(img_shape)
        self.workers = os.cpu_count() if workers is None else workers
        self._anno_masks: list[_MaskList] | None = None
        self.official_matching = official_matching
        self.lane_kinds = None if lane_kinds is None else [tuple(int(k) for k in image) for image in lane_kinds]
        if self.lane_kinds is not None:
            _check_kinds(self.lane_kinds, self.annotations, "annotation")

    def score_images(self, predictions: list[list[np.ndarray]],
                     progress: Callable[[int], object] | None = None,
                     kinds: Sequence[Sequence[int]] | None = None) -> ImageScores:
        """Per-image tp (for every threshold), lane counts and assigned IoUs; ``progress(n)`` after
        each chunk of ``n`` images is scored (a tqdm bar's ``update``); ``kinds``: per image, a
        kind per predicted lane, required when the evaluator has ``lane_kinds`` (else unused)."""
        if len(predictions) != len(self.annotations):
            raise ValueError(f"got predictions for {len(predictions)} images, the evaluator has "
                             f"{len(self.annotations)} annotated images")
        preds = [[_as_points(lane, f"prediction of image {i}, lane {j}") for j, lane in enumerate(image)]
                 for i, image in enumerate(predictions)]
        if self.lane_kinds is not None:
            if kinds is None:
                raise ValueError("this evaluator matches lanes of one kind only: give the predictions' kinds")
            _check_kinds(kinds, preds, "prediction")
        annos = self._anno_masks if self._anno_masks is not None else self.annotations

        def part(values, s):
            return None if self.lane_kinds is None else values[s:s + _CHUNK_IMAGES]

        tasks = [(self.width, self.img_shape, self.thresholds, annos[s:s + _CHUNK_IMAGES], preds[s:s + _CHUNK_IMAGES],
                  part(self.lane_kinds, s), part(kinds, s), self.official_matching)
                 for s in range(0, len(preds), _CHUNK_IMAGES)]
        done = progress or (lambda n: None)
        if self.workers <= 1 or len(tasks) <= 1:
            results = [_score_chunk(t) for t in tasks]
            done(len(preds))
        else:
            stamps = _rasterizer(self.width, self.img_shape).stamps
            with ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)), initializer=_init_worker,
                                     initargs=(self.width, self.img_shape, stamps.export())) as pool:
                results = []
                for task, result in zip(tasks, pool.map(_score_chunk, tasks)):
                    results.append(result)
                    done(len(task[4]))
            for result in results:
                stamps.absorb(result[3])
        if self._anno_masks is None:
            self._anno_masks = [m for r in results for m in r[2]]
        tp = np.concatenate([r[0] for r in results]) if results else np.zeros((0, len(self.thresholds)), np.int64)
        return ImageScores(tp=tp, num_anno=np.array([len(a) for a in self.annotations], dtype=np.int64),
                           num_pred=np.array([len(p) for p in preds], dtype=np.int64),
                           matched_iou=[m for r in results for m in r[1]])

    def image_matches(self, index: int, prediction: list[np.ndarray], threshold: float = 0.5) -> LaneMatches:
        """The true positive, false positive and false negative lanes of image ``index`` for the
        lanes ``prediction``: the pairs of the assignment ``score_images`` counts, IoU > threshold."""
        annos = (list(self._anno_masks[index]) if self._anno_masks is not None
                 else rasterize_lanes(self.annotations[index], self.width, self.img_shape))
        preds = [_as_points(lane, f"prediction of image {index}, lane {j}") for j, lane in enumerate(prediction)]
        iou = iou_matrix(annos, rasterize_lanes(preds, self.width, self.img_shape))
        rows, cols = assign(iou)
        hit = iou[rows, cols] > threshold
        annotation, predicted = np.zeros(len(annos), bool), np.zeros(len(preds), bool)
        annotation[rows[hit]], predicted[cols[hit]] = True, True
        pred_iou = np.zeros(len(preds))
        pred_iou[cols] = iou[rows, cols]
        return LaneMatches(annotation, predicted, pred_iou, np.stack([rows[hit], cols[hit]], axis=1))

    def summarize(self, scores: ImageScores) -> dict:
        """Totals over all images and over each category (see ``CULaneEvaluator.evaluate``)."""
        result = self._totals(scores, np.arange(len(scores.tp)))
        if self.categories:
            result["categories"] = {name: self._totals(scores, idx) for name, idx in self.categories.items()}
        return result

    def evaluate(self, predictions: list[list[np.ndarray]]) -> dict:
        """``{"0.5": {"tp", "fp", "fn", "precision", "recall", "f1"}, ...}``, ``"mF1"`` (mean F1 over
        the thresholds, when several) and ``"categories": {name: {...}}``; undefined ratios are None.
        """
        return self.summarize(self.score_images(predictions))

    def _totals(self, scores: ImageScores, idx: np.ndarray) -> dict:
        tp_all = scores.tp[idx].sum(axis=0)
        num_pred, num_anno = int(scores.num_pred[idx].sum()), int(scores.num_anno[idx].sum())
        out = {}
        for threshold, tp in zip(self.thresholds, tp_all.tolist()):
            out[threshold_key(threshold)] = counts_to_metrics(tp, num_pred - tp, num_anno - tp)
        if len(self.thresholds) > 1:
            f1s = [v["f1"] for v in out.values()]
            out["mF1"] = None if None in f1s else float(np.mean(f1s))
        return out


def threshold_key(threshold: float) -> str:
    """The key of a threshold in results: ``0.5 -> "0.5"``, ``0.55 -> "0.55"``."""
    return format(round(float(threshold), 6), "g")


def counts_to_metrics(tp: int, fp: int, fn: int) -> dict:
    """tp, fp, fn with precision, recall and F1; a ratio with a zero denominator is None.

    F1 is None when precision or recall is; it is 0 when both are 0.
    """
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def _check_kinds(kinds: Sequence[Sequence[int]], lanes: Sequence[Sequence[np.ndarray]], what: str) -> None:
    """ValueError unless there is one kind per lane of every image."""
    if len(kinds) != len(lanes):
        raise ValueError(f"{what} kinds for {len(kinds)} images, expected {len(lanes)}")
    for i, (image_kinds, image_lanes) in enumerate(zip(kinds, lanes)):
        if len(image_kinds) != len(image_lanes):
            raise ValueError(f"{what} kinds of image {i}: {len(image_kinds)} for {len(image_lanes)} lanes")


def _as_points(lane, where: str) -> np.ndarray:
    pts = np.asarray(lane, dtype=np.float64)
    if pts.size == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{where}: expected an (N, 2) array of x, y pixels, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"{where}: coordinates must be finite")
    return pts.astype(np.float32)
