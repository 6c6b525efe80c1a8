"""Sketch head: local angle maps and the straight-line lane proposals built from them."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class LocalAngleHead(nn.Module):
    """Predicts a lane-direction map per level and turns the coarsest one into proposals.

    ``angle_conv[i]`` serves level ``n_levels - 1 - i`` (``[0]`` is the coarsest, stride 32).
    Training predicts every level; inference only the coarsest.
    """

    def __init__(self, num_points: int = 72, in_channels: int = 64, n_levels: int = 3,
                 angle_map_size: Sequence[int] = (4, 10)) -> None:
        super().__init__()
        self.num_points = num_points
        self.feat_h, self.feat_w = (int(v) for v in angle_map_size)
        self.register_buffer("prior_ys", torch.linspace(0, self.feat_h, num_points))
        grid_y, grid_x = torch.meshgrid(torch.arange(self.feat_h - 0.5, 0, -1.0),
                                        torch.arange(0.5, self.feat_w, 1.0), indexing="ij")
        self.register_buffer("grid", torch.stack((grid_x, grid_y), 0).unsqueeze(0))
        self.angle_conv = nn.ModuleList(nn.Conv2d(in_channels, 1, 1, bias=False) for _ in range(n_levels))
        for conv in self.angle_conv:
            nn.init.normal_(conv.weight, 0.0, 1e-3)

    @property
    def num_priors(self) -> int:
        return self.feat_h * self.feat_w

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``feats`` fine to coarse. Returns priors ``(B, feat_h*feat_w, 4 + num_points)`` and
        the sigmoid angle maps ``(B, H_l, W_l)`` of the levels used (fine to coarse)."""
        if not self.training:
            feats = feats[-1:]
        n = len(feats)
        thetas = [self.angle_conv[n - 1 - i](f).sigmoid() for i, f in enumerate(feats)]
        priors = self.priors_from_angle(thetas[-1])
        return priors, [t.squeeze(1) for t in thetas]

    def priors_from_angle(self, theta: torch.Tensor) -> torch.Tensor:
        """One straight-line proposal per cell of the resized coarsest angle map."""
        angle = F.interpolate(theta.detach().float(), size=(self.feat_h, self.feat_w),
                              mode="bilinear", align_corners=True).squeeze(1)
        k = (angle.clamp(0.05, 0.95) * math.pi).tan()
        batch = angle.shape[0]
        cells = self.feat_h * self.feat_w
        gx = self.grid[:, 0].reshape(1, cells, 1)
        gy = self.grid[:, 1].reshape(1, cells, 1)
        xs = ((self.prior_ys.view(1, 1, -1) - gy) / k.reshape(batch, cells, 1) + gx) / self.feat_w
        inside = (xs >= 0) & (xs < 1)
        start = inside.to(torch.uint8).argmax(-1).to(xs.dtype) / (self.num_points - 1)
        priors = xs.new_zeros(batch, cells, 4 + self.num_points)
        priors[..., 2] = start
        priors[..., 4:] = xs
        return priors
