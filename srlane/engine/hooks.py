"""Hooks: what happens around the training step (logging, checkpoints) lives here.

A hook overrides any of ``before_train``, ``before_step``, ``after_step``, ``after_validation``
and ``after_train``; each receives the runner. ``state_dict``/``load_state_dict`` let a hook's
state travel in checkpoints so a resumed run continues exactly.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from srlane.engine.recorder import Timer

if TYPE_CHECKING:
    from srlane.engine.runner import Runner


class Hook:
    """Base class: every method does nothing. ``name`` keys the hook's state in checkpoints."""

    name = "hook"

    def before_train(self, runner: "Runner") -> None:
        pass

    def before_step(self, runner: "Runner") -> None:
        pass

    def after_step(self, runner: "Runner") -> None:
        pass

    def after_validation(self, runner: "Runner", metrics: Mapping[str, Any], is_best: bool) -> None:
        pass

    def after_train(self, runner: "Runner") -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class LoggerHook(Hook):
    """Timings, smoothed losses and the log line every ``interval`` steps; the metric table."""

    name = "logger"

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.timer = Timer()
        self.data_time = 0.0

    def before_train(self, runner: "Runner") -> None:
        runner.recorder.start_bar(runner.step)
        self.timer.lap()

    def before_step(self, runner: "Runner") -> None:
        self.data_time = self.timer.lap()

    def after_step(self, runner: "Runner") -> None:
        batch_time = self.data_time + self.timer.lap()
        runner.recorder.update(runner.step_losses, self.data_time, batch_time)
        if runner.step % self.interval == 0 or runner.step == runner.total_iter:
            lr = runner.optimizer.param_groups[0]["lr"]
            runner.recorder.log_train(runner.epoch, runner.step, lr, runner.counters())

    def after_validation(self, runner: "Runner", metrics: Mapping[str, Any], is_best: bool) -> None:
        runner.recorder.log_validation(metrics, runner.step)
        if is_best:
            runner.recorder.info(f"new best metric {metrics['metric']:.4f} at step {runner.step}")
        self.timer.lap()


class CheckpointHook(Hook):
    """``last.pth`` every ``interval`` steps and when training ends or is interrupted;
    ``best.pth`` whenever validation improves the metric."""

    name = "checkpoint"

    def __init__(self, interval: int) -> None:
        self.interval = interval

    def after_step(self, runner: "Runner") -> None:
        if runner.step % self.interval == 0:
            runner.save_checkpoint("last.pth")

    def after_validation(self, runner: "Runner", metrics: Mapping[str, Any], is_best: bool) -> None:
        if is_best:
            runner.save_checkpoint("best.pth")

    def after_train(self, runner: "Runner") -> None:
        if not runner.failed:
            runner.save_checkpoint("last.pth")
