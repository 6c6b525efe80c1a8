"""Optimizer by ``torch.optim`` name, gradient clipping (with a grad scaler too) and the release's
warmup-cosine learning-rate schedule."""
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


def clip_gradients(net: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                   max_norm: float) -> None:
    """Clip the gradients' total norm to ``max_norm``. Under a grad scaler they are unscaled first
    (the optimizer's step then skips its own unscaling, fused optimizers included); a non-finite
    norm, an overflowing 16-mixed step, is left to the scaler, which skips that update."""
    if scaler is not None:
        scaler.unscale_(getattr(optimizer, "optimizer", optimizer))  # the optimizer under Fabric's wrapper
    torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm, error_if_nonfinite=False)


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
