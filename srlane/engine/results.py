"""A run's result files, beside its checkpoints, each written atomically (json):

- ``results.json``: ``{"validations": [entry, ...]}``, every validation of the run in order;
- ``best.json``: the entry of the best validation and ``"checkpoint"``, the path of ``best.pth``
  (written with it, so the two hold the same validation);
- ``latest.json``: the entry of the latest validation and ``"checkpoint"``, the path of ``last.pth``
  (the run's newest checkpoint: at the end of a run, the weights of that last validation).

An entry (``validation_entry``): ``step``, ``epoch``, ``metric`` (what picks the best checkpoint),
``best`` (whether it was the best so far), ``categories`` (per category: tp, fp, fn, precision,
recall, f1 at the metric's IoU; CULane), ``metrics`` (all the benchmark's numbers, as the log's
table prints them), ``thresholds`` (the decoder's ``test_parameters``), ``wall_time`` (seconds
since this process began training or validating) and ``time`` (UTC, ISO 8601). A resumed run
keeps the entries up to the step (and epoch) it resumes from. ``main.py --validate-only`` writes a
``results.json`` of one entry (step and epoch null, ``checkpoint`` the weights it validated).
"""
from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from srlane.benchmarks.base import headline_counts
from srlane.engine.hooks import Hook
from srlane.engine.kind_report import write_kind_text
from srlane.engine.state import TrainState
from srlane.fileio import atomic_write_json

if TYPE_CHECKING:
    from srlane.engine.runner import Runner

RESULTS, BEST_RESULT, LATEST_RESULT = "results.json", "best.json", "latest.json"


def validation_entry(metrics: Mapping[str, Any], step: int | None, epoch: int | None, thresholds: Mapping[str, Any],
                     wall_time: float, best: bool | None = None) -> dict[str, Any]:
    """One validation as the result files hold it (see the module's docstring)."""
    categories = metrics.get("categories")
    entry = {"step": step, "epoch": epoch, "metric": float(metrics["metric"]), "best": best}
    if isinstance(categories, Mapping):
        entry["categories"] = {name: dict(headline_counts(value)) for name, value in categories.items()}
    entry.update(metrics=dict(metrics), thresholds=dict(thresholds), wall_time=round(wall_time, 3),
                 time=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return entry


def write_results(folder: str, validations: list[dict[str, Any]]) -> str:
    """``<folder>/results.json`` holding ``validations``; returns its path."""
    path = os.path.join(folder, RESULTS)
    atomic_write_json(path, {"validations": validations})
    return path


def read_results(folder: str) -> list[dict[str, Any]]:
    """The validations of ``<folder>/results.json`` (none when there is no such file)."""
    path = os.path.join(folder, RESULTS)
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return list(json.load(f)["validations"])


class ResultsHook(Hook):
    """The result files of a training run in ``folder`` (rank 0), after every validation; runs
    after the checkpoint hook, so ``best.json`` is written once ``best.pth`` is."""

    name = "results"

    def __init__(self, folder: str, is_main: bool, thresholds: Mapping[str, Any], best_checkpoint: str,
                 last_checkpoint: str) -> None:
        self.folder, self.is_main, self.thresholds = folder, is_main, dict(thresholds)
        self.best_checkpoint, self.last_checkpoint = best_checkpoint, last_checkpoint
        self.validations: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    def before_train(self, state: TrainState) -> None:
        """Keep the validations a resumed run had made by its checkpoint: up to its step and epoch
        (a checkpoint written at the end of an epoch, before that epoch's validation, leads to the
        validation again)."""
        self.started = time.perf_counter()
        if self.is_main:
            self.validations = [v for v in read_results(self.folder)
                                if v["step"] is not None and (v["step"], v["epoch"]) <= (state.step, state.epoch)]

    def after_validation(self, state: TrainState, metrics: Mapping[str, Any], is_best: bool) -> None:
        if not self.is_main:
            return
        entry = validation_entry(metrics, state.step, state.epoch, self.thresholds,
                                 time.perf_counter() - self.started, is_best)
        self.validations.append(entry)
        write_results(self.folder, self.validations)
        if is_best:
            atomic_write_json(os.path.join(self.folder, BEST_RESULT), {**entry, "checkpoint": self.best_checkpoint})
        atomic_write_json(os.path.join(self.folder, LATEST_RESULT), {**entry, "checkpoint": self.last_checkpoint})


def validate_once(runner: Runner, thresholds: Mapping[str, Any], checkpoint: str | None,
                  then: Callable[[], None] | None = None) -> dict:
    """``main.py --validate-only``: validate, log the table (and the numbers at step 0 to the
    trackers), write ``results.json`` of this one validation in the run folder (an artifact where
    the trackers keep them), run ``then`` (e.g. the report), end the record; returns the metrics."""
    started = time.perf_counter()
    metrics = runner.validate()
    recorder = runner.recorder
    if recorder.is_main:
        entry = validation_entry(metrics, None, None, thresholds, time.perf_counter() - started)
        path = write_results(recorder.work_dir, [{**entry, "checkpoint": checkpoint}])
        for tracker in runner.fabric.loggers:
            tracker.log_artifact(path)
        recorder.info(f"wrote {path}")
    if then is not None:
        then()
    recorder.log_validation(metrics, 0, f"metrics of {checkpoint or 'the initial weights'}")  # the table ends the log
    write_kind_text(runner.fabric.loggers, metrics, 0)
    recorder.close()
    return metrics
