"""Losses of SRLane (spec section 6): line IoU, softmax focal loss, focal cost, angle loss."""
from __future__ import annotations

from typing import Sequence

import torch

RELEASE_DY = 320 / 71  # the release's row spacing in the width scaling, whatever img_h


PRED_WIDTH_MODES = ("prediction", "target")


def line_iou(pred: torch.Tensor, target: torch.Tensor, img_w: float, width: float = 7.5,
             aligned: bool = True, dy: float = RELEASE_DY, pred_width: str = "prediction") -> torch.Tensor:
    """Line IoU between rows of xs in pixels (..., P).

    The half-width at a row grows with the local slope (central difference, end rows copy
    their neighbour, no gradient through it). For the target, a difference that involves a
    row outside ``[0, img_w)`` counts as 0 (the release's behaviour, checked against its loss
    values), and outside rows count neither in the overlap nor the union. ``aligned``: ``pred`` and ``target`` pair
    up row by row -> (...,). Otherwise every pred x every target: (..., Np, P) x (..., Nt, P)
    -> (..., Np, Nt).

    ``pred_width``: ``"prediction"`` (the release) widens each predicted row by the
    prediction's own slope. Row-to-row noise then widens it past the target's band, where the
    row's gradient is exactly 0, so the noise is never removed. ``"target"`` gives every
    predicted row the target's half-width instead: same value when the slopes agree, and a
    gradient towards the target at every row.
    """
    if pred_width not in PRED_WIDTH_MODES:
        raise ValueError(f"line_iou: pred_width must be one of {PRED_WIDTH_MODES}, got {pred_width!r}")
    with torch.no_grad():
        invalid = (target < 0) | (target >= img_w)
        target_w = _half_width(target, width, dy, invalid).masked_fill(invalid, width)
        pred_w = _half_width(pred, width, dy) if pred_width == "prediction" else None
    if not aligned:
        pred = pred.unsqueeze(-2)
        pred_w = pred_w.unsqueeze(-2) if pred_w is not None else None
        target, target_w = target.unsqueeze(-3), target_w.unsqueeze(-3)
        invalid = invalid.unsqueeze(-3)
    if pred_w is None:
        pred_w = target_w
    p1, p2 = pred - pred_w, pred + pred_w
    t1, t2 = target - target_w, target + target_w
    ovr = (torch.minimum(p2, t2) - torch.maximum(p1, t1)).masked_fill(invalid, 0.0)
    union = (torch.maximum(p2, t2) - torch.minimum(p1, t1)).masked_fill(invalid, 0.0)
    return ovr.sum(-1) / (union.sum(-1) + 1e-9)


def _half_width(xs: torch.Tensor, width: float, dy: float,
                invalid: torch.Tensor | None = None) -> torch.Tensor:
    dx = xs[..., 2:] - xs[..., :-2]
    if invalid is not None:  # a difference that involves an outside row counts as 0
        dx = dx.masked_fill(invalid[..., 2:] | invalid[..., :-2], 0.0)
    inner = torch.sqrt(dx.pow(2) + dy ** 2) / dy * width
    return torch.cat((inner[..., :1], inner, inner[..., -1:]), dim=-1)


def softmax_focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Per-sample softmax focal loss as the release computes it (probabilities +1e-6, the
    one-hot target +1e-6, alpha on every class). ``logits`` (..., C), ``labels`` (...) long."""
    p = torch.softmax(logits, dim=-1) + 1e-6
    onehot = torch.nn.functional.one_hot(labels, logits.shape[-1]).to(p.dtype) + 1e-6
    return (onehot * (-alpha * (1 - p).pow(gamma) * p.log())).sum(-1)


def focal_cost(logits: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
               eps: float = 1e-12) -> torch.Tensor:
    """Classification cost of calling each proposal a lane: pos - neg on sigmoid(logit[1])."""
    p = logits[..., 1].sigmoid()
    pos = -(p + eps).log() * alpha * (1 - p).pow(gamma)
    neg = -(1 - p + eps).log() * (1 - alpha) * p.pow(gamma)
    return pos - neg


def angle_loss(pred: Sequence[torch.Tensor], target: Sequence[torch.Tensor],
               level_weights: Sequence[float] = (0.2, 0.2, 1.0)) -> torch.Tensor:
    """Masked L1 per level (fine to coarse), accumulated as the release does:
    ``loss = (loss + L_level) * w_level``."""
    loss = pred[0].new_zeros(())
    for p, t, w in zip(pred, target, level_weights, strict=True):
        mask = t > 0
        loss = (loss + ((p - t).abs() * mask).sum() / (mask.sum() + 1e-4)) * w
    return loss
