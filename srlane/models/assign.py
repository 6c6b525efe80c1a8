"""Dynamic top-k assignment of proposals to target lanes (spec section 6), batched."""
from __future__ import annotations

import torch

from srlane.models.losses import focal_cost, line_iou


def dynamic_k_assign(cost: torch.Tensor, ious: torch.Tensor, valid: torch.Tensor,
                     n_candidate: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Match proposals to targets.

    ``cost``, ``ious``: (B, N, T) over N proposals and T target slots; ``valid`` (B, T) marks
    real targets. Target t takes its ``k_t = max(1, int(sum of its top-n_candidate ious))``
    cheapest proposals; a proposal taken by several targets goes to the target of lowest cost
    in its row. Returns ``matched`` (B, N) bool and ``gt_index`` (B, N) long (meaningful where
    matched).
    """
    n = cost.shape[1]
    ious = ious.clamp(min=0).masked_fill(~valid.unsqueeze(1), 0.0)
    top = ious.topk(min(n_candidate, n), dim=1).values
    k = top.sum(1).int().clamp(min=1)  # (B, T)
    order = cost.argsort(dim=1, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=cost.device)
                                             .view(1, n, 1).expand_as(order))
    taken = (rank < k.unsqueeze(1)) & valid.unsqueeze(1)  # (B, N, T)
    n_taken = taken.sum(-1)
    cheapest = cost.masked_fill(~valid.unsqueeze(1), float("inf")).argmin(-1)
    gt_index = torch.where(n_taken > 1, cheapest, taken.to(torch.uint8).argmax(-1))
    return n_taken > 0, gt_index


def assign(predictions: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, img_w: float,
           n_candidate: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign predictions (B, N, 4 + P) to targets (B, T, 4 + P), both with start/length in
    strips and xs in pixels. Cost = ``-2 * iou30 / max(iou30) + focal cost`` (spec 6)."""
    with torch.no_grad():
        pred_xs, target_xs = predictions[..., 4:].float(), targets[..., 4:].float()
        iou_wide = line_iou(pred_xs, target_xs, img_w, width=30.0, aligned=False)
        masked = iou_wide.masked_fill(~valid.unsqueeze(1), float("-inf"))
        top = masked.amax(dim=(1, 2), keepdim=True)
        top = torch.where(top == 0, torch.ones_like(top), top)
        cost = -2.0 * iou_wide / top + focal_cost(predictions[..., :2].float()).unsqueeze(-1)
        ious = line_iou(pred_xs, target_xs, img_w, width=7.5, aligned=False)
        return dynamic_k_assign(cost, ious, valid, n_candidate)
