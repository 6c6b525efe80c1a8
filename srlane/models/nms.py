"""Vectorised lane NMS (spec 7.2): no loop over proposals, works on CPU and CUDA tensors."""
from __future__ import annotations

import torch


def suppression_matrix(starts: torch.Tensor, lengths: torch.Tensor, xs: torch.Tensor,
                       thres: float) -> torch.Tensor:
    """``S[..., a, b]``: lane a would suppress lane b.

    ``starts``, ``lengths`` (..., N) in strips (floats), ``xs`` (..., N, P) in pixels. Over the
    common rows ``max(int(s + 0.5)) .. min(int(e + 0.5), P - 1)`` with ``e = s + length - 1``
    (int truncates toward zero), a suppresses b when the summed |x_a - x_b| is below
    ``thres * rows``; rows outside ``0 .. P - 1`` add nothing to the sum. No common row: no
    suppression.
    """
    n_rows = xs.shape[-1]
    first = torch.trunc(starts + 0.5)
    last = torch.trunc(starts + lengths - 1 + 0.5)
    lo = torch.maximum(first.unsqueeze(-1), first.unsqueeze(-2))
    hi = torch.minimum(torch.minimum(last.unsqueeze(-1), last.unsqueeze(-2)),
                       torch.full_like(lo, n_rows - 1))
    rows = hi - lo + 1
    # prefix sums of |x_a - x_b| over rows give the sum over any row range
    diff = (xs.unsqueeze(-2) - xs.unsqueeze(-3)).abs()  # (..., N, N, P)
    csum = torch.nn.functional.pad(diff.cumsum(-1), (1, 0))
    lo_i = lo.clamp(0, n_rows).long()
    hi_i = (hi + 1).clamp(0, n_rows).long()
    dist = csum.gather(-1, hi_i.unsqueeze(-1)).squeeze(-1) - csum.gather(-1, lo_i.unsqueeze(-1)).squeeze(-1)
    return (rows > 0) & (dist < thres * rows)


def lane_nms(scores: torch.Tensor, keep: torch.Tensor, suppress: torch.Tensor,
             top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy NMS in score order on a batch.

    ``scores`` (B, N), ``keep`` (B, N) bool: candidates, ``suppress`` (B, N, N) from
    :func:`suppression_matrix`. Ties in score go to the lower index. Returns ``indices``
    (B, top_k) of the kept lanes in score order and ``valid`` (B, top_k) bool. Loops
    ``top_k`` times (each step takes the best remaining lane of every image), never over
    proposals.
    """
    batch = scores.shape[0]
    rank_scores = scores.masked_fill(~keep, float("-inf"))
    remaining = keep.clone()
    indices, valid = [], []
    rows = torch.arange(batch, device=scores.device)
    for _ in range(top_k):
        best = rank_scores.masked_fill(~remaining, float("-inf")).argmax(-1)
        ok = remaining[rows, best]
        indices.append(best)
        valid.append(ok)
        remaining = remaining & ~(suppress[rows, best] & ok.unsqueeze(-1))
        remaining[rows, best] = False
    return torch.stack(indices, -1), torch.stack(valid, -1)
