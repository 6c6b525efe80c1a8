"""The training objective: assignment plus the weighted sum of SRLane's losses (spec 6)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from srlane.lane_kinds import IGNORE_INDEX
from srlane.models.assign import assign
from srlane.models.losses import PRED_WIDTH_MODES, angle_loss, line_iou, softmax_focal_loss

SUPPORTED_LOSSES = ("cls", "l1", "iou", "angle")


class SRLaneLoss(nn.Module):
    """Computes ``{"loss", "loss_status"}`` from the refine stages' predictions and the angle maps.

    ``weights`` maps ``cls, l1, iou, angle`` (and optionally ``attn``, ``seg``, which must be 0:
    the released defaults; those auxiliary losses are not implemented) to their weights.
    ``iou_pred_width`` is the IoU loss's ``line_iou(pred_width=...)``: ``"prediction"`` (the
    release) or ``"target"`` (no gradient dead zone; the assignment is unchanged either way).
    ``num_categories`` K > 0: the predictions' last K columns are category logits, and
    ``category`` (optional, default 1.0) weighs their cross-entropy on the matched proposals (no
    head: not used).
    """

    def __init__(self, img_w: int, num_points: int, weights: Mapping[str, float],
                 n_candidate: int = 4, angle_level_weights: Sequence[float] = (0.2, 0.2, 1.0),
                 iou_pred_width: str = "prediction", num_categories: int = 0) -> None:
        super().__init__()
        if iou_pred_width not in PRED_WIDTH_MODES:
            raise ValueError(f"iou_pred_width must be one of {PRED_WIDTH_MODES}, got {iou_pred_width!r}")
        unknown = set(weights) - set(SUPPORTED_LOSSES) - {"attn", "seg", "category"}
        if unknown:
            raise ValueError(f"loss_weights: unknown keys {sorted(unknown)}; expected {SUPPORTED_LOSSES} + attn, seg")
        for name in ("attn", "seg"):
            if float(weights.get(name, 0.0)) != 0.0:
                raise NotImplementedError(f"loss_weights.{name} must be 0 (the auxiliary {name} loss "
                                          "is not implemented; the release trains with 0)")
        missing = [k for k in SUPPORTED_LOSSES if k not in weights]
        if missing:
            raise ValueError(f"loss_weights: missing keys {missing}")
        self.num_categories = int(num_categories)
        category_weight = float(weights.get("category", 1.0)) if self.num_categories else 0.0
        self.img_w = float(img_w)
        self.num_points = num_points
        self.n_strips = num_points - 1
        self.weights = {k: float(weights[k]) for k in SUPPORTED_LOSSES}
        self.weights["category"] = category_weight
        self.n_candidate = n_candidate
        self.angle_level_weights = tuple(angle_level_weights)
        self.iou_pred_width = iou_pred_width

    def forward(self, stage_predictions: Sequence[torch.Tensor], pred_angles: Sequence[torch.Tensor],
                gt_lane: torch.Tensor, gt_angle: Sequence[torch.Tensor],
                gt_category: torch.Tensor | None = None) -> dict:
        """``stage_predictions``: (B, N, 4 + P + K) per stage; ``pred_angles``: sigmoid maps fine
        to coarse; ``gt_lane`` (B, T, 4 + P); ``gt_angle`` target maps fine to coarse;
        ``gt_category`` (B, T) head classes of the target lanes (IGNORE_INDEX: not counted),
        needed with a category head. ``loss`` keeps its graph; ``loss_status`` holds the
        detached weighted terms."""
        if self.num_categories and gt_category is None:
            raise ValueError("a network with a category head trains on batches with gt_category")
        gt_lane = gt_lane.to(stage_predictions[-1].device, torch.float32)
        batch = gt_lane.shape[0]
        valid = gt_lane[..., 1] == 1
        n_valid = valid.sum(1)
        has_target = n_valid > 0
        end = 4 + self.num_points
        cls = l1 = iou = category = gt_lane.new_zeros(())
        for preds in stage_predictions:
            preds = preds.float()
            scaled = torch.cat((preds[..., :2], preds[..., 2:4] * self.n_strips, preds[..., 4:end] * self.img_w), -1)
            matched, gt_index = assign(scaled.detach(), gt_lane, valid, self.img_w, self.n_candidate)
            cls_per_image = softmax_focal_loss(preds[..., :2], matched.long()).sum(1)
            cls = cls + (cls_per_image / n_valid.clamp(min=1)).sum()

            target = torch.gather(gt_lane, 1, gt_index.unsqueeze(-1).expand(-1, -1, gt_lane.shape[-1]))
            n_matched = matched.sum(1).clamp(min=1)
            weight = matched.to(preds.dtype)
            with torch.no_grad():
                pred_start = scaled[..., 2].round().clamp(0, self.n_strips)
                target_yl = target[..., 2:4].clone()
                target_yl[..., 1] -= pred_start - target[..., 2].round()
            target_yl = torch.where(matched.unsqueeze(-1), target_yl, scaled[..., 2:4].detach())
            l1_each = F.smooth_l1_loss(scaled[..., 2:4], target_yl, reduction="none").sum(-1)
            l1 = l1 + ((l1_each * weight).sum(1) / (2 * n_matched)).masked_fill(~has_target, 0).sum()

            ious = line_iou(scaled[..., 4:], target[..., 4:], self.img_w, width=7.5, aligned=True,
                            pred_width=self.iou_pred_width)
            iou = iou + (((1 - ious) * weight).sum(1) / n_matched).masked_fill(~has_target, 0).sum()
            if self.num_categories:
                category = category + category_loss(preds[..., end:], matched, gt_index, gt_category)
        scale = batch * len(stage_predictions)
        gt_angle = [t.to(pred_angles[0].device, torch.float32) for t in gt_angle]
        status = {
            "cls_loss": cls / scale * self.weights["cls"],
            "l1_loss": l1 / scale * self.weights["l1"],
            "iou_loss": iou / scale * self.weights["iou"],
            "angle_loss": angle_loss([p.float() for p in pred_angles], gt_angle,
                                     self.angle_level_weights) * self.weights["angle"],
        }
        if self.num_categories:
            status["category_loss"] = category / len(stage_predictions) * self.weights["category"]
        loss = sum(status.values())
        return {"loss": loss, "loss_status": {k: v.detach() for k, v in status.items()}}


def category_loss(logits: torch.Tensor, matched: torch.Tensor, gt_index: torch.Tensor,
                  gt_category: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the category ``logits`` (B, N, K) over the matched proposals
    (``matched``, ``gt_index``: (B, N), from ``assign``) whose target lane's class
    (``gt_category`` (B, T)) is known; 0 when there is none."""
    classes = torch.gather(gt_category.to(logits.device, torch.long), 1, gt_index)
    classes = classes.masked_fill(~matched, IGNORE_INDEX)
    total = F.cross_entropy(logits.flatten(0, 1).float(), classes.flatten(), ignore_index=IGNORE_INDEX,
                            reduction="sum")
    return total / (classes != IGNORE_INDEX).sum().clamp(min=1)
