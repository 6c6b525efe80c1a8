"""Optimizer by ``torch.optim`` name and the release's warmup-cosine learning-rate schedule."""
from __future__ import annotations

import math

import torch
from torch import nn


def build_optimizer(optimizer_cfg: dict, net: nn.Module) -> torch.optim.Optimizer:
    """``dict(type="AdamW", lr=6e-4, ...)`` -> ``torch.optim.AdamW(net.parameters(), lr=6e-4, ...)``."""
    kwargs = dict(optimizer_cfg)
    name = kwargs.pop("type")
    optimizer_cls = getattr(torch.optim, name, None)
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)):
        raise ValueError(f"optimizer.type {name!r} is not a torch.optim optimizer (e.g. 'AdamW', 'SGD')")
    params = [p for p in net.parameters() if p.requires_grad]
    return optimizer_cls(params, **kwargs)


def warmup_cosine_factor(it: int, warmup_iter: int, total_iter: int) -> float:
    """LR factor after ``it`` optimizer steps: ``it / warmup`` up to warmup, then half a cosine to 0."""
    if it <= warmup_iter:
        return it / warmup_iter if warmup_iter > 0 else 1.0
    progress = (it - warmup_iter) / max(1, total_iter - warmup_iter)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    scheduler_cfg: dict, optimizer: torch.optim.Optimizer, total_iter: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The warmup-cosine ``LambdaLR``, stepped once after every optimizer step."""
    kwargs = dict(scheduler_cfg)
    kind = kwargs.pop("type")
    if kind != "warmup_cosine":
        raise ValueError(f"scheduler.type {kind!r} is unknown; the supported schedule is 'warmup_cosine'")
    warmup_iter = int(kwargs.pop("warmup_iter"))
    if kwargs:
        raise ValueError(f"scheduler has unknown keys {sorted(kwargs)}; expected type and warmup_iter")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: warmup_cosine_factor(it, warmup_iter, total_iter)
    )
