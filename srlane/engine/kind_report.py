"""The lane-kind tables of a validation (``srlane.engine.kind_tables``) as TensorBoard text
``val/lane_kinds`` at its step, when the metrics have them and the tensorboard tracker runs."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lightning.fabric.loggers import Logger

from srlane.engine.hooks import Hook
from srlane.engine.kind_tables import has_kind_metrics, kind_tables
from srlane.engine.state import TrainState
from srlane.engine.trackers import tensorboard_writer

KIND_TAG = "val/lane_kinds"


def write_kind_text(trackers: Sequence[Logger], metrics: Mapping[str, Any], step: int) -> None:
    """The tables under KIND_TAG (indented four spaces: a code block in TensorBoard's markdown)."""
    writer = tensorboard_writer(trackers)
    if writer is not None and has_kind_metrics(metrics):
        writer.add_text(KIND_TAG, "\n".join("    " + line for line in kind_tables(metrics).split("\n")), step)


class KindTextHook(Hook):
    """``write_kind_text`` after each validation."""

    name = "lane_kinds"

    def __init__(self, trackers: Sequence[Logger]) -> None:
        self.trackers = trackers

    def after_validation(self, state: TrainState, metrics: Mapping[str, Any], is_best: bool) -> None:
        write_kind_text(self.trackers, metrics, state.step)
