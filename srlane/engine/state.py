"""Where a training run stands: ``TrainState``, the counters a resumed run continues from.

The Runner advances it, hooks read it (and ask for a stop through it), checkpoints carry the
persistent part under the top-level keys the checkpoints have always had (``step``, ``epoch``,
``batch_in_epoch``, ``best_metric``, ``metrics``, ``nonfinite``, ``unreadable_images``,
``scaler_skips``), so older checkpoints resume.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch


@dataclasses.dataclass
class TrainState:
    """The run's position and counters. ``scaler_skips`` (updates the grad scaler skipped) stays
    a 0-dim tensor on the device, None without a scaler; ``step_losses`` (the last step's loss
    terms, detached on the device), ``stop_signal``, ``stop_reason`` and ``failed`` belong to this
    process's run and are not saved."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float = -math.inf
    last_metrics: dict = dataclasses.field(default_factory=dict)
    nonfinite_in_row: int = 0
    nonfinite_total: int = 0
    unreadable_images: int = 0
    scaler_skips: torch.Tensor | None = None
    step_losses: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    stop_signal: int | None = None
    stop_reason: str | None = None
    failed: bool = False

    def request_stop(self, reason: str) -> None:
        """End training cleanly at the next check: after the current step, or right after the
        validation whose hook asked; no further validation, last.pth is saved, ``reason`` logged.
        The first reason stays."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def counters(self) -> dict[str, int]:
        """Events the log line reports: steps skipped for a non-finite loss or by the grad scaler,
        training images replaced because they could not be read."""
        counts = {"skipped (non-finite loss)": self.nonfinite_total, "unreadable images replaced": self.unreadable_images}
        if self.scaler_skips is not None:
            counts["skipped by the grad scaler"] = int(self.scaler_skips)
        return counts

    def state_dict(self) -> dict[str, Any]:
        """The persistent part, under the checkpoint's top-level keys."""
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_metric": self.best_metric,
            "metrics": dict(self.last_metrics),
            "nonfinite": [self.nonfinite_in_row, self.nonfinite_total],
            "unreadable_images": self.unreadable_images,
            "scaler_skips": None if self.scaler_skips is None else self.scaler_skips.cpu(),
        }

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        """Take back what ``state_dict`` gave (checkpoints without the newer counters count from 0)."""
        self.step, self.epoch, self.batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
        self.best_metric, self.last_metrics = saved["best_metric"], saved["metrics"]
        self.nonfinite_in_row, self.nonfinite_total = saved["nonfinite"]
        self.unreadable_images = saved.get("unreadable_images", 0)
        if self.scaler_skips is not None and saved.get("scaler_skips") is not None:
            self.scaler_skips.copy_(saved["scaler_skips"])
