"""This checkout against another one of the project (an older commit): training item and step, in one run.

    git worktree add ../srlane-1fdd21a 1fdd21a
    python tools/benchmark.py versus --baseline ../srlane-1fdd21a [--pairs 5] [--json OUT]

Fresh processes in pairs, the baseline's and ours one after the other (which goes first
alternates), so that both see the same machine load; each process imports its own checkout's
``srlane`` (``PYTHONPATH``) with this interpreter:

- training item: the checkout's own ``tools/benchmark.py data`` (one process, one thread, the
  same generated 1640x590 JPEGs), CPU milliseconds per training item (read, crop, resize,
  augmentation, targets: what a loader worker spends on it);
- training step: the checkout's own ``Runner.run_step`` with its CULane config at batch 8,
  800x320, float32 on the CPU (the checkout's defaults otherwise: memory format, optimizer), on
  one batch made by its own ``to_tensor`` and ``encode_lanes``; median milliseconds.

Prints the medians over the pairs and ours / baseline, beside the goals.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from srlane.fileio import atomic_write_text

GOALS = {"item_cpu_ms": 0.7, "step_ms": 0.8}  # ours / baseline at most
LABELS = {"item_cpu_ms": "training item, CPU ms (one thread)", "step_ms": "training step, ms (batch 8, fp32)"}
CONFIG = "configs/srlane_r18_culane.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", required=True, metavar="DIR", help="the other checkout (e.g. a git worktree)")
    parser.add_argument("--pairs", type=int, default=5, help="pairs of fresh processes per figure (default 5)")
    parser.add_argument("--items", type=int, default=300, help="training items per item measurement (default 300)")
    parser.add_argument("--iters", type=int, default=5, help="timed steps per step measurement (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="steps before timing (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the step (default: torch's)")
    parser.add_argument("--set", nargs="+", default=[], action="extend", metavar="KEY=VALUE",
                        help="config overrides of both checkouts' step (keys both know)")
    parser.add_argument("--json", metavar="OUT", help="write the figures as json here")


def step_ms(config: str, batch: int, warmup: int, iters: int, overrides: Sequence[str] = ()) -> float:
    """Median milliseconds of the importable checkout's ``Runner.run_step`` (run in a child)."""
    # imported here, in the child whose PYTHONPATH names the checkout being measured
    import time

    import numpy as np
    import torch

    from srlane.data.dataset import to_tensor
    from srlane.data.targets import encode_lanes
    from srlane.engine.defaults import load_experiment

    try:  # the Runner made from its parts
        from srlane.engine.build import build_runner
    except ImportError:  # checkouts from before build_runner: the Runner made its parts from the config
        from srlane.engine.runner import Runner as build_runner

    cfg = load_experiment(config, ["model.backbone.pretrained=False", "precision=32-true", f"batch_size={batch}",
                                   *overrides])
    rng = np.random.default_rng(0)
    ys = np.arange(cfg.img_h - 1, 40, -10.0)
    lanes = [np.stack([x0 + slope * (cfg.img_h - ys), ys], 1) for x0, slope in ((150, 0.6), (350, 0.2), (450, -0.2), (650, -0.6))]
    targets = [encode_lanes(lanes, cfg) for _ in range(batch)]
    images = [to_tensor(rng.integers(0, 256, (cfg.img_h, cfg.img_w, 3), dtype=np.uint8)) for _ in range(batch)]
    # the batch as both collates make it, built here: collate moved (srlane.data.dataset at 1fdd21a,
    # srlane.data.loader now), so no one import serves both checkouts
    data = {"img": torch.stack(images), "gt_lane": torch.stack([torch.from_numpy(t["gt_lane"]) for t in targets]),
            "meta": [{} for _ in range(batch)]}
    for key in ("gt_angle", "gt_seg"):
        data[key] = [torch.stack([torch.from_numpy(t[key][level]) for t in targets]) for level in range(3)]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        runner = build_runner(cfg, tmp)
        data = runner.fabric.to_device(data)
        times = []
        for i in range(warmup + iters):
            start = time.perf_counter()
            runner.run_step([data])
            if i >= warmup:
                times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def _child(tree: str, args: list[str], threads: int | None) -> str:
    # the step on the CPU in both checkouts, also on a machine with a GPU (1fdd21a takes CUDA when it sees it)
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), CUDA_VISIBLE_DEVICES="")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    done = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{tree}: {' '.join(args[:3])} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def measure(tree: str, args: argparse.Namespace) -> dict[str, float]:
    """Both figures of one checkout, each in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "data.json")
        _child(tree, ["tools/benchmark.py", "data", "--items", str(args.items), "--json", out], None)
        with open(out) as handle:
            item_cpu_ms = 1000.0 / json.load(handle)["train_samples_per_cpu_s"]
    code = f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); " \
           f"from versus import step_ms; print(step_ms({CONFIG!r}, 8, {args.warmup}, {args.iters}, {args.set!r}))"
    step = float(_child(tree, ["-c", code], args.threads).strip().splitlines()[-1])
    return {"item_cpu_ms": item_cpu_ms, "step_ms": step}


def run(args: argparse.Namespace) -> dict:
    ours = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    trees = {"baseline": os.path.abspath(args.baseline), "ours": ours}
    if not os.path.isfile(os.path.join(trees["baseline"], "tools", "benchmark.py")):
        raise SystemExit(f"error: --baseline {args.baseline}: not a checkout of the project (no tools/benchmark.py)")
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for pair in range(args.pairs):
        for name in (("baseline", "ours") if pair % 2 == 0 else ("ours", "baseline")):
            samples[name].append(measure(trees[name], args))
            print(f"pair {pair + 1}/{args.pairs} {name:<8} " + "  ".join(f"{k} {v:.2f}" for k, v in samples[name][-1].items()),
                  file=sys.stderr)
    medians = {name: {key: statistics.median(s[key] for s in runs) for key in GOALS} for name, runs in samples.items()}
    ratios = {key: medians["ours"][key] / medians["baseline"][key] for key in GOALS}
    print(f"this checkout against {trees['baseline']}: medians of {args.pairs} pairs of fresh processes; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'figure':<36}{'baseline':>10}{'ours':>10}{'ours/base':>11}{'goal':>8}")
    for key, label in LABELS.items():
        print(f"{label:<36}{medians['baseline'][key]:>10.2f}{medians['ours'][key]:>10.2f}{ratios[key]:>11.3f}"
              f"{'<= ' + format(GOALS[key], '.2f'):>8}")
    result = {"baseline": trees["baseline"], "medians": medians, "ratios": ratios, "goals": GOALS, "samples": samples,
              "load_average_1min": os.getloadavg()[0]}
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    return result
