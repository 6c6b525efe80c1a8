"""Lane NMS (spec 7.2) on the candidates above the score threshold, in NumPy.

After the threshold an image keeps a handful of its 40 proposals, so the pairwise test runs on
those only (a (B, K, K, P) array for the whole batch, K the most candidates of any image) and
the greedy pass of each image stops at ``top_k`` kept lanes. NumPy keeps this free of thread
start-up costs on small arrays. :func:`lane_nms_torch` is the same NMS in torch for predictions on
a GPU and inside an exported graph: batched over all N proposals, ``top_k`` greedy rounds, no
host sync, no sort.
"""
from __future__ import annotations

import numpy as np
import torch


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


def _trunc(x: torch.Tensor) -> torch.Tensor:
    """``torch.trunc`` (toward zero) as floor and ceil, which every ONNX opset has."""
    return torch.where(x < 0, torch.ceil(x), torch.floor(x))


def _suppression_matrix_torch(starts: torch.Tensor, lengths: torch.Tensor, xs: torch.Tensor,
                              thres: float | torch.Tensor) -> torch.Tensor:
    """:func:`suppression_matrix` in torch on the tensors' device, the same arithmetic: the rows in
    dtype of ``starts`` (float32 from the decoder), the distance in float64, ``thres * rows`` in
    the rows' dtype (``thres`` a number or a 0-d tensor)."""
    n_rows = xs.shape[-1]
    first = _trunc(starts + 0.5)
    last = _trunc(starts + lengths - 1.0 + 0.5)
    lo = torch.maximum(first[..., :, None], first[..., None, :])
    hi = torch.minimum(last[..., :, None], last[..., None, :]).clamp(max=float(n_rows - 1))
    rows = hi - lo + 1
    row = torch.arange(n_rows, dtype=torch.float32, device=xs.device)
    common = (row >= lo[..., None]) & (row <= hi[..., None])
    xs = xs.double()
    dist = torch.where(common, (xs[..., :, None, :] - xs[..., None, :, :]).abs(), 0.0).sum(-1)
    limit = rows * torch.as_tensor(thres, dtype=rows.dtype, device=xs.device)
    return (rows > 0) & (dist < limit.double())


def stable_rank(keys: torch.Tensor) -> torch.Tensor:
    """Each entry's position (int64) when the last axis of ``keys`` is sorted ascending, equal keys
    in index order: a stable sort by comparisons alone, which exports to any graph runtime
    without relying on its sort's tie order."""
    index = torch.arange(keys.shape[-1], device=keys.device)
    before = (keys[..., None, :] < keys[..., :, None]) | (
        (keys[..., None, :] == keys[..., :, None]) & (index < index[:, None]))
    return before.sum(-1)


def lane_nms_torch(scores: torch.Tensor, starts: torch.Tensor, lengths: torch.Tensor, xs: torch.Tensor,
                   conf_threshold: float | torch.Tensor, nms_thres: float | torch.Tensor,
                   top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lane_nms` in torch, batched, on the tensors' device and without a host sync.

    ``scores``, ``starts``, ``lengths`` (B, N), ``xs`` (B, N, P) tensors; the thresholds numbers
    or 0-d tensors (graph inputs in an export). Returns ``indices`` (B, top_k) long and ``valid``
    (B, top_k) bool on that device: ``indices[b][valid[b]]`` are the kept proposals of image b,
    best first, the same as ``lane_nms``'s (``score >= conf_threshold``, ties in score to the
    lower index, the same suppression test); ``valid`` is a prefix mask and the padding indices
    are 0. The greedy pass runs ``min(top_k, N)`` rounds, each keeping the best candidate of every
    image that no kept lane suppresses: the one of lowest :func:`stable_rank` of ``-scores``
    (ranks are distinct, so no argmax tie order is involved). Only elementwise ops, reductions
    and comparisons: it traces into an ONNX graph (``srlane.models.graph_decode``).
    """
    n = scores.shape[-1]
    index = torch.arange(n, device=scores.device)
    alive = scores >= torch.as_tensor(conf_threshold, dtype=scores.dtype, device=scores.device)
    rank = stable_rank(-scores)
    suppress = _suppression_matrix_torch(starts, lengths, xs, nms_thres)
    picks, found = [], []
    for _ in range(min(top_k, n)):
        best = torch.where(alive, rank, n).min(-1, keepdim=True).values
        chosen = alive & (rank == best)  # one-hot: the best live candidate; all False when none is left
        alive = alive & ~chosen & ~(chosen[..., :, None] & suppress).any(-2)
        picks.append(torch.where(chosen, index, 0).sum(-1))
        found.append(chosen.any(-1))
    if not picks:
        empty = torch.zeros(*scores.shape[:-1], top_k, dtype=torch.long, device=scores.device)
        return empty, empty.bool()
    pad = (0, top_k - len(picks))
    return (torch.nn.functional.pad(torch.stack(picks, -1), pad),
            torch.nn.functional.pad(torch.stack(found, -1), pad))
