"""Steady training iteration of a config: where its time goes, and the same step on a cached batch.

Runs the Runner's own loop (loader, ``run_step``, hooks) on the parts ``build_parts`` makes for
a config, without validation or checkpoints, for ``--warmup`` + ``--iters`` iterations (the
synthetic set is generated first when the config asks for it) and
splits each timed iteration into the wait for data (from the end of one step to the start of
the next) and the step (forward, backward, optimizer, on the device, host work included; on CUDA
also the device time between events around it). Then times ``run_step`` on one cached batch, so
the difference is what the data pipeline costs the steady iteration.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch

from srlane.engine.build import build_parts
from srlane.engine.defaults import load_experiment
from srlane.engine.hooks import Hook
from srlane.engine.runner import Runner
from srlane.engine.state import TrainState
from srlane.fileio import atomic_write_text
from srlane.synthetic import preparation
from throughput.data import PROJECT_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=os.path.join(PROJECT_ROOT, "configs", "srlane_r18_synthetic.py"))
    parser.add_argument("--iters", type=int, default=20, help="timed iterations (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="iterations before timing (default 5)")
    parser.add_argument("--accelerator", default=None, help="auto, cpu or cuda (default: the config's)")
    parser.add_argument("--set", nargs="+", default=[], action="extend", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--json", metavar="OUT", help="write the figures as json here")


class StepTimes(Hook):
    """Seconds waiting for data and in the step, per iteration (device time too on CUDA)."""

    name = "step_times"

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.data, self.step, self.events = [], [], []
        self.last_end = self.start = 0.0

    def before_train(self, state: TrainState) -> None:
        self.last_end = time.perf_counter()

    def before_step(self, state: TrainState) -> None:
        self.start = time.perf_counter()
        self.data.append(self.start - self.last_end)
        if self.cuda:
            self.events.append([torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)])
            self.events[-1][0].record()

    def after_step(self, state: TrainState) -> None:
        if self.cuda:
            self.events[-1][1].record()
            torch.cuda.synchronize()
        self.last_end = time.perf_counter()
        self.step.append(self.last_end - self.start)

    def device_ms(self) -> list[float]:
        return [begin.elapsed_time(end) for begin, end in self.events]


def cached_step_ms(runner: Runner, iters: int) -> float:
    """Median milliseconds of ``run_step`` on one batch kept on the device."""
    runner.state.batch_in_epoch = 0  # the first batch of the current epoch, whether or not training used it up
    batches = next(iter(runner.train_batches()))
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        runner.run_step(batches)
        if runner.fabric.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def run(args: argparse.Namespace) -> None:
    overrides = [*args.set, f"total_iter={args.warmup + args.iters}"] + (
        [f"accelerator={args.accelerator!r}"] if args.accelerator else [])
    cfg = load_experiment(args.config, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        parts = build_parts(cfg, os.path.join(tmp, "run"), prepare=preparation(cfg.dataset, int(cfg.workers)))
        times = StepTimes(parts.fabric.device.type == "cuda")
        runner = parts.runner(validate=None, hooks=[times])  # the iterations are what is timed
        runner.train()
        cached = cached_step_ms(runner, args.iters)
    data, step = (1000 * statistics.median(v[args.warmup:]) for v in (times.data, times.step))
    device = statistics.median(times.device_ms()[args.warmup:]) if times.cuda else None
    iteration = data + step
    result = {"config": args.config, "device": runner.fabric.device.type, "batch_size": int(cfg.batch_size),
              "workers": int(cfg.workers), "iters": args.iters, "iteration_ms": iteration, "data_wait_ms": data,
              "step_ms": step, "device_step_ms": device, "cached_batch_step_ms": cached,
              "data_wait_share": data / iteration, "iteration_vs_cached": iteration / cached,
              "load_average": list(os.getloadavg())}
    rows = [("device", f"{result['device']}, batch {result['batch_size']}, {result['workers']} workers"),
            ("steady iteration ms (median)", f"{iteration:.1f}"),
            ("  waiting for data ms", f"{data:.1f} ({100 * data / iteration:.0f}%)"),
            ("  step ms (host + device)", f"{step:.1f}"),
            ("  device time of the step ms", "-" if device is None else f"{device:.1f}"),
            ("step on a cached batch ms", f"{cached:.1f}"),
            ("iteration / cached step", f"{iteration / cached:.2f}x")]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name.ljust(width)}  {value}" for name, value in rows))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
