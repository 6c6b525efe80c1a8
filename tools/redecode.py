"""Decode saved network outputs again with other thresholds: tune them without the network.

    python tools/redecode.py RAW_DIR [--config CONFIG] [--conf-threshold T [T ...]]
                             [--nms-thres T [T ...]] [--nms-topk K [K ...]]
                             [--split SPLIT] [--json OUT] [--out DIR] [--format culane|tusimple|curvelanes]

RAW_DIR: the <out>/raw folder of `tools/predict.py --save-raw` (outputs.npy: float32 (N,
proposals, 4 + num_points), the network's output before the score threshold and NMS;
index.json: the config it was made with, its img_w, img_h, num_points, and per row the image
name (and frame and time for video frames), its size [h, w] and its crop rows). Each row is
decoded with its own crop and height, as validation and predict.py decode it.

CONFIG (default: the config named in index.json) gives the decoding defaults
(test_parameters.conf_threshold, nms_thres, nms_topk) and, for --split, the benchmark; its
img_w, img_h and num_points must be those the outputs were made with. Several values of
--conf-threshold, --nms-thres and --nms-topk decode every combination.

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

import numpy as np
import torch

from srlane.benchmarks import BENCHMARKS, build_benchmark
from srlane.cli import run_cli
from srlane.data.crop import build_crop
from srlane.data.records import LaneRecord
from srlane.data.video import lanes_json_line
from srlane.engine.defaults import load_experiment
from srlane.fileio import atomic_path, atomic_write_text
from srlane.lanes import Lane
from srlane.models.decode import LaneDecoder, build_decoder

RAW_FORMAT = "srlane-raw-outputs/1"  # tools/predict.py writes it
DECODE_CHUNK = 256  # rows per decoder call


class RawError(ValueError):
    """Raw outputs that are missing, malformed or of another geometry than the config's."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raw", metavar="RAW_DIR", help="<out>/raw of predict.py --save-raw")
    parser.add_argument("--config", help="experiment config (default: the one named in RAW_DIR/index.json)")
    parser.add_argument("--conf-threshold", type=float, nargs="+", metavar="T",
                        help="lane score thresholds (default: the config's test_parameters.conf_threshold)")
    parser.add_argument("--nms-thres", type=float, nargs="+", metavar="T",
                        help="NMS thresholds (default: the config's test_parameters.nms_thres)")
    parser.add_argument("--nms-topk", type=int, nargs="+", metavar="K",
                        help="lanes kept per image at most (default: the config's test_parameters.nms_topk)")
    parser.add_argument("--split", help="score on this split of the config's benchmark (e.g. test, val)")
    parser.add_argument("--json", metavar="OUT", help="write the combinations and their metrics here")
    parser.add_argument("--out", metavar="DIR", help="write the prediction files of one combination here")
    parser.add_argument("--format", choices=tuple(BENCHMARKS), default="culane",
                        help="prediction files for images with --out (default: culane)")
    args = parser.parse_args(argv)
    if not (args.split or args.out):
        parser.error("give --split (score) or --out (write prediction files), or both")
    if any(k < 1 for k in args.nms_topk or ()):
        parser.error("--nms-topk values must be at least 1")
    return args


def load_raw(folder: str) -> tuple[np.ndarray, dict]:
    """``outputs.npy`` and ``index.json`` of ``folder``; RawError (one line) when they are missing,
    malformed or disagree."""
    outputs_path, index_path = os.path.join(folder, "outputs.npy"), os.path.join(folder, "index.json")
    for path in (outputs_path, index_path):
        if not os.path.isfile(path):
            raise RawError(f"{path} not found; RAW_DIR is the <out>/raw folder of predict.py --save-raw")
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RawError(f"{index_path}: not json ({err})") from None
    if not isinstance(index, dict) or index.get("format") != RAW_FORMAT:
        raise RawError(f"{index_path}: not an index of {RAW_FORMAT} (predict.py --save-raw)")
    missing = [key for key in ("img_w", "img_h", "num_points", "shape", "rows") if key not in index]
    if missing:
        raise RawError(f"{index_path}: no {', '.join(missing)}")
    try:
        outputs = np.load(outputs_path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise RawError(f"{outputs_path}: not a .npy array ({err})") from None
    if outputs.ndim != 3 or outputs.dtype != np.float32:
        raise RawError(f"{outputs_path}: expected float32 (N, proposals, 4 + num_points), got {outputs.dtype} "
                       f"{tuple(outputs.shape)}")
    if len(outputs) != len(index["rows"]):
        raise RawError(f"{outputs_path} has {len(outputs)} rows, {index_path} describes {len(index['rows'])}")
    if len(outputs) and list(outputs.shape[1:]) != list(index["shape"]):
        raise RawError(f"{outputs_path} rows are {tuple(outputs.shape[1:])}, {index_path} says {tuple(index['shape'])}")
    for i, row in enumerate(index["rows"]):
        if not isinstance(row, dict) or not {"name", "size", "crop"} <= set(row):
            raise RawError(f"{index_path}: row {i} lacks name, size or crop")
    return outputs, index


def check_geometry(outputs: np.ndarray, index: Mapping[str, Any], cfg: Mapping[str, Any], config: str) -> None:
    """RawError (one line) unless the outputs were made with the config's input size and points."""
    saved = {key: int(index[key]) for key in ("img_w", "img_h", "num_points")}
    wanted = {key: int(cfg[key]) for key in ("img_w", "img_h", "num_points")}
    width = 4 + wanted["num_points"]
    if saved != wanted or (len(outputs) and outputs.shape[2] != width):
        have = ", ".join(f"{k}={v}" for k, v in saved.items())
        want = ", ".join(f"{k}={v}" for k, v in wanted.items())
        raise RawError(f"the raw outputs were made with {have}, output rows {tuple(outputs.shape[1:])} "
                       f"(config {index.get('config')}); {config} has {want} (rows of {width}): "
                       "re-decode them with the config they were saved with")


def decoding_config(cfg: Mapping[str, Any], nms_thres: float, nms_topk: int) -> dict:
    """``cfg`` with other NMS parameters (what ``LaneDecoder`` reads)."""
    return {**cfg, "test_parameters": {**cfg["test_parameters"], "nms_thres": nms_thres, "nms_topk": nms_topk}}


def decode(outputs: np.ndarray, rows: Sequence[Mapping[str, Any]], decoder: LaneDecoder) -> list[list[Lane]]:
    """The lanes of every row, each decoded with its own ``(crop, height)``."""
    lanes: list[list[Lane]] = []
    for start in range(0, len(outputs), DECODE_CHUNK):
        part = rows[start:start + DECODE_CHUNK]
        lanes += decoder(torch.from_numpy(outputs[start:start + DECODE_CHUNK]),
                         [(int(row["crop"]), int(row["size"][0])) for row in part])
    return lanes


def split_rows(rows: Sequence[Mapping[str, Any]], records: Sequence[LaneRecord], split: str) -> list[int]:
    """For each record of the split, the index of the image row of the same name; RawError
    naming the first image without one."""
    by_name: dict[str, int] = {}
    for i, row in enumerate(rows):
        if "frame" not in row:
            by_name.setdefault(str(row["name"]).lstrip("/"), i)
    missing = [record.img_name for record in records if record.img_name not in by_name]
    if missing:
        raise RawError(f"{len(missing)} of the {len(records)} images of split {split!r} have no raw output "
                       f"(first: {missing[0]}); run predict.py --save-raw on that split's list file with --root "
                       "at the data root")
    return [by_name[record.img_name] for record in records]


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
        path = os.path.join(out, os.path.splitext(name)[0] + ".lanes.jsonl")
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            for i in indices:
                h, w = rows[i]["size"]
                handle.write(lanes_json_line(rows[i]["frame"], rows[i].get("time"), lanes[i], w, h, rows[i]["crop"])
                             + "\n")


def redecode(args: argparse.Namespace) -> list[dict]:
    """Run the command line; returns one entry per combination (thresholds, lanes, metrics)."""
    outputs, index = load_raw(args.raw)
    config = args.config or index.get("config")
    if not config or not os.path.isfile(config):
        raise RawError(f"the config {config!r} of {args.raw}/index.json is not there; give --config")
    cfg = load_experiment(config)
    check_geometry(outputs, index, cfg, config)
    test = cfg["test_parameters"]
    combos = list(itertools.product(args.conf_threshold or [float(test["conf_threshold"])],
                                    args.nms_thres or [float(test["nms_thres"])],
                                    args.nms_topk or [int(test.get("nms_topk", cfg["max_lanes"]))]))
    if args.out and len(combos) > 1:
        raise RawError(f"--out writes the files of one combination; {len(combos)} given")
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
    for conf, nms_thres, nms_topk in combos:
        decoder = build_decoder(decoding_config(cfg, nms_thres, nms_topk), conf_threshold=conf)
        lanes = decode(chosen_outputs, chosen_rows, decoder)
        entry: dict[str, Any] = {"conf_threshold": conf, "nms_thres": nms_thres, "nms_topk": nms_topk,
                                 "lanes": sum(map(len, lanes))}
        if evaluate is not None:
            entry["metrics"] = evaluate(lanes)
            print(f"conf_threshold {conf:g}  nms_thres {nms_thres:g}  nms_topk {nms_topk}  "
                  f"lanes {entry['lanes']}  metric {entry['metrics']['metric']:.4f}")
        if args.out:
            all_lanes = lanes if order is None else decode(outputs, rows, decoder)
            write_outputs(args.out, args.format, cfg, rows, all_lanes)
            print(f"wrote the prediction files of {len(rows)} rows to {os.path.abspath(args.out)}")
        results.append(entry)
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
