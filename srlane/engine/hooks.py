"""Hooks: what happens around the training step (logging, checkpoints, early stopping).

A hook overrides any of ``before_train``, ``before_step``, ``after_step``, ``after_validation``
and ``after_train``; each receives the run's ``TrainState``, and a hook takes whatever else it
needs (the recorder, the checkpointer, the optimizer) in its constructor, so it runs without a
Runner. ``state_dict``/``load_state_dict`` let a hook's own state travel in checkpoints (key
``hooks``, by ``name``) so a resumed run continues exactly.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from srlane.config import ConfigError
from srlane.data.label_checks import SkippedLabels
from srlane.engine.checkpointer import BEST, LAST, Checkpointer
from srlane.engine.recorder import Recorder, Timer
from srlane.engine.state import TrainState


class Hook:
    """Base class: every method does nothing. ``name`` keys the hook's state in checkpoints."""

    name = "hook"

    def before_train(self, state: TrainState) -> None:
        pass

    def before_step(self, state: TrainState) -> None:
        pass

    def after_step(self, state: TrainState) -> None:
        pass

    def after_validation(self, state: TrainState, metrics: Mapping[str, Any], is_best: bool) -> None:
        pass

    def after_train(self, state: TrainState) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class LoggerHook(Hook):
    """Timings, smoothed losses and the log line every ``interval`` steps and at ``total_iter``
    (the learning rate of the optimizer's first group); the metric table of each validation."""

    name = "logger"

    def __init__(self, recorder: Recorder, optimizer: torch.optim.Optimizer, interval: int, total_iter: int) -> None:
        self.recorder, self.optimizer = recorder, optimizer
        self.interval, self.total_iter = interval, total_iter
        self.timer = Timer()
        self.data_time = 0.0

    def before_train(self, state: TrainState) -> None:
        self.recorder.start_bar(state.step)
        self.timer.lap()

    def before_step(self, state: TrainState) -> None:
        self.data_time = self.timer.lap()

    def after_step(self, state: TrainState) -> None:
        batch_time = self.data_time + self.timer.lap()
        self.recorder.update(state.step_losses, self.data_time, batch_time)
        if state.step % self.interval == 0 or state.step == self.total_iter:
            lr = self.optimizer.param_groups[0]["lr"]
            self.recorder.log_train(state.epoch, state.step, lr, state.counters())

    def after_validation(self, state: TrainState, metrics: Mapping[str, Any], is_best: bool) -> None:
        self.recorder.log_validation(metrics, state.step)
        if is_best:
            self.recorder.info(f"new best metric {metrics['metric']:.4f} at step {state.step}")
        self.timer.lap()


class SkippedLabelsHook(Hook):
    """One line with the number of training images left out for bad labels
    (``dataset.on_bad_label="skip"``; each was logged when the split was read): at the end of
    the first epoch this run trains, or when training ends before it. Nothing when none was."""

    name = "skipped_labels"

    def __init__(self, skipped: SkippedLabels, log: Callable[[str], None]) -> None:
        self.skipped, self.log = skipped, log
        self.first_epoch: int | None = None
        self.told = False

    def before_train(self, state: TrainState) -> None:
        self.first_epoch = state.epoch

    def before_step(self, state: TrainState) -> None:
        if state.epoch != self.first_epoch:
            self.tell()

    def after_validation(self, state: TrainState, metrics: Mapping[str, Any], is_best: bool) -> None:
        if state.epoch != self.first_epoch:
            self.tell()

    def after_train(self, state: TrainState) -> None:
        self.tell()

    def tell(self) -> None:
        """The summary line, once."""
        if not self.told and self.skipped.lines:
            self.log(self.skipped.summary())
        self.told = True


class CheckpointHook(Hook):
    """``last.pth`` every ``interval`` steps (with the checkpointer's numbered files) and when
    training ends or is interrupted, not after a crash (the last good file stays); ``best.pth``
    whenever validation improves the metric."""

    name = "checkpoint"

    def __init__(self, checkpointer: Checkpointer, interval: int) -> None:
        self.checkpointer, self.interval = checkpointer, interval

    def after_step(self, state: TrainState) -> None:
        if state.step % self.interval == 0:
            self.checkpointer.save_periodic(state.step)

    def after_validation(self, state: TrainState, metrics: Mapping[str, Any], is_best: bool) -> None:
        if is_best:
            self.checkpointer.save(BEST)

    def after_train(self, state: TrainState) -> None:
        if not state.failed:
            self.checkpointer.save(LAST)


class EarlyStopHook(Hook):
    """Ends training when ``patience`` validations in a row do not raise the metric (higher is
    better) by more than ``min_delta`` over the best so far. Config key ``early_stop =
    dict(patience=N, min_delta=d)``. The count and the best travel in checkpoints, so a resumed run
    counts on; resuming a run that stopped early stops again at once (raise the patience to go on).
    The validation at ``total_iter`` counts but asks for no stop: training ends there anyway."""

    name = "early_stop"

    def __init__(self, patience: int, total_iter: int, min_delta: float = 0.0) -> None:
        self.patience, self.total_iter, self.min_delta = patience, total_iter, float(min_delta)
        self.best, self.best_step, self.bad = -math.inf, -1, 0

    @classmethod
    def from_config(cls, spec: Any, total_iter: int) -> "EarlyStopHook":
        """From ``early_stop = dict(patience=N, min_delta=d)``; ConfigError names what is wrong."""
        if not isinstance(spec, Mapping) or "patience" not in spec or set(spec) - {"patience", "min_delta"}:
            raise ConfigError(f"early_stop should be dict(patience=N, min_delta=d) (min_delta optional), got {spec!r}")
        patience, min_delta = spec["patience"], spec.get("min_delta", 0.0)
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ConfigError(f"early_stop.patience should be a whole number >= 1, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or not 0 <= min_delta < math.inf:
            raise ConfigError(f"early_stop.min_delta should be a number >= 0, got {min_delta!r}")
        return cls(patience, total_iter, min_delta)

    def reason(self) -> str:
        return (f"early stop: no improvement of the metric by more than {self.min_delta:g} in {self.patience} "
                f"validations (best {self.best:.4f} at step {self.best_step})")

    def before_train(self, state: TrainState) -> None:
        if self.bad >= self.patience:
            state.request_stop(self.reason() + "; resumed a run that had stopped early (raise early_stop.patience to go on)")

    def after_validation(self, state: TrainState, metrics: Mapping[str, Any], is_best: bool) -> None:
        metric = float(metrics["metric"])
        if metric > self.best + self.min_delta:
            self.best, self.best_step, self.bad = metric, state.step, 0
        else:
            self.bad += 1
        if self.bad >= self.patience and state.step < self.total_iter:
            state.request_stop(self.reason())

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            self.best, self.best_step, self.bad = float(state["best"]), int(state["best_step"]), int(state["bad"])
