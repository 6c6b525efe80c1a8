"""SRLane two-stage detector (backbone, neck, sketch head, refine head) and its builder."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from srlane.config import ConfigError
from srlane.lane_kinds import KNOWN_CATEGORIES
from srlane.models.backbone import build_backbone
from srlane.models.criterion import SRLaneLoss
from srlane.models.neck import ChannelMapper
from srlane.models.refine_head import RefineHead
from srlane.models.sketch_head import LocalAngleHead

_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "_forward_module.")


def input_images(img: torch.Tensor) -> torch.Tensor:
    """The network's input from a batch's images: uint8 RGB (B, 3, H, W) as the loaders deliver
    them (a quarter of float32's bytes through worker queues and host-to-device copies) becomes
    float32 in [0, 1] (divided by 255, as the release) on the images' device; float images pass
    unchanged."""
    return img.float().div_(255.0) if img.dtype == torch.uint8 else img


class SRLane(nn.Module):
    """Eval: ``net(img)`` or ``net({"img": img, ...})`` -> predictions (B, N, 4 + num_points + K),
    the last K columns the category head's logits (``model.num_lane_categories``, 0: none).
    Train: ``net(batch)`` with ``img``, ``gt_lane``, ``gt_angle`` (and ``gt_category`` with a
    category head) -> ``{"loss", "loss_status"}``.
    ``img`` is uint8 RGB (see :func:`input_images`) or float in [0, 1].

    Submodule names match the released checkpoints (``backbone``, ``neck``, ``rpn_head``,
    ``roi_head``).
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, rpn_head: LocalAngleHead,
                 roi_head: RefineHead, criterion: SRLaneLoss | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.rpn_head = rpn_head
        self.roi_head = roi_head
        self.criterion = criterion

    def forward(self, batch: torch.Tensor | Mapping[str, Any]) -> torch.Tensor | dict:
        img = input_images(batch["img"] if isinstance(batch, Mapping) else batch)
        feats = self.neck(self.backbone(img))
        priors, thetas = self.rpn_head(feats)
        stage_predictions = self.roi_head(feats, priors)
        if not self.training:
            return stage_predictions[-1]
        if not isinstance(batch, Mapping) or "gt_lane" not in batch or "gt_angle" not in batch:
            raise ValueError("train-mode forward needs a batch dict with img, gt_lane and gt_angle")
        if self.criterion is None:
            raise RuntimeError("this SRLane was built without a criterion; it can only run in eval mode")
        return self.criterion(stage_predictions, thetas, batch["gt_lane"], batch["gt_angle"],
                              batch.get("gt_category"))


def build_net(cfg: Mapping[str, Any], pretrained: bool = True) -> SRLane:
    """Build SRLane from a config (``model``, ``img_w``, ``img_h``, ``num_points``,
    ``max_lanes``, ``loss_weights`` and optionally ``iou_pred_width``: ``"prediction"``, the
    release's line-IoU loss, or ``"target"``, see :func:`srlane.models.losses.line_iou`).
    ``pretrained=False``: the backbone starts from random weights whatever
    ``model.backbone.pretrained`` says (a network whose weights a checkpoint gives)."""
    for key in ("img_w", "img_h"):
        if int(cfg[key]) % 32:
            raise ConfigError(f"config {key}={cfg[key]} must be a multiple of 32 (strides 8, 16, 32)")
    model = cfg["model"]
    bb, neck_cfg, sketch, refine = (model[k] for k in ("backbone", "neck", "sketch_head", "refine_head"))
    strides = tuple(sketch.get("feat_ds_strides", (8, 16, 32)))
    if strides != (8, 16, 32):
        raise ConfigError(f"model.sketch_head.feat_ds_strides must be (8, 16, 32), got {strides}")
    num_points = int(cfg["num_points"])
    num_categories = num_lane_categories(model)
    hidden = int(neck_cfg.get("out_channels", 64))
    backbone = build_backbone(bb, pretrained)
    neck = ChannelMapper(backbone.out_channels[1:], hidden)
    angle_map_size = tuple(sketch.get("angle_map_size", (4, 10)))
    rpn_head = LocalAngleHead(num_points=num_points, in_channels=hidden, n_levels=len(strides),
                              angle_map_size=angle_map_size)
    roi_head = RefineHead(
        refine_layers=int(refine.get("refine_layers", 1)), z_mean=refine.get("z_mean", 0.9269),
        z_std=refine.get("z_std", 0.2379), num_points=num_points, in_channels=hidden,
        n_levels=len(strides), sample_points=int(refine.get("sample_points", 36)),
        fc_hidden_dim=int(refine.get("fc_hidden_dim", 192)), num_groups=int(refine.get("num_groups", 6)),
        num_categories=num_categories)
    criterion = SRLaneLoss(img_w=int(cfg["img_w"]), num_points=num_points, weights=dict(cfg["loss_weights"]),
                           n_candidate=angle_map_size[0],
                           iou_pred_width=str(cfg.get("iou_pred_width", "prediction")),
                           num_categories=num_categories)
    return SRLane(backbone, neck, rpn_head, roi_head, criterion)


def num_lane_categories(model: Mapping[str, Any]) -> int:
    """``model.num_lane_categories``: the category head's classes (0, the default: no head),
    at most ``len(KNOWN_CATEGORIES)``."""
    value = model.get("num_lane_categories", 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= len(KNOWN_CATEGORIES):
        raise ConfigError(f"model.num_lane_categories={value!r}: expected an integer from 0 to "
                          f"{len(KNOWN_CATEGORIES)} (the classes of OpenLane's lane kinds)")
    return value


def _canonical(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def load_state_dict_compat(net: nn.Module, state: Mapping[str, Any], strict: bool = True):
    """Load a release-style checkpoint into ``net`` (bare or wrapped).

    ``state`` is ``{"net": state_dict}`` or a state dict; keys may carry wrapper prefixes
    (``module.``, ``_orig_mod.``) that ``net``'s own keys lack, or lack ones they have.
    Returns what ``net.load_state_dict`` returns.
    """
    if "net" in state and isinstance(state["net"], Mapping):
        state = state["net"]
    own = {_canonical(k): k for k in net.state_dict()}
    mapped = {own.get(_canonical(k), k): v for k, v in state.items()}
    return net.load_state_dict(mapped, strict=strict)
