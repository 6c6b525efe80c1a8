"""What a run folder tells of its training: the TensorBoard scalars (``srlane.engine.recorder``
writes ``train/<loss>``, ``train/lr`` and ``val/<metric path>``), else the log lines of
``log.txt``, and the validations of a ``results.json`` when the run wrote one."""
from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Mapping
from typing import Any

Curve = tuple[list[int], list[float]]  # steps, values

LOG_LINE = re.compile(r"epoch: \d+ step: (\d+) lr: (\S+) (.*?) data: ")
LOG_VALUE = re.compile(r"(\S+): ([-+0-9.eE]+|nan|inf)")


def event_files(run_dir: str) -> list[str]:
    """The TensorBoard event files under ``run_dir``, oldest first (a resumed run appends files)."""
    found = glob.glob(os.path.join(run_dir, "**", "events.out.tfevents.*"), recursive=True)
    return sorted(found, key=os.path.getmtime)


def tensorboard_curves(run_dir: str) -> dict[str, Curve]:
    """Every scalar tag of the run's event files; where files repeat a step, the later one's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points: dict[str, dict[int, float]] = {}
    for path in event_files(run_dir):
        events = EventAccumulator(path, size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags().get("scalars", []):
            points.setdefault(tag, {}).update((e.step, e.value) for e in events.Scalars(tag))
    return {tag: (sorted(values), [values[s] for s in sorted(values)]) for tag, values in points.items()}


def log_curves(log_path: str) -> dict[str, Curve]:
    """``train/lr`` and ``train/<loss>`` from the log lines of ``log.txt`` (a run without events)."""
    curves: dict[str, Curve] = {}
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            found = LOG_LINE.search(line)
            if not found:
                continue
            step = int(found.group(1))
            for name, value in [("lr", found.group(2)), *LOG_VALUE.findall(found.group(3))]:
                steps, values = curves.setdefault(f"train/{name}", ([], []))
                steps.append(step)
                values.append(float(value))
    return curves


def validations(run_dir: str) -> list[dict]:
    """The validations of ``run_dir/results.json`` (a list of them, or a dict holding the list
    under ``validations`` or ``results``), each with a ``step`` and its metrics; [] without it."""
    path = os.path.join(run_dir, "results.json")
    if not os.path.isfile(path):
        return []
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return []
    if isinstance(data, Mapping):
        data = data.get("validations", data.get("results", []))
    return [entry for entry in data if isinstance(entry, Mapping) and "step" in entry] if isinstance(data, list) else []


def entry_metrics(entry: Mapping[str, Any]) -> dict:
    """The metrics dict of a ``results.json`` validation: its ``metrics`` or the entry itself."""
    metrics = entry.get("metrics", entry)
    return dict(metrics) if isinstance(metrics, Mapping) else {}


def training_curves(run_dir: str) -> dict[str, Curve]:
    """The run's scalar curves: TensorBoard's (else ``log.txt``'s), ``val/metric`` from
    ``results.json`` where it has validations."""
    curves = tensorboard_curves(run_dir)
    log_path = os.path.join(run_dir, "log.txt")
    if not any(tag.startswith("train/") for tag in curves) and os.path.isfile(log_path):
        curves.update(log_curves(log_path))
    done = [(int(e["step"]), entry_metrics(e).get("metric")) for e in validations(run_dir)]
    done = [(step, float(value)) for step, value in done if isinstance(value, (int, float))]
    if done:
        curves["val/metric"] = ([s for s, _ in done], [v for _, v in done])
    return curves


def nested(flat: Mapping[str, float]) -> dict:
    """``{"a/b": 1}`` -> ``{"a": {"b": 1}}`` (the inverse of the recorder's ``flat_metrics``)."""
    out: dict = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


COUNTS = ("tp", "fp", "fn")  # integers in the metrics; TensorBoard keeps floats


def last_validation(run_dir: str, curves: Mapping[str, Curve]) -> tuple[int, dict] | None:
    """The step and metrics of the run's last validation: ``results.json``'s, else the ``val/``
    scalars at their last step; None when the run has not validated."""
    done = validations(run_dir)
    if done:
        return int(done[-1]["step"]), entry_metrics(done[-1])
    tags = {tag[4:]: curve for tag, curve in curves.items() if tag.startswith("val/") and curve[0]}
    if not tags:
        return None
    step = max(curve[0][-1] for curve in tags.values())
    flat = {name: curve[1][curve[0].index(step)] for name, curve in tags.items() if step in curve[0]}
    flat = {name: int(v) if name.rsplit("/", 1)[-1] in COUNTS else v for name, v in flat.items()}
    return step, nested(flat)
