"""Lane NMS (spec 7.2) on the candidates above the score threshold, in NumPy.

After the threshold an image keeps a handful of its 40 proposals, so the pairwise test runs on
those only (a (B, K, K, P) array for the whole batch, K the most candidates of any image) and
the greedy pass of each image stops at ``top_k`` kept lanes. NumPy keeps this free of thread
start-up costs on small arrays.
"""
from __future__ import annotations

import numpy as np


def suppression_matrix(starts: np.ndarray, lengths: np.ndarray, xs: np.ndarray, thres: float) -> np.ndarray:
    """``S[..., a, b]``: lane a would suppress lane b.

    ``starts``, ``lengths`` (..., K) float32 in strips, ``xs`` (..., K, P) in pixels. Over the common
    rows ``max(int(s + 0.5)) .. min(int(e + 0.5), P - 1)`` with ``e = s + length - 1`` (int
    truncates toward zero, computed in float32 as the release does), a suppresses b when the
    summed |x_a - x_b| (float64) is below ``thres * rows``; rows outside ``0 .. P - 1`` add
    nothing to the sum. No common row: no suppression.
    """
    n_rows = xs.shape[-1]
    half = np.float32(0.5)
    first = np.trunc(starts + half)
    last = np.trunc(starts + lengths - np.float32(1) + half)
    lo = np.maximum(first[..., :, None], first[..., None, :])
    hi = np.minimum(np.minimum(last[..., :, None], last[..., None, :]), np.float32(n_rows - 1))
    rows = hi - lo + 1
    row = np.arange(n_rows, dtype=np.float32)
    common = (row >= lo[..., None]) & (row <= hi[..., None])
    xs = xs.astype(np.float64)
    dist = np.where(common, np.abs(xs[..., :, None, :] - xs[..., None, :, :]), 0.0).sum(-1)
    return (rows > 0) & (dist < thres * rows)


def greedy_nms(suppress: np.ndarray, top_k: int) -> list[int]:
    """Greedy pass over candidates already sorted best first: keep a candidate unless a kept
    one suppresses it; stop at ``top_k``. Returns positions into the candidate order."""
    alive = np.ones(len(suppress), dtype=bool)
    kept: list[int] = []
    for i in range(len(suppress)):
        if len(kept) == top_k:
            break
        if alive[i]:
            kept.append(i)
            alive &= ~suppress[i]
    return kept


def lane_nms(scores: np.ndarray, starts: np.ndarray, lengths: np.ndarray, xs: np.ndarray,
             conf_threshold: float, thres: float, top_k: int) -> list[np.ndarray]:
    """Indices of the kept proposals of each image, best score first.

    ``scores`` (B, N); ``starts``, ``lengths`` (B, N) in strips; ``xs`` (B, N, P) in pixels.
    Candidates have ``score >= conf_threshold``; ties in score go to the lower index.
    """
    candidate = scores >= conf_threshold
    counts = candidate.sum(-1)
    k = int(counts.max(initial=0))
    order = np.argsort(np.where(candidate, -scores, np.inf), axis=-1, kind="stable")[:, :k]
    take = order[..., None]
    suppress = suppression_matrix(np.take_along_axis(starts, order, -1), np.take_along_axis(lengths, order, -1),
                                  np.take_along_axis(xs, take, -2), thres)
    return [idx[greedy_nms(sup[:n, :n], top_k)] for idx, sup, n in zip(order, suppress, counts)]
