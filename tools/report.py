"""An evaluation report to look at: report.html (no script, no network; PNG files beside it) and
report.json with the same numbers.

    python tools/report.py SOURCE --out DIR [--config CONFIG] [--set KEY=VALUE ...] [--split SPLIT]
                           [--gallery N] [--conf-thresholds T [T ...]] [--run RUN_DIR]

SOURCE is one of
  - the output folder of `tools/predict.py --save-raw` on a split's list file (its raw/), or that
    raw/ folder itself;
  - a run folder: its training curves (TensorBoard events, else log.txt; results.json when there)
    and, when it has a raw/ folder (main.py --validate-only --report writes one), everything below;
    without one, the table of its last validation.
From raw outputs: the per-category table at the config's thresholds (the metric validation
reports), F1, precision and recall against the confidence threshold (each threshold decoded
again from the outputs, as tools/redecode.py does), the F1 at IoU 0.1 to 0.9 and a gallery of the
images with the most false positive and false negative lanes (TP, FP and FN lanes in their
colours). IoU curve and gallery: CULane-layout benchmarks.

CONFIG: default the config named in raw/index.json, else the run folder's config.py. --split:
default the config's dataset.val_split. --run: the training run whose curves to show (default
SOURCE when it is a run folder). Bad input stops with one line.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from srlane.benchmarks import build_benchmark
from srlane.cli import add_set_argument, at_least, run_cli
from srlane.config import ConfigError
from srlane.engine.defaults import load_experiment
from srlane.inference.raw import check_geometry, load_raw
from srlane.report.analysis import CONF_THRESHOLDS, split_outputs
from srlane.report.build import build_report

RUN_FILES = ("log.txt", "tensorboard", "results.json")  # what makes a folder a run folder


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="SOURCE", help="a run folder, predict.py --save-raw's output or its raw/")
    parser.add_argument("--out", required=True, metavar="DIR", help="the report's folder (report.html)")
    parser.add_argument("--config", help="experiment config (default: raw/index.json's, else SOURCE/config.py)")
    add_set_argument(parser)
    parser.add_argument("--split", help="the split the raw outputs are of (default: the config's dataset.val_split)")
    parser.add_argument("--gallery", type=at_least(0), default=12, metavar="N", help="worst images shown (default 12)")
    parser.add_argument("--conf-thresholds", type=float, nargs="+", default=list(CONF_THRESHOLDS), metavar="T",
                        help="confidence thresholds of the curve (default 0.05 to 0.95 by 0.05)")
    parser.add_argument("--run", metavar="RUN_DIR", help="training run whose curves to show (default: SOURCE if a run)")
    return parser.parse_args(argv)


def raw_folder(source: str) -> str | None:
    """SOURCE itself when it holds raw outputs, else its raw/ when that does, else None."""
    for folder in (source, os.path.join(source, "raw")):
        if os.path.isfile(os.path.join(folder, "index.json")):
            return folder
    return None


def report(args: argparse.Namespace) -> str:
    """Run the command line; returns the path of report.html."""
    if not os.path.isdir(args.source):
        raise FileNotFoundError(f"{args.source}: no such folder (a run folder or predict.py --save-raw's output)")
    raw = raw_folder(args.source)
    run_dir = args.run or (args.source if any(os.path.exists(os.path.join(args.source, f)) for f in RUN_FILES)
                           else None)
    if raw is None and run_dir is None:
        raise FileNotFoundError(f"{args.source} has no raw outputs (index.json, raw/index.json) and is no run folder "
                                f"({', '.join(RUN_FILES)})")
    outputs, index = load_raw(raw) if raw else (None, {})
    config = args.config or index.get("config") or os.path.join(args.source, "config.py")
    if not os.path.isfile(config):
        raise ConfigError(f"config {config} not found; give --config")
    cfg = load_experiment(config, args.set)
    benchmark = build_benchmark(cfg)
    facts = [("source", os.path.abspath(args.source)), ("config", os.path.abspath(config))]
    chosen = None
    if outputs is not None:
        check_geometry(outputs, index, cfg, config)
        split = args.split or cfg.dataset.val_split
        records = benchmark.read_split(split, False)
        chosen = split_outputs(outputs, index, records, split)
        tp = cfg.test_parameters
        facts += [("split", f"{split} of {cfg.dataset.type} ({len(records)} images)"),
                  ("decoding", f"conf_threshold {tp.conf_threshold:g}, nms_thres {tp.nms_thres:g}, "
                               f"nms_topk {tp.nms_topk}")]
    if run_dir:
        facts.append(("training run", os.path.abspath(run_dir)))
    path = build_report(args.out, cfg, benchmark, chosen, run_dir, facts, args.gallery, args.conf_thresholds)
    print(f"wrote {os.path.abspath(path)}")
    return path


def main(argv: Sequence[str] | None = None) -> str:
    return report(parse_args(argv))


if __name__ == "__main__":
    run_cli(main, ValueError)  # RawError is a ValueError
