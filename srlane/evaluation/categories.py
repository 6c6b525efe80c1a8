"""Lane kinds scored on the lanes a benchmark's matching pairs: category accuracy, per-category F1
and the confusion matrix (docs/lane_kinds.md). Arrays in, numbers out.

Per image: the annotation lanes' kinds ``a``, the predicted lanes' kinds ``p`` (OpenLane ids,
``srlane.lane_kinds``) and the matched pairs ``(i, j)`` (annotation i, prediction j: the true
positives of the benchmark's matching). An annotation of kind 0 (unknown) cannot be judged: its
pairs, and the annotation itself, count nowhere.

- **accuracy**: over the matched pairs with a known annotation kind, the fraction with
  ``p[j] == a[i]`` (None without such a pair).
- **per category c**: TP_c = matched pairs with ``a[i] == p[j] == c``; FP_c = predictions of kind
  c that are not such a pair (unmatched, or matched to another kind), except those matched to an
  unknown annotation; FN_c = annotations of kind c that are not such a pair (unmatched, or given
  another kind); F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c) (None when that is 0/0). A lane of the
  right kind that the matching misses is a miss here too: F1_c is a detection F1 of kind c.
- **confusion matrix**: rows the annotation kind, columns the predicted kind, counting the
  matched pairs with a known annotation kind; over the kinds seen (in the annotations or the
  predictions), in ``LANE_KINDS`` order.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from srlane.lane_kinds import CATEGORY_IDS, UNKNOWN, category_name

KindImage = tuple[Sequence[int], Sequence[int], np.ndarray]  # annotation kinds, predicted kinds, (K, 2) pairs


def _pairs(pairs: np.ndarray, annotations: int, predictions: int, index: int) -> np.ndarray:
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) and (pairs.min() < 0 or pairs[:, 0].max() >= annotations or pairs[:, 1].max() >= predictions):
        raise ValueError(f"image {index}: a matched pair {pairs.tolist()} is outside its {annotations} annotations "
                         f"and {predictions} predictions")
    if len(set(pairs[:, 0].tolist())) < len(pairs) or len(set(pairs[:, 1].tolist())) < len(pairs):
        raise ValueError(f"image {index}: a lane is in two matched pairs {pairs.tolist()}")
    return pairs


def category_metrics(images: Iterable[KindImage]) -> dict:
    """``category_accuracy``, ``category_matched`` (the pairs it is over), ``category_f1`` and
    ``category_counts`` (tp, fp, fn) per kind name, ``category_confusion`` (``kinds``: names,
    ``matrix``: rows annotation, columns prediction) over ``images`` (see the module's docstring)."""
    tp, fp, fn = {}, {}, {}
    confusion: dict[tuple[int, int], int] = {}
    seen: set[int] = set()
    for index, (anno, pred, pairs) in enumerate(images):
        anno, pred = [int(k) for k in anno], [int(k) for k in pred]
        pairs = _pairs(pairs, len(anno), len(pred), index)
        seen.update(k for k in anno if k != UNKNOWN)
        seen.update(pred)
        right_anno, right_pred, judged_pred = set(), set(), set()
        for i, j in pairs.tolist():
            if anno[i] == UNKNOWN:
                judged_pred.add(j)  # matched to a lane of unknown kind: neither right nor wrong
                continue
            confusion[anno[i], pred[j]] = confusion.get((anno[i], pred[j]), 0) + 1
            if anno[i] == pred[j]:
                right_anno.add(i)
                right_pred.add(j)
                tp[pred[j]] = tp.get(pred[j], 0) + 1
        for i, kind in enumerate(anno):
            if kind != UNKNOWN and i not in right_anno:
                fn[kind] = fn.get(kind, 0) + 1
        for j, kind in enumerate(pred):
            if j not in right_pred and j not in judged_pred:
                fp[kind] = fp.get(kind, 0) + 1
    kinds = [k for k in CATEGORY_IDS if k in seen]
    matrix = [[confusion.get((a, p), 0) for p in kinds] for a in kinds]
    matched = sum(confusion.values())
    right = sum(matrix[i][i] for i in range(len(kinds)))
    counts = {category_name(k): {"tp": tp.get(k, 0), "fp": fp.get(k, 0), "fn": fn.get(k, 0)}
              for k in kinds if k != UNKNOWN}
    return {
        "category_accuracy": right / matched if matched else None,
        "category_matched": matched,
        "category_f1": {name: _f1(**c) for name, c in counts.items()},
        "category_counts": counts,
        "category_confusion": {"kinds": [category_name(k) for k in kinds], "matrix": matrix},
    }


def _f1(tp: int, fp: int, fn: int) -> float | None:
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else None
