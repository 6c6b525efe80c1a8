"""Write SRLane's features of a benchmark split: one global vector per image and one vector per
detected lane, as NumPy arrays with an index tying rows to images and lanes.

    python tools/embed.py CONFIG --load-from CKPT --split test --out DIR
                          [--accelerator cpu|cuda|auto] [--batch B] [--workers N] [--conf-threshold T]
                          [--precision fp32|fp16|bf16] [--[no-]fold-bn] [--[no-]channels-last]
                          [--compile none|compile] [--set KEY=VALUE ...]

Images are read as validation reads them (the split of the config's benchmark, each image
cropped as its size says, resized, /255) and predicted as tools/predict.py predicts them (the
checkpoint checked against the config, the inference options, the size warnings,
srlane.inference.predict_batches): the lanes are those predict.py writes, and each lane's row is
read from its own proposal during that forward (forward hooks, srlane.inference.features; the
computation is unchanged; a CUDA graph runs no hooks, so --compile cudagraph is refused).
Written atomically:
  DIR/global.npy   float32 (N_images, C): the backbone's last stage (stride 32; C = 512 for
                   ResNet-18/34, 2048 for ResNet-50) averaged over its height and width
  DIR/lanes.npy    float32 (N_lanes, D): per lane the refine head's proposal feature (the last
                   stage's D = fc_hidden_dim = 192 vector after multi-segment attention, the one
                   its classification and regression branches read)
  DIR/index.json   which image and lane each row is (see docs/outputs.md)
Lanes are the decoder's: score >= conf_threshold, lane NMS, at most nms_topk, two points or more.
An image that cannot be read is reported by name and left out; the command then exits with 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from srlane.benchmarks import build_benchmark
from srlane.cli import (add_inference_arguments, add_prediction_arguments, checkpoint_tool_parser, config_from_args,
                        device_from_args, inference_options_from_args, note, run_cli)
from srlane.data.dataset import build_dataset
from srlane.data.input_checks import InputChecks, expected_sizes
from srlane.data.loader import make_loader
from srlane.data.records import DataFormatError
from srlane.fileio import atomic_write_npy, atomic_write_text
from srlane.inference import predict_batches
from srlane.inference.features import EmbeddingTap, check_tappable
from srlane.inference.model import load_model
from srlane.models.decode import build_decoder
from srlane.models.inference import AutoInferenceModel, build_inference_options


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = checkpoint_tool_parser(__doc__)
    parser.add_argument("--split", default="test", help="split of the config's benchmark (default: test)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_prediction_arguments(parser)
    add_inference_arguments(parser)
    return parser.parse_args(argv)


def embed(args: argparse.Namespace) -> dict:
    """Run the command line; returns a summary (images, lanes, unreadable images, shapes)."""
    cfg = config_from_args(args)
    device = device_from_args(args, cfg)
    options = inference_options_from_args(args, build_inference_options(cfg))
    check_tappable(options)
    records = build_benchmark(cfg).read_split(args.split, False)
    if not records:
        raise DataFormatError(args.split, None, "the split has no images")
    model = load_model(cfg, args.load_from, options, device, note)
    loader = make_loader(build_dataset(cfg, records, training=False), args.batch, args.workers, training=False)
    decoder = build_decoder(cfg, conf_threshold=args.conf_threshold)
    checks = InputChecks(expected_sizes(cfg), int(cfg.cut_height), lambda line: tqdm.write(line, file=sys.stderr))
    if isinstance(model, AutoInferenceModel):  # the copy the hooks go on, settled at the input's shape
        model.settle(torch.zeros(1, 3, int(cfg.img_h), int(cfg.img_w), dtype=torch.uint8, device=device))
    tap = EmbeddingTap(model.net)
    global_rows: list[np.ndarray] = []
    lane_rows: list[np.ndarray] = []
    names: list[str] = []
    columns: dict[str, list] = {"image": [], "lane": [], "proposal": [], "score": []}
    unreadable: list[str] = []

    def report(meta: dict) -> None:
        tqdm.write(f"error: cannot read image {meta['img_path']}; left out", file=sys.stderr)
        unreadable.append(meta["img_path"])

    batches = checks.sized(tqdm(loader, desc=f"Embed the features of {len(records)} images of {args.split}",
                                 unit="batch", dynamic_ncols=True))
    with torch.inference_mode():
        for predictions in predict_batches(model, batches, decoder, device, report, tap=tap):
            for image in predictions:
                columns["image"] += [len(names)] * len(image.lanes)
                columns["lane"] += list(range(len(image.lanes)))
                columns["proposal"] += image.proposals.tolist()
                columns["score"] += [round(float(score), 6) for score in image.features["scores"]]
                names.append(image.meta["img_name"])
                global_rows.append(image.features["global"])
                lane_rows.append(image.features["lanes"])
    tap.remove()
    global_width, lane_width = tap.widths
    global_features = np.stack(global_rows) if global_rows else np.zeros((0, global_width), np.float32)
    lane_features = np.concatenate(lane_rows) if lane_rows else np.zeros((0, lane_width), np.float32)
    index = {
        "config": os.path.abspath(args.config), "checkpoint": os.path.abspath(args.load_from), "split": args.split,
        "conf_threshold": decoder.conf_threshold, "nms_thres": decoder.nms_thres, "nms_topk": decoder.top_k,
        "global": {"file": "global.npy", "shape": list(global_features.shape),
                   "feature": "backbone last stage (stride 32), mean over height and width"},
        "lanes": {"file": "lanes.npy", "shape": list(lane_features.shape),
                  "feature": "last refine stage's proposal feature (input of its cls and reg branches)"},
        "images": names,
        "lane_rows": columns,
    }
    atomic_write_npy(os.path.join(args.out, "global.npy"), global_features)
    atomic_write_npy(os.path.join(args.out, "lanes.npy"), lane_features)
    atomic_write_text(os.path.join(args.out, "index.json"), json.dumps(index, indent=1) + "\n")
    summary = {"images": len(names), "lanes": len(lane_features), "unreadable": len(unreadable),
               "global_shape": global_features.shape, "lanes_shape": lane_features.shape}
    print(f"{len(names)} images, {len(lane_features)} lanes; wrote global.npy {global_features.shape}, "
          f"lanes.npy {lane_features.shape} and index.json to {os.path.abspath(args.out)}"
          + (f"; {len(unreadable)} unreadable image(s) left out" if unreadable else ""))
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    return embed(parse_args(argv))


if __name__ == "__main__":
    run_cli(main, ValueError, failed=lambda result: result["unreadable"] > 0)
