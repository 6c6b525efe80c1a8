"""Detect lanes in images with a trained SRLane and write them as benchmark prediction files.

    python tools/predict.py CONFIG --load-from CKPT INPUT [INPUT ...] --out DIR
                            [--format culane|tusimple|curvelanes] [--view] [--conf-threshold T]
                            [--batch B] [--accelerator auto|cpu|cuda] [--root DIR] [--workers N]

INPUT: image files, folders (searched recursively for *.jpg and *.png) or list files (.txt, one
image per line, its first field a path relative to --root, as CULane's lists). Output names:
the file name of an image input, the path relative to a folder input, the entry of a list.

Each image is read as validation reads it (the rows below its crop, cut_height or the
cut_heights entry of its size, resized to img_w x img_h, divided by 255), the network runs in
eval mode in batches and the benchmark's writer writes the lanes in the pixels of that image:
  culane      <out>/<name without extension>.lines.txt, one "x y x y ..." line per lane, every
              8 rows from the crop down
  tusimple    <out>/predictions.json, one json line per image (raw_file, lanes, run_time in ms),
              x at the rows crop, crop + 10, ... below the image height (for a 1280x720 image
              and cut_height 160: TuSimple's h_samples 160..710)
  curvelanes  <out>/<name without extension>.lines.json, every 8 rows from the crop down
  --view      <out>/visualization/<name>, the image with its lanes drawn
An image whose size differs from the config's ori_img_w x ori_img_h gets a warning (once per
size): the same cut_height rows are cropped, so a very different size or framing may detect
poorly. An image that cannot be read is reported by name and nothing is written for it; the
others are predicted, and the command then exits with status 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import sys
import time
from collections.abc import Iterable, Sequence

import torch
from tqdm import tqdm

from srlane.benchmarks import BENCHMARKS
from srlane.config import Config, ConfigError
from srlane.data.crop import build_crop
from srlane.data.dataset import build_dataset, read_image
from srlane.data.input_checks import InputChecks, expected_sizes
from srlane.data.loader import make_loader
from srlane.data.records import DataFormatError, LaneRecord, relative_name, require_image
from srlane.engine.checkpoint import CheckpointError, inference_weights, load_checkpoint, load_net_weights
from srlane.engine.defaults import load_experiment
from srlane.engine.fabric import ACCELERATORS, resolve_accelerator
from srlane.lanes import Lane
from srlane.models import build_net
from srlane.models.decode import LaneDecoder
from srlane.visualize import draw_lanes, lane_pixels, write_image

IMAGE_PATTERNS = ("*.jpg", "*.png")


class InputError(ValueError):
    """An INPUT that names no image, or two inputs that would write the same output file."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment config file (see configs/)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or .txt list files")
    parser.add_argument("--load-from", "--load_from", dest="load_from", required=True, metavar="CKPT",
                        help="network weights (a run's .pth: its moving average when it has one)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--format", choices=tuple(BENCHMARKS), default="culane",
                        help="the benchmark whose prediction files are written (default: culane)")
    parser.add_argument("--view", action="store_true", help="also write pictures to <out>/visualization")
    parser.add_argument("--conf-threshold", type=float, metavar="T",
                        help="lane score threshold (default: the config's test_parameters.conf_threshold)")
    parser.add_argument("--batch", type=int, default=8, metavar="B", help="images per forward pass (default: 8)")
    parser.add_argument("--accelerator", "--device", dest="accelerator", choices=ACCELERATORS,
                        help="auto: CUDA when present, else CPU (default: the config's accelerator, 'auto')")
    parser.add_argument("--root", metavar="DIR", help="folder the paths of list files are relative to "
                                                      "(default: the config's dataset.data_root)")
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="image reading processes (default: 2)")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be at least 1, got {args.batch}")
    return args


def collect_images(inputs: Iterable[str], root: str | None) -> list[LaneRecord]:
    """One record (no lanes) per image of ``inputs``, named as its output files will be."""
    records: list[LaneRecord] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted({path for pattern in IMAGE_PATTERNS
                            for path in glob.glob(os.path.join(glob.escape(item), "**", pattern), recursive=True)})
            if not found:
                raise InputError(f"{item}: no {' or '.join(IMAGE_PATTERNS)} files in this folder or below")
            records += [LaneRecord(os.path.abspath(p), os.path.relpath(p, item).replace(os.sep, "/")) for p in found]
        elif item.endswith(".txt"):
            records += read_list(item, root)
        elif os.path.isfile(item):
            records.append(LaneRecord(os.path.abspath(item), os.path.basename(item)))
        else:
            raise InputError(f"{item}: no such image, folder or list file")
    names: dict[str, str] = {}
    for record in records:
        key = os.path.splitext(record.img_name)[0]
        if key in names:
            raise InputError(f"{names[key]} and {record.img_path} would both be written as {key}; "
                             "give their folders, not the files, or predict them into different --out folders")
        names[key] = record.img_path
    return records


def read_list(path: str, root: str | None) -> list[LaneRecord]:
    """The images of a list file: the first field of each non-blank line, relative to ``root``."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: list file not found")
    if root is None:
        raise InputError(f"{path}: list paths are relative to a root; give --root (the config has no dataset.data_root)")
    records = []
    with open(path, encoding="utf-8") as f:
        for line_no, text in enumerate(f, 1):
            fields = text.split()
            if fields:
                name = relative_name(fields[0])
                img_path = os.path.abspath(os.path.join(root, name))
                require_image(img_path, path, line_no)
                records.append(LaneRecord(img_path, name))
    if not records:
        raise DataFormatError(path, None, "the list names no image")
    return records


def load_net(cfg: Config, checkpoint: str, device: torch.device) -> torch.nn.Module:
    """The network of ``cfg`` with the checkpoint's weights, in eval mode on ``device``."""
    net = build_net(cfg)
    load_net_weights(net, inference_weights(load_checkpoint(checkpoint)), checkpoint)
    return net.to(device).eval()


def write_picture(out: str, meta: dict, lanes: list[Lane]) -> None:
    """``<out>/visualization/<name>``: the image with its lanes."""
    ori_h, ori_w = meta["img_size"]
    picture = draw_lanes(read_image(meta["img_path"]), [lane_pixels(lane, ori_w, ori_h) for lane in lanes])
    write_image(os.path.join(out, "visualization", meta["img_name"]), picture)


def predict(args: argparse.Namespace) -> dict:
    """Run the command line; returns the summary numbers (images, lanes, ms per image, unreadable
    images)."""
    cfg = load_experiment(args.config)
    device = torch.device(resolve_accelerator(args.accelerator or cfg.accelerator))
    root = args.root if args.root is not None else cfg.get("dataset", {}).get("data_root")
    records = collect_images(args.inputs, root)
    net = load_net(cfg, args.load_from, device)
    loader = make_loader(build_dataset(cfg, records, training=False), args.batch, args.workers, training=False)
    decoder = LaneDecoder(cfg, args.conf_threshold)
    writer = BENCHMARKS[args.format](root or ".", build_crop(cfg))  # each image written in its own size
    checks = InputChecks(expected_sizes(cfg), int(cfg.cut_height), lambda line: tqdm.write(line, file=sys.stderr))
    done: list[LaneRecord] = []
    found: list[list[Lane]] = []
    run_times: list[float] = []
    unreadable = 0
    with torch.inference_mode():
        for batch in tqdm(loader, desc="Predict", unit="batch", dynamic_ncols=True):
            for meta in checks.unreadable_items(batch["meta"]):
                tqdm.write(f"error: cannot read image {meta['img_path']}; nothing written for it", file=sys.stderr)
                unreadable += 1
            keep = [i for i, meta in enumerate(batch["meta"]) if not meta["unreadable"]]
            if not keep:
                continue
            metas = [batch["meta"][i] for i in keep]
            start = time.perf_counter()
            output = net(batch["img"][keep].to(device)).float()
            lanes = decoder(output, [(meta["cut_height"], meta["img_size"][0]) for meta in metas])
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed_ms = 1000 * (time.perf_counter() - start) / len(metas)
            for meta, image_lanes in zip(metas, lanes):
                done.append(dataclasses.replace(records[meta["index"]], img_size=tuple(meta["img_size"])))
                found.append(image_lanes)
                run_times.append(round(elapsed_ms, 3))
                if args.view:
                    write_picture(args.out, meta, image_lanes)
    writer.write_predictions(done, found, args.out, run_times)
    images, lanes_found = len(done), sum(map(len, found))
    summary = {"images": images, "lanes": lanes_found, "ms_per_image": sum(run_times) / max(1, images),
               "unreadable": unreadable}
    print(f"{images} images, {lanes_found} lanes, {summary['ms_per_image']:.1f} ms per image "
          f"(network + decoding, batch {args.batch}, {device.type}); wrote {os.path.abspath(args.out)}"
          + (f"; {unreadable} unreadable image(s) skipped" if unreadable else ""))
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    return predict(parse_args(argv))


if __name__ == "__main__":
    try:
        sys.exit(1 if main()["unreadable"] else 0)
    except (InputError, ConfigError, CheckpointError, DataFormatError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
