"""Hooks: what happens around the training step (logging, checkpoints, early stopping) lives here.

A hook overrides any of ``before_train``, ``before_step``, ``after_step``, ``after_validation``
and ``after_train``; each receives the runner. ``state_dict``/``load_state_dict`` let a hook's
state travel in checkpoints so a resumed run continues exactly.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from srlane.config import ConfigError
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


ITER_CHECKPOINT = re.compile(r"iter_(\d+)\.pth")  # iter_<step>.pth


class CheckpointHook(Hook):
    """``last.pth`` every ``interval`` steps and when training ends or is interrupted;
    ``best.pth`` whenever validation improves the metric. With ``keep_iter`` > 0, every
    ``interval`` steps also ``iter_<step>.pth``, keeping the newest ``keep_iter`` of them (files of
    later steps, left by a run resumed from an earlier checkpoint, stay until overwritten)."""

    name = "checkpoint"

    def __init__(self, interval: int, keep_iter: int = 0) -> None:
        if not isinstance(keep_iter, int) or isinstance(keep_iter, bool) or keep_iter < 0:
            raise ConfigError(f"keep_iter_checkpoints should be a whole number >= 0 (0: off), got {keep_iter!r}")
        self.interval = interval
        self.keep_iter = keep_iter

    def after_step(self, runner: "Runner") -> None:
        if runner.step % self.interval == 0:
            if self.keep_iter:
                runner.save_checkpoint("last.pth", f"iter_{runner.step}.pth")
                if runner.fabric.is_global_zero:
                    self.remove_old_iter_checkpoints(runner.work_dir, runner.step)
            else:
                runner.save_checkpoint("last.pth")

    def remove_old_iter_checkpoints(self, folder: str, step: int) -> None:
        """Delete ``iter_<s>.pth`` files of steps up to ``step`` but the newest ``keep_iter``."""
        steps = sorted(int(m.group(1)) for m in map(ITER_CHECKPOINT.fullmatch, os.listdir(folder)) if m)
        older = [s for s in steps if s <= step][:-self.keep_iter]
        for old in older:
            os.remove(os.path.join(folder, f"iter_{old}.pth"))

    def after_validation(self, runner: "Runner", metrics: Mapping[str, Any], is_best: bool) -> None:
        if is_best:
            runner.save_checkpoint("best.pth")

    def after_train(self, runner: "Runner") -> None:
        if not runner.failed:
            runner.save_checkpoint("last.pth")


class EarlyStopHook(Hook):
    """Ends training when ``patience`` validations in a row do not raise the metric (higher is
    better) by more than ``min_delta`` over the best so far. Config key ``early_stop =
    dict(patience=N, min_delta=d)``. The count and the best travel in checkpoints, so a resumed run
    counts on; resuming a run that stopped early stops again at once (raise the patience to go on).
    The validation at ``total_iter`` counts but asks for no stop: training ends there anyway."""

    name = "early_stop"

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, float(min_delta)
        self.best, self.best_step, self.bad = -math.inf, -1, 0

    @classmethod
    def from_config(cls, spec: Any) -> "EarlyStopHook":
        """From ``early_stop = dict(patience=N, min_delta=d)``; ConfigError names what is wrong."""
        if not isinstance(spec, Mapping) or "patience" not in spec or set(spec) - {"patience", "min_delta"}:
            raise ConfigError(f"early_stop should be dict(patience=N, min_delta=d) (min_delta optional), got {spec!r}")
        patience, min_delta = spec["patience"], spec.get("min_delta", 0.0)
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ConfigError(f"early_stop.patience should be a whole number >= 1, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or isinstance(min_delta, bool) or not 0 <= min_delta < math.inf:
            raise ConfigError(f"early_stop.min_delta should be a number >= 0, got {min_delta!r}")
        return cls(patience, min_delta)

    def reason(self) -> str:
        return (f"early stop: no improvement of the metric by more than {self.min_delta:g} in {self.patience} "
                f"validations (best {self.best:.4f} at step {self.best_step})")

    def before_train(self, runner: "Runner") -> None:
        if self.bad >= self.patience:
            runner.request_stop(self.reason() + "; resumed a run that had stopped early (raise early_stop.patience to go on)")

    def after_validation(self, runner: "Runner", metrics: Mapping[str, Any], is_best: bool) -> None:
        metric = float(metrics["metric"])
        if metric > self.best + self.min_delta:
            self.best, self.best_step, self.bad = metric, runner.step, 0
        else:
            self.bad += 1
        if self.bad >= self.patience and runner.step < runner.total_iter:
            runner.request_stop(self.reason())

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state:
            self.best, self.best_step, self.bad = float(state["best"]), int(state["best_step"]), int(state["bad"])
