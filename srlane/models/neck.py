"""Neck: a 1x1 convolution per level mapping the last three backbone levels to one width."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ChannelMapper(nn.Module):
    """Maps the last ``len(in_channels)`` backbone outputs to ``out_channels`` each."""

    def __init__(self, in_channels: Sequence[int], out_channels: int = 64) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        for conv in self.lateral_convs:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``feats`` are all backbone levels; returns the mapped last levels (fine to coarse)."""
        feats = feats[len(feats) - len(self.lateral_convs):]
        return [conv(f) for conv, f in zip(self.lateral_convs, feats)]
