"""Detect lanes in images and videos with a trained SRLane and write them as prediction files.

    python tools/predict.py CONFIG INPUT [INPUT ...] (--load-from CKPT | --onnx MODEL.onnx) --out DIR
                            [--format culane|tusimple|curvelanes] [--view] [--save-raw] [--root DIR]
                            [--conf-threshold T] [--batch B] [--accelerator auto|cpu|cuda] [--workers N]
                            [--precision fp32|fp16|bf16] [--[no-]fold-bn] [--[no-]channels-last]
                            [--compile none|compile|cudagraph] [--set KEY=VALUE ...]

INPUT: image files, video files (whatever OpenCV's VideoCapture decodes), folders (searched
recursively for *.jpg and *.png) or list files (.txt, the first field of each line a path relative
to --root, as CULane's lists); srlane.inference.inputs. Each image and frame is read as
validation reads it (the rows below its crop cut, resized, /255) and its lanes are written in its
own pixels, named as the input (file name, path below a folder input, list entry):
  culane      <out>/<name without extension>.lines.txt, every 8 rows from the crop down
  tusimple    <out>/predictions.json, one json line per image (raw_file, lanes, run_time in ms)
  curvelanes  <out>/<name without extension>.lines.json, every 8 rows from the crop down
  video       <out>/<video name without extension>.lanes.jsonl, whatever --format says: one json
              line per frame, {"frame", "time" (s), "lanes": [[[x, y], ...], ...]} (srlane.inference.video)
  --view      <out>/visualization/<name>: the image with its lanes; for a video
              <out>/visualization/<video name>.mp4 (.avi where OpenCV cannot write mp4)
  --save-raw  <out>/raw/outputs.npy and index.json: the network's outputs before the score
              threshold and NMS (docs/outputs.md; tools/redecode.py decodes them again)

--load-from runs a checkpoint with the inference options (the config's inference dict,
overridden by the flags); its config must agree with CONFIG on the input size, points, lanes,
crop and model (one line naming both values otherwise). --onnx runs an exported model
(onnxruntime) of the config's input size; the inference flags do not apply to it. A model
exported with --with-decoder runs the threshold and NMS in its graph, fed the config's
thresholds (or --conf-threshold); its lanes are written as they come (no decoding in Python).

An image or frame of another size than ori_img_w x ori_img_h gets one warning per size. An image
that cannot be read, a video that cannot be opened and a frame that cannot be decoded are
reported in one line each (a video keeps the frames before the broken one); the other inputs are
predicted, and the command then exits with status 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

import torch
from tqdm import tqdm

from srlane.benchmarks import BENCHMARKS
from srlane.cli import (add_checkpoint_argument, add_inference_arguments, add_prediction_arguments, config_from_args,
                        device_from_args, inference_options_from_args, note, run_cli, tool_parser)
from srlane.config import Config
from srlane.data.crop import build_crop
from srlane.data.dataset import build_dataset, read_image
from srlane.data.input_checks import InputChecks, expected_sizes
from srlane.data.loader import make_loader
from srlane.data.records import LaneRecord
from srlane.inference.predict import Model, predict_batches
from srlane.inference.inputs import InputError, collect_inputs
from srlane.inference.model import load_model, load_onnx
from srlane.inference.raw import RawWriter
from srlane.inference.video import VideoPredictor
from srlane.models.decode import LaneDecoder, build_decoder
from srlane.models.inference import InferenceOptions, build_inference_options
from srlane.visualize import draw_decoded_lanes, write_image


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = tool_parser(__doc__)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders or .txt list files")
    weights = parser.add_mutually_exclusive_group(required=True)
    add_checkpoint_argument(weights, required=False)
    weights.add_argument("--onnx", metavar="MODEL", help="an exported .onnx model, run with onnxruntime")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--format", choices=tuple(BENCHMARKS), default="culane",
                        help="the benchmark whose prediction files are written for images (default: culane)")
    parser.add_argument("--view", action="store_true",
                        help="also write pictures and annotated videos to <out>/visualization")
    parser.add_argument("--root", metavar="DIR", help="folder the paths of list files are relative to "
                                                      "(default: the config's dataset.data_root)")
    parser.add_argument("--save-raw", action="store_true",
                        help="also keep the network outputs before threshold and NMS in <out>/raw (tools/redecode.py)")
    add_prediction_arguments(parser)
    add_inference_arguments(parser)
    return parser.parse_args(argv)


def predict_images(args: argparse.Namespace, cfg: Config, records: list[LaneRecord], model: Model,
                   device: torch.device, decoder: LaneDecoder, checks: InputChecks, root: str | None,
                   raw: RawWriter | None) -> dict:
    """The images' prediction files (and pictures, raw outputs); returns their summary numbers."""
    loader = make_loader(build_dataset(cfg, records, training=False), args.batch, args.workers, training=False)
    done, found, run_times, unreadable = [], [], [], []

    def report(meta: dict) -> None:
        tqdm.write(f"error: cannot read image {meta['img_path']}; nothing written for it", file=sys.stderr)
        unreadable.append(meta["img_path"])

    batches = checks.sized(tqdm(loader, desc="Predict", unit="batch", dynamic_ncols=True))
    for predictions in predict_batches(model, batches, decoder, device, report, keep_raw=raw is not None):
        for image in predictions:
            done.append(dataclasses.replace(records[image.meta["index"]], img_size=tuple(image.meta["img_size"])))
            found.append(image.lanes)
            run_times.append(round(1000 * image.seconds, 3))
            if raw is not None:
                raw.add(image)
            if args.view:
                write_image(os.path.join(args.out, "visualization", image.meta["img_name"]),
                            draw_decoded_lanes(read_image(image.meta["img_path"]), image.lanes))
    BENCHMARKS[args.format](root or ".", build_crop(cfg)).write_predictions(done, found, args.out, run_times)
    return {"images": len(done), "lanes": sum(map(len, found)), "ms_per_image": sum(run_times) / max(1, len(done)),
            "unreadable": len(unreadable)}


def predict_videos(videos: list[str], predictor: VideoPredictor) -> dict:
    """Each video's files; returns their summary numbers. Each problem is one line on stderr."""
    summary = {"videos": 0, "frames": 0, "video_lanes": 0, "frames_per_s": 0.0, "video_errors": 0}
    seconds = 0.0
    for path in videos:
        result = predictor(path)
        if result.error is not None:
            tqdm.write(f"error: {result.error}", file=sys.stderr)
        summary["videos"] += int(result.frames > 0)
        summary["frames"] += result.frames
        summary["video_lanes"] += result.lanes
        summary["video_errors"] += int(result.error is not None)
        seconds += result.seconds
    summary["frames_per_s"] = summary["frames"] / seconds if seconds > 0 else 0.0
    return summary


def predict(args: argparse.Namespace) -> dict:
    """Run the command line; returns the summary numbers (images, lanes, ms per image, unreadable
    images; videos, frames, their lanes, frames per second, video errors)."""
    if args.onnx and inference_options_from_args(args) != InferenceOptions():
        raise InputError("--onnx runs the exported model as it is; --precision, --fold-bn, --channels-last "
                         "and --compile apply to --load-from checkpoints")
    cfg = config_from_args(args)
    root = args.root if args.root is not None else cfg.get("dataset", {}).get("data_root")
    records, videos = collect_inputs(args.inputs, root)
    decoder = build_decoder(cfg, conf_threshold=args.conf_threshold)
    if args.onnx:
        device, model = torch.device("cpu"), load_onnx(cfg, args.onnx, decoder=decoder)
        where = "onnxruntime" + (", decoder in the graph" if model.decoder else "")
    else:
        device = device_from_args(args, cfg)
        options = inference_options_from_args(args, build_inference_options(cfg))
        model, where = load_model(cfg, args.load_from, options, device, note), device.type
    checks = InputChecks(expected_sizes(cfg), int(cfg.cut_height), lambda line: tqdm.write(line, file=sys.stderr))
    raw = RawWriter() if args.save_raw else None
    summary = {"images": 0, "lanes": 0, "ms_per_image": 0.0, "unreadable": 0}
    with torch.inference_mode():
        if records:
            summary.update(predict_images(args, cfg, records, model, device, decoder, checks, root, raw))
        summary.update(predict_videos(videos, VideoPredictor(model, decoder, device, (int(cfg.img_w), int(cfg.img_h)),
                                                             build_crop(cfg), args.batch, args.out, args.view, raw,
                                                             checks.sized)))
    if raw is not None:
        raw.save(os.path.join(args.out, "raw"), cfg, args.config)
    parts = []
    if records:
        parts.append(f"{summary['images']} images, {summary['lanes']} lanes, "
                     f"{summary['ms_per_image']:.1f} ms per image (network + decoding, batch {args.batch}, {where})")
    if videos:
        parts.append(f"{summary['videos']} video(s), {summary['frames']} frames, {summary['video_lanes']} lanes, "
                     f"{summary['frames_per_s']:.1f} frames/s (reading + network + decoding + writing, "
                     f"batch {args.batch}, {where})")
    print("; ".join(parts) + f"; wrote {os.path.abspath(args.out)}"
          + (f"; {summary['unreadable']} unreadable image(s) skipped" if summary["unreadable"] else "")
          + (f"; {summary['video_errors']} video(s) with errors" if summary["video_errors"] else ""))
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    return predict(parse_args(argv))


if __name__ == "__main__":
    run_cli(main, InputError, failed=lambda result: bool(result["unreadable"] or result["video_errors"]))
