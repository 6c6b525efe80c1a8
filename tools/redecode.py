"""Decode saved network outputs again with other thresholds: tune them without the network.

    python tools/redecode.py RAW_DIR [--config CONFIG] [--set KEY=VALUE ...] [--conf-threshold T [T ...]]
                             [--nms-thres T [T ...]] [--nms-topk K [K ...]]
                             [--split SPLIT] [--json OUT] [--out DIR] [--format culane|tusimple|curvelanes]

RAW_DIR: the <out>/raw folder of `tools/predict.py --save-raw` (srlane.inference.raw,
docs/outputs.md: the network's outputs before the score threshold and NMS, the config they were
made with and per row the image or video frame, its size and its crop rows). Each row is
decoded with its own crop and height, as validation and predict.py decode it.

CONFIG (default: the config named in index.json; --set overrides its keys as main.py's does)
gives the decoding defaults (test_parameters.conf_threshold, nms_thres, nms_topk) and, for
--split, the benchmark; its img_w, img_h and num_points must be those the outputs were made
with. Several values of --conf-threshold, --nms-thres and --nms-topk decode every combination.

--split S   scores each combination on split S of the config's benchmark (build_benchmark: CULane
            F1, TuSimple accuracy, CurveLanes F1): every image of the split must have a row (matched
            by the name as the list gives it: predict.py on the split's list file with --root at the
            data root); prints one line per combination, its "metric" and the lanes found.
            With the config's thresholds the metric is the one validation reports for the
            same network (the same outputs, the same decoder and evaluator).
--json OUT  the combinations and their full metrics as json.
--out DIR   prediction files of one combination, as predict.py writes them (--format for images;
            <video name without extension>.lanes.jsonl for video frames).
Bad input (missing or malformed raw files, outputs of another geometry) stops with one line.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from tqdm import tqdm

from srlane.benchmarks import BENCHMARKS, build_benchmark
from srlane.cli import add_set_argument, at_least, run_cli
from srlane.data.crop import build_crop
from srlane.data.records import LaneRecord
from srlane.engine.defaults import load_experiment
from srlane.fileio import atomic_write_text
from srlane.inference.raw import RawError, check_geometry, decode_rows, load_raw, split_rows
from srlane.inference.video import lanes_jsonl
from srlane.lanes import Lane
from srlane.models.decode import build_decoder

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", metavar="RAW_DIR", help="<out>/raw of predict.py --save-raw")
    parser.add_argument("--config", help="experiment config (default: the one named in RAW_DIR/index.json)")
    add_set_argument(parser)
    parser.add_argument("--conf-threshold", type=float, nargs="+", metavar="T",
                        help="lane score thresholds (default: the config's test_parameters.conf_threshold)")
    parser.add_argument("--nms-thres", type=float, nargs="+", metavar="T",
                        help="NMS thresholds (default: the config's test_parameters.nms_thres)")
    parser.add_argument("--nms-topk", type=at_least(1), nargs="+", metavar="K",
                        help="lanes kept per image at most (default: the config's test_parameters.nms_topk)")
    parser.add_argument("--split", help="score on this split of the config's benchmark (e.g. test, val)")
    parser.add_argument("--json", metavar="OUT", help="write the combinations and their metrics here")
    parser.add_argument("--out", metavar="DIR", help="write the prediction files of one combination here")
    parser.add_argument("--format", choices=tuple(BENCHMARKS), default="culane",
                        help="prediction files for images with --out (default: culane)")
    args = parser.parse_args(argv)
    if not (args.split or args.out):
        parser.error("give --split (score) or --out (write prediction files), or both")
    return args


def write_outputs(out: str, fmt: str, cfg: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                  lanes: Sequence[Sequence[Lane]]) -> None:
    """Prediction files as predict.py writes them: the images' in ``fmt``, one ``.lanes.jsonl``
    per video."""
    images = [i for i, row in enumerate(rows) if "frame" not in row]
    if images:
        records = [LaneRecord(str(rows[i]["name"]), str(rows[i]["name"]), img_size=tuple(rows[i]["size"]))
                   for i in images]
        BENCHMARKS[fmt](".", build_crop(cfg)).write_predictions(records, [lanes[i] for i in images], out)
    videos: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if "frame" in row:
            videos.setdefault(str(row["name"]), []).append(i)
    for name, indices in videos.items():
        with lanes_jsonl(os.path.join(out, os.path.splitext(name)[0] + ".lanes.jsonl")) as write:
            for i in indices:
                height, width = rows[i]["size"]
                write(rows[i]["frame"], rows[i].get("time"), lanes[i], width, height, rows[i]["crop"])


def redecode(args: argparse.Namespace) -> list[dict]:
    """Run the command line; returns one entry per combination (thresholds, lanes, metrics)."""
    outputs, index = load_raw(args.raw)
    config = args.config or index.get("config")
    if not config or not os.path.isfile(config):
        raise RawError(f"the config {config!r} of {args.raw}/index.json is not there; give --config")
    cfg = load_experiment(config, args.set)
    check_geometry(outputs, index, cfg, config)
    decoders = [build_decoder(cfg, conf_threshold=conf, nms_thres=nms_thres, top_k=top_k)
                for conf, nms_thres, top_k in itertools.product(args.conf_threshold or [None], args.nms_thres or [None],
                                                                args.nms_topk or [None])]
    if args.out and len(decoders) > 1:
        raise RawError(f"--out writes the files of one combination; {len(decoders)} given")
    rows = index["rows"]
    evaluate, order = None, None
    if args.split:
        benchmark = build_benchmark(cfg)
        records = benchmark.read_split(args.split, False)
        order = split_rows(rows, records, args.split)
        evaluate = benchmark.evaluator(records)
        print(f"{len(order)} images of split {args.split!r} ({cfg['dataset']['type']}), "
              f"{len(rows) - len(order)} other rows not scored")
    chosen_outputs = outputs if order is None else outputs[order]
    chosen_rows = rows if order is None else [rows[i] for i in order]
    results = []
    bar = tqdm(total=len(decoders) * len(chosen_rows), desc=f"Redecode {len(decoders)} combination(s)", unit="img",
               dynamic_ncols=True)
    for decoder in decoders:
        bar.set_postfix_str(f"conf {decoder.conf_threshold:g} nms {decoder.nms_thres:g} topk {decoder.top_k}")
        lanes = decode_rows(chosen_outputs, chosen_rows, decoder, bar.update)
        entry: dict[str, Any] = {"conf_threshold": decoder.conf_threshold, "nms_thres": decoder.nms_thres,
                                 "nms_topk": decoder.top_k, "lanes": sum(map(len, lanes))}
        if evaluate is not None:
            entry["metrics"] = evaluate(lanes)
            tqdm.write(f"conf_threshold {decoder.conf_threshold:g}  nms_thres {decoder.nms_thres:g}  "
                  f"nms_topk {decoder.top_k}  lanes {entry['lanes']}  metric {entry['metrics']['metric']:.4f}")
        if args.out:
            all_lanes = lanes if order is None else decode_rows(outputs, rows, decoder)
            write_outputs(args.out, args.format, cfg, rows, all_lanes)
            tqdm.write(f"wrote the prediction files of {len(rows)} rows to {os.path.abspath(args.out)}")
        results.append(entry)
    bar.close()
    if evaluate is not None and len(results) > 1:
        best = max(results, key=lambda e: e["metrics"]["metric"])
        print(f"best: conf_threshold {best['conf_threshold']:g}  nms_thres {best['nms_thres']:g}  "
              f"nms_topk {best['nms_topk']}  metric {best['metrics']['metric']:.4f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2, default=to_json) + "\n")
    return results


def to_json(value: Any) -> Any:
    """numpy scalars and arrays in metrics as plain json."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not json serialisable")


def main(argv: Sequence[str] | None = None) -> list[dict]:
    return redecode(parse_args(argv))


if __name__ == "__main__":
    run_cli(main, ValueError)  # RawError is a ValueError
