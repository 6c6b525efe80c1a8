"""An exponential moving average of a network's weights (validated and saved when enabled)."""
from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn


class ModelEMA:
    """``module`` follows ``source`` as ``ema <- ema + (1 - decay) * (live - ema)`` after each
    optimizer step (buffers that are not floats, e.g. BatchNorm's counters, are copied)."""

    def __init__(self, source: nn.Module, decay: float) -> None:
        self.source, self.decay = source, float(decay)
        self.module = copy.deepcopy(source).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        for ema, live in zip(self.module.state_dict().values(), self.source.state_dict().values()):
            if ema.is_floating_point():
                ema.lerp_(live, 1.0 - self.decay)
            else:
                ema.copy_(live)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
