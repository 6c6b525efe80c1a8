"""The decoder as tensor ops (spec 7, steps 1-6): raw predictions -> a fixed number of final lanes.

``GraphDecoder(img_w, num_points, top_k)(predictions, conf_threshold, nms_thres)`` computes what
:class:`srlane.models.decode.LaneDecoder` computes before it builds ``Lane`` objects: the scores,
the threshold, the lane NMS (:func:`srlane.models.nms.lane_nms_torch`: no sort, no host sync), the
points of each kept proposal (the release's rule, ``LaneDecoder.point_mask``) and the drop of
lanes with fewer than two points. Its outputs have fixed shapes, so ``tools/export.py
--with-decoder`` writes it into the ONNX graph behind the network (docs/outputs.md, section 4).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from srlane.lane_kinds import KNOWN_CATEGORIES
from srlane.models.nms import lane_nms_torch, stable_rank

NO_POINT = -1.0  # the x of a row without a point: outside [0, 1], where every point lies


class FinalLanes(NamedTuple):
    """The final lanes of a batch, at most ``K`` (the decoder's ``top_k``) per image, best first.

    ``valid`` (B, K) bool, a prefix mask: lane k of image b exists; ``scores`` (B, K) float32;
    ``xs`` (B, K, P) float32: x of each of the P rows (bottom first) as a fraction of the width,
    ``NO_POINT`` where the lane has no point; ``start`` (B, K) int64: the lane's first row with a
    point; ``length`` (B, K) int64: rows from ``start`` to its last row with a point (rows within
    whose x is ``NO_POINT`` are gaps where it left the image); ``proposals`` (B, K) int64: the
    proposal each lane comes from; ``category`` (B, K) int64: the lane's kind (an OpenLane id,
    ``srlane.lane_kinds``) from the category head's logits, ``category_score`` (B, K) float32 its
    softmax probability (both 0 without a head); every field 0 (xs ``NO_POINT``) where not
    ``valid``. ``predictions`` (B, N, 4 + P + C) float32: the network's raw output the lanes were
    decoded from (C: the category head's classes, 0 without one).
    """

    valid: torch.Tensor
    scores: torch.Tensor
    xs: torch.Tensor
    start: torch.Tensor
    length: torch.Tensor
    proposals: torch.Tensor
    category: torch.Tensor
    category_score: torch.Tensor
    predictions: torch.Tensor


def point_mask_torch(rows: torch.Tensor, n_strips: int) -> torch.Tensor:
    """``LaneDecoder.point_mask`` in torch, the same arithmetic: (..., 4 + P [+ C]) rows -> (..., P)
    bool, which rows of each proposal hold a point (start and length rounded half to even in
    float64)."""
    row = torch.arange(n_strips + 1, dtype=torch.float64, device=rows.device)
    start = torch.round(rows[..., 2:3].double() * n_strips).clamp(0, n_strips)
    end = (start + torch.round(rows[..., 3:4].double() * n_strips) - 1).clamp(max=float(n_strips))
    xs = rows[..., 4:5 + n_strips]
    inside = (xs >= 0) & (xs <= 1)
    below = row < start
    # below the start only the unbroken run of inside points ending at start - 1 survives
    last_gap = torch.where(below & ~inside, row, -1.0).amax(-1, keepdim=True)
    return ((below & (row > last_gap)) | (~below & inside)) & (row <= end)


def _take(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values`` (B, M, ...) at ``index`` (B, K) along dim 1."""
    shaped = index.reshape(*index.shape, *([1] * (values.dim() - 2)))
    return values.gather(1, shaped.expand(*index.shape, *values.shape[2:]))


def categories_torch(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Category head logits (..., C) -> each row's kind (an OpenLane id: head class i is
    ``KNOWN_CATEGORIES[i]``) and its softmax probability; C = 0 gives kind 0, probability 0."""
    if logits.shape[-1] == 0:
        return logits.new_zeros(logits.shape[:-1], dtype=torch.long), logits.new_zeros(logits.shape[:-1])
    probabilities = torch.softmax(logits, dim=-1)
    score, index = probabilities.max(-1)
    table = torch.tensor(KNOWN_CATEGORIES[:logits.shape[-1]], dtype=torch.long, device=logits.device)
    return table[index], score


class GraphDecoder(nn.Module):
    """Raw predictions (B, N, 4 + P + C) -> :class:`FinalLanes` with K = ``top_k`` lanes per image.

    ``forward(predictions, conf_threshold, nms_thres)``: the thresholds are numbers or 0-d float32
    tensors (in pixels of the ``img_w`` wide input for ``nms_thres``), graph inputs in an export.
    The kept lanes and their points are the ones ``LaneDecoder(img_w, num_points, conf_threshold,
    nms_thres, top_k)`` keeps, in the same order.
    """

    def __init__(self, img_w: int, num_points: int, top_k: int) -> None:
        super().__init__()
        self.img_w = int(img_w)
        self.n_strips = int(num_points) - 1
        self.top_k = int(top_k)

    def forward(self, predictions: torch.Tensor, conf_threshold: float | torch.Tensor,
                nms_thres: float | torch.Tensor) -> FinalLanes:
        predictions = predictions.float()
        scores = torch.softmax(predictions[..., :2], dim=-1)[..., 1]
        indices, kept = lane_nms_torch(scores, predictions[..., 2] * self.n_strips,
                                       predictions[..., 3] * self.n_strips,
                                       predictions[..., 4:5 + self.n_strips] * self.img_w,
                                       conf_threshold, nms_thres, self.top_k)
        rows = _take(predictions, indices)
        points = point_mask_torch(rows, self.n_strips) & kept[..., None]
        valid = points.sum(-1) >= 2
        # the lanes with two points or more first, in score order (a proposal with fewer gives no lane)
        order = _inverse(stable_rank((~valid).long()))
        indices, valid, points, rows = (_take(t, order) for t in (indices, valid, points, rows))
        points = points & valid[..., None]
        row = torch.arange(self.n_strips + 1, device=rows.device)
        first = torch.where(points, row, self.n_strips + 1).amin(-1)
        last = torch.where(points, row, -1).amax(-1)
        zero = torch.zeros_like(indices)
        category, category_score = categories_torch(rows[..., 5 + self.n_strips:])
        return FinalLanes(valid=valid,
                          scores=torch.where(valid, _take(scores, indices), 0.0),
                          xs=torch.where(points, rows[..., 4:5 + self.n_strips], NO_POINT),
                          start=torch.where(valid, first, zero),
                          length=torch.where(valid, last - first + 1, zero),
                          proposals=torch.where(valid, indices, zero),
                          category=torch.where(valid, category, zero),
                          category_score=torch.where(valid, category_score, 0.0),
                          predictions=predictions)


def _inverse(rank: torch.Tensor) -> torch.Tensor:
    """The permutation (B, K) that puts entry k at position ``rank[..., k]``: ``out[..., j]`` is
    the k whose rank is j."""
    index = torch.arange(rank.shape[-1], device=rank.device)
    return torch.where(rank[..., None, :] == index[:, None], index, 0).sum(-1)
