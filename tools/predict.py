"""Detect lanes in images and videos with a trained SRLane and write them as prediction files.

    python tools/predict.py CONFIG (--load-from CKPT | --onnx MODEL.onnx) INPUT [INPUT ...] --out DIR
                            [--format culane|tusimple|curvelanes] [--view] [--conf-threshold T]
                            [--batch B] [--accelerator auto|cpu|cuda] [--root DIR] [--workers N] [--save-raw]
                            [--precision fp32|fp16|bf16] [--[no-]fold-bn] [--[no-]channels-last]
                            [--compile none|compile|cudagraph]

INPUT: image files, video files (.mp4, .avi, .mov, .mkv, ...: whatever OpenCV's VideoCapture
decodes), folders (searched recursively for *.jpg and *.png) or list files (.txt, one image per
line, its first field a path relative to --root, as CULane's lists). Output names: the file name
of an image or video input, the path relative to a folder input, the entry of a list.

Each image (and video frame) is read as validation reads it (the rows below its crop,
cut_height or the cut_heights entry of its size, resized to img_w x img_h, divided by 255), the
network runs in eval mode in batches and the lanes are written in the pixels of that image:
  culane      <out>/<name without extension>.lines.txt, one "x y x y ..." line per lane, every
              8 rows from the crop down
  tusimple    <out>/predictions.json, one json line per image (raw_file, lanes, run_time in ms),
              x at the rows crop, crop + 10, ... below the image height (for a 1280x720 image
              and cut_height 160: TuSimple's h_samples 160..710)
  curvelanes  <out>/<name without extension>.lines.json, every 8 rows from the crop down
  video       <out>/<video name without extension>.lanes.jsonl, whatever --format says: one json
              line per frame, {"frame": index, "time": seconds, "lanes": [[[x, y], ...], ...]},
              points every 8 rows from the crop down, bottom first (as .lines.txt)
  --view      <out>/visualization/<name>, the image with its lanes drawn; for a video
              <out>/visualization/<video name without extension>.mp4 (.avi where this OpenCV
              cannot write mp4), every frame annotated, at the video's frame rate
  --save-raw  <out>/raw/outputs.npy, float32 (N, proposals, 4 + num_points): the network's
              output of each image and frame before the score threshold and NMS, and
              <out>/raw/index.json: the config (path, img_w, img_h, num_points), the output
              shape and per row its name (and frame, time), size [h, w] and crop rows;
              tools/redecode.py decodes them again with other thresholds
--onnx runs an exported model (srlane.models.export.OnnxModel: onnxruntime) instead of a
checkpoint; its input size must be the config's img_w x img_h.

A checkpoint's network runs with the inference options (srlane.models.inference, the same flags
as tools/speed.py): the config's inference dict, overridden by --precision fp32|fp16|bf16,
--[no-]fold-bn, --[no-]channels-last and --compile none|compile|cudagraph; its outputs are float32
whatever the precision. They do not apply to --onnx: the config's dict is ignored there and a flag
that asks for anything but the defaults is an error.

An image or frame whose size differs from the config's ori_img_w x ori_img_h gets a warning
(once per size): the same cut_height rows are cropped, so a very different size or framing may
detect poorly. An image that cannot be read, a video that cannot be opened and a video frame
that cannot be decoded are reported in one line each (a video keeps and writes the frames
before the broken one); the other inputs are predicted, and the command then exits with status 1.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import glob
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch
from tqdm import tqdm

from srlane.benchmarks import BENCHMARKS
from srlane.cli import run_cli
from srlane.config import Config
from srlane.data.crop import Crop, build_crop
from srlane.data.dataset import build_dataset, read_image
from srlane.data.input_checks import InputChecks, expected_sizes, image_crops, readable_part
from srlane.data.loader import make_loader
from srlane.data.records import DataFormatError, LaneRecord, relative_name, require_image
from srlane.data.video import Frame, VideoFrames, is_video, lanes_json_line, prepare_image
from srlane.models.weights import inference_weights, load_checkpoint, load_net_weights
from srlane.engine.defaults import load_experiment
from srlane.engine.fabric import ACCELERATORS, resolve_accelerator
from srlane.fileio import atomic_path, atomic_write_text, line_fields
from srlane.lanes import Lane
from srlane.models import build_net
from srlane.models.decode import LaneDecoder, build_decoder
from srlane.models.inference import (InferenceOptions, add_inference_arguments, build_inference_options,
                                     inference_options_from_args, prepare_for_inference)
from srlane.visualize import draw_lanes, lane_pixels, write_image

IMAGE_PATTERNS = ("*.jpg", "*.png")
RAW_FORMAT = "srlane-raw-outputs/1"
VIDEO_WRITERS = ((".mp4", "mp4v"), (".avi", "MJPG"))  # tried in this order for --view
DEFAULT_FPS = 25.0  # annotated video of a stream that states no frame rate

Model = Callable[[torch.Tensor], torch.Tensor]


class InputError(ValueError):
    """An INPUT that names no image, or two inputs that would write the same output file."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="experiment config file (see configs/)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders or .txt list files")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--load-from", "--load_from", dest="load_from", metavar="CKPT",
                         help="network weights (a run's .pth: its moving average when it has one)")
    weights.add_argument("--onnx", metavar="MODEL", help="an exported .onnx model, run with onnxruntime")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--format", choices=tuple(BENCHMARKS), default="culane",
                        help="the benchmark whose prediction files are written for images (default: culane)")
    parser.add_argument("--view", action="store_true",
                        help="also write pictures and annotated videos to <out>/visualization")
    parser.add_argument("--conf-threshold", type=float, metavar="T",
                        help="lane score threshold (default: the config's test_parameters.conf_threshold)")
    parser.add_argument("--batch", type=int, default=8, metavar="B",
                        help="images or frames per forward pass (default: 8)")
    parser.add_argument("--accelerator", "--device", dest="accelerator", choices=ACCELERATORS,
                        help="auto: CUDA when present, else CPU (default: the config's accelerator, 'auto')")
    parser.add_argument("--root", metavar="DIR", help="folder the paths of list files are relative to "
                                                      "(default: the config's dataset.data_root)")
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="image reading processes (default: 2)")
    parser.add_argument("--save-raw", action="store_true",
                        help="also keep the network outputs before threshold and NMS in <out>/raw (tools/redecode.py)")
    add_inference_arguments(parser)
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be at least 1, got {args.batch}")
    return args


def collect_inputs(inputs: Iterable[str], root: str | None) -> tuple[list[LaneRecord], list[str]]:
    """One record (no lanes) per image of ``inputs``, named as its output files will be, and the
    absolute paths of the video inputs."""
    records: list[LaneRecord] = []
    videos: list[str] = []
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
            if is_video(item):
                videos.append(os.path.abspath(item))
            else:
                records.append(LaneRecord(os.path.abspath(item), os.path.basename(item)))
        else:
            raise InputError(f"{item}: no such image, video, folder or list file")
    for named in ([(r.img_name, r.img_path) for r in records], [(os.path.basename(v), v) for v in videos]):
        names: dict[str, str] = {}
        for name, path in named:
            key = os.path.splitext(name)[0]
            if key in names:
                raise InputError(f"{names[key]} and {path} would both be written as {key}; "
                                 "give their folders, not the files, or predict them into different --out folders")
            names[key] = path
    return records, videos


def read_list(path: str, root: str | None) -> list[LaneRecord]:
    """The images of a list file: the first field of each non-blank line, relative to ``root``."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: list file not found")
    if root is None:
        raise InputError(f"{path}: list paths are relative to a root; give --root (the config has no dataset.data_root)")
    records = []
    for line_no, fields in line_fields(path):
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


def load_onnx(cfg: Config, path: str) -> Model:
    """``srlane.models.export.OnnxModel`` of ``path`` (imported here: onnxruntime is optional);
    InputError (one line) when it cannot be loaded or takes another input size than the config's."""
    try:
        from srlane.models.export import OnnxModel
    except ImportError as err:
        raise InputError(f"--onnx needs srlane.models.export and onnxruntime ({err})") from None
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such ONNX file")
    try:
        model = OnnxModel(path)
    except (ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(first if path in first else f"cannot load ONNX model {path}: {first}") from None
    size = tuple(int(v) for v in model.input_size)
    if size != (int(cfg.img_h), int(cfg.img_w)):
        raise InputError(f"{path} takes {size[1]}x{size[0]} inputs, the config's img_w x img_h is "
                         f"{cfg.img_w}x{cfg.img_h}; export it with this config or predict with its own")
    return model


def write_picture(out: str, meta: dict, lanes: list[Lane]) -> None:
    """``<out>/visualization/<name>``: the image with its lanes."""
    ori_h, ori_w = meta["img_size"]
    picture = draw_lanes(read_image(meta["img_path"]), [lane_pixels(lane, ori_w, ori_h) for lane in lanes])
    write_image(os.path.join(out, "visualization", meta["img_name"]), picture)


class RawOutputs:
    """The network outputs of every predicted image and frame, for ``<out>/raw``."""

    def __init__(self) -> None:
        self.outputs: list[np.ndarray] = []
        self.rows: list[dict] = []

    def add(self, outputs: torch.Tensor | np.ndarray, rows: Sequence[dict]) -> None:
        outputs = outputs.detach().float().cpu().numpy() if isinstance(outputs, torch.Tensor) else outputs
        self.outputs.append(np.asarray(outputs, dtype=np.float32))
        self.rows += rows

    def save(self, folder: str, cfg: Config, config_path: str) -> None:
        """``outputs.npy`` (N, proposals, 4 + num_points) and ``index.json``, each atomically."""
        outputs = (np.concatenate(self.outputs) if self.outputs
                   else np.zeros((0, 0, 4 + int(cfg.num_points)), np.float32))
        with atomic_path(os.path.join(folder, "outputs.npy"), suffix=".npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, outputs)
        index = {"format": RAW_FORMAT, "config": os.path.abspath(config_path), "img_w": int(cfg.img_w),
                 "img_h": int(cfg.img_h), "num_points": int(cfg.num_points), "shape": list(outputs.shape[1:]),
                 "rows": self.rows}
        atomic_write_text(os.path.join(folder, "index.json"), json.dumps(index, indent=1) + "\n")


def predict_images(args: argparse.Namespace, cfg: Config, records: list[LaneRecord], model: Model,
                   device: torch.device, decoder: LaneDecoder, checks: InputChecks, root: str | None,
                   raw: RawOutputs | None) -> dict:
    loader = make_loader(build_dataset(cfg, records, training=False), args.batch, args.workers, training=False)
    writer = BENCHMARKS[args.format](root or ".", build_crop(cfg))  # each image written in its own size
    done: list[LaneRecord] = []
    found: list[list[Lane]] = []
    run_times: list[float] = []
    unreadable: list[str] = []

    def report(meta: dict) -> None:
        tqdm.write(f"error: cannot read image {meta['img_path']}; nothing written for it", file=sys.stderr)
        unreadable.append(meta["img_path"])

    for batch in tqdm(loader, desc="Predict", unit="batch", dynamic_ncols=True):
        checks.check_sizes(batch["meta"])
        readable = readable_part(batch, report)
        if readable is None:
            continue
        images, metas = readable
        start = time.perf_counter()
        output = model(images.to(device)).float()
        lanes = decoder(output, image_crops(metas))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed_ms = 1000 * (time.perf_counter() - start) / len(metas)
        if raw is not None:
            raw.add(output, [{"name": meta["img_name"], "size": list(meta["img_size"]), "crop": int(meta["cut_height"])}
                             for meta in metas])
        for meta, image_lanes in zip(metas, lanes):
            done.append(dataclasses.replace(records[meta["index"]], img_size=tuple(meta["img_size"])))
            found.append(image_lanes)
            run_times.append(round(elapsed_ms, 3))
            if args.view:
                write_picture(args.out, meta, image_lanes)
    writer.write_predictions(done, found, args.out, run_times)
    return {"images": len(done), "lanes": sum(map(len, found)), "ms_per_image": sum(run_times) / max(1, len(done)),
            "unreadable": len(unreadable)}


class _NothingKept(Exception):
    """No frame of a video could be used: its output files are not written."""


class _BadFrames(Exception):
    """The config's crop does not fit a video's frames."""


class _Unsupported(Exception):
    """This OpenCV cannot write a video of that container and codec."""


@contextlib.contextmanager
def video_writer(path_stem: str, fps: float, size: tuple[int, int]) -> Iterator[cv2.VideoWriter]:
    """A VideoWriter on a temp file that replaces ``<path_stem>.mp4`` (else ``.avi``) when the
    block ends without an exception (released first); removed otherwise."""
    height, width = size
    for ext, fourcc in VIDEO_WRITERS:
        try:
            with atomic_path(path_stem + ext, suffix=ext) as tmp:
                writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
                if not writer.isOpened():
                    writer.release()
                    raise _Unsupported
                try:
                    yield writer
                finally:
                    writer.release()
                return
        except _Unsupported:
            continue
    raise OSError(f"this OpenCV cannot write {' or '.join(ext for ext, _ in VIDEO_WRITERS)} videos ({path_stem})")


def predict_video(args: argparse.Namespace, cfg: Config, path: str, model: Model, device: torch.device,
                  decoder: LaneDecoder, crop: Crop, checks: InputChecks, raw: RawOutputs | None) -> dict:
    """Lanes of every frame of the video ``path`` -> ``<stem>.lanes.jsonl`` (and the annotated
    video with --view); returns frames, lanes, seconds and whether an error was reported."""
    result = {"frames": 0, "lanes": 0, "seconds": 0.0, "error": False}
    name = os.path.basename(path)
    stem = os.path.splitext(name)[0]
    try:
        frames = VideoFrames(path)
    except OSError as err:
        tqdm.write(f"error: {err}; nothing written for it", file=sys.stderr)
        return {**result, "error": True}
    raw_rows: list[dict] = []
    raw_outputs: list[torch.Tensor] = []
    bar = tqdm(total=frames.frame_count or None, desc=name, unit="frame", dynamic_ncols=True)
    try:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(os.path.join(args.out, stem + ".lanes.jsonl")))
            handle = stack.enter_context(open(tmp, "w", encoding="utf-8"))
            view: cv2.VideoWriter | None = None
            view_size: tuple[int, int] | None = None
            start = time.perf_counter()

            def run(batch: list[Frame]) -> None:
                nonlocal view, view_size
                checks.check_sizes([{"img_path": path, "img_size": frame.image.shape[:2]} for frame in batch])
                try:
                    inputs, crops = zip(*(prepare_image(f.image, cfg.img_w, cfg.img_h, crop) for f in batch))
                except ValueError as err:  # a crop that does not fit the frames
                    raise _BadFrames(str(err)) from None
                output = model(torch.stack(inputs).to(device)).float()
                lanes = decoder(output, [(cut, f.image.shape[0]) for f, cut in zip(batch, crops)])
                if raw is not None:
                    raw_outputs.append(output.detach().cpu())
                    raw_rows.extend({"name": name, "frame": f.index, "time": f.time, "size": list(f.image.shape[:2]),
                                     "crop": int(cut)} for f, cut in zip(batch, crops))
                for frame, cut, frame_lanes in zip(batch, crops, lanes):
                    h, w = frame.image.shape[:2]
                    handle.write(lanes_json_line(frame.index, frame.time, frame_lanes, w, h, cut) + "\n")
                    result["lanes"] += len(frame_lanes)
                    if args.view:
                        if view is None:
                            view_size = (h, w)
                            view = stack.enter_context(video_writer(os.path.join(args.out, "visualization", stem),
                                                                    frames.fps or DEFAULT_FPS, view_size))
                        picture = draw_lanes(frame.image, [lane_pixels(lane, w, h) for lane in frame_lanes])
                        if (h, w) != view_size:
                            picture = cv2.resize(picture, (view_size[1], view_size[0]), interpolation=cv2.INTER_AREA)
                        view.write(picture)
                result["frames"] += len(batch)
                bar.update(len(batch))

            batch: list[Frame] = []
            for frame in frames:
                batch.append(frame)
                if len(batch) == args.batch:
                    run(batch)
                    batch = []
            if batch:
                run(batch)
            result["seconds"] = time.perf_counter() - start
            if result["frames"] == 0:
                raise _NothingKept
    except _NothingKept:
        pass
    except _BadFrames as err:
        tqdm.write(f"error: {path}: {err}; nothing written for it", file=sys.stderr)
        return {**result, "frames": 0, "lanes": 0, "error": True}
    finally:
        bar.close()
        frames.close()
    if frames.failed_at is not None:
        kept = f"kept frames 0..{frames.failed_at - 1}" if frames.failed_at else "nothing written for it"
        tqdm.write(f"error: {path}: frame {frames.failed_at} could not be decoded; {kept}", file=sys.stderr)
        result["error"] = True
    elif result["frames"] == 0:
        tqdm.write(f"error: {path}: no frame could be decoded; nothing written for it", file=sys.stderr)
        result["error"] = True
    if raw is not None and raw_outputs:
        raw.add(torch.cat(raw_outputs), raw_rows)
    return result


def predict(args: argparse.Namespace) -> dict:
    """Run the command line; returns the summary numbers (images, lanes, ms per image, unreadable
    images; videos, frames, their lanes, frames per second, video errors)."""
    if args.onnx and inference_options_from_args(args) != InferenceOptions():
        raise InputError("--onnx runs the exported model as it is; --precision, --fold-bn, --channels-last "
                         "and --compile apply to --load-from checkpoints")
    cfg = load_experiment(args.config)
    root = args.root if args.root is not None else cfg.get("dataset", {}).get("data_root")
    records, videos = collect_inputs(args.inputs, root)
    if args.onnx:
        device, model, where = torch.device("cpu"), load_onnx(cfg, args.onnx), "onnxruntime"
    else:
        device = torch.device(resolve_accelerator(args.accelerator or cfg.accelerator))
        options = inference_options_from_args(args, build_inference_options(cfg))
        model = prepare_for_inference(load_net(cfg, args.load_from, device), options, device)
        where = device.type
    decoder = build_decoder(cfg, conf_threshold=args.conf_threshold)
    crop = build_crop(cfg)
    checks = InputChecks(expected_sizes(cfg), int(cfg.cut_height), lambda line: tqdm.write(line, file=sys.stderr))
    raw = RawOutputs() if args.save_raw else None
    summary = {"images": 0, "lanes": 0, "ms_per_image": 0.0, "unreadable": 0,
               "videos": 0, "frames": 0, "video_lanes": 0, "frames_per_s": 0.0, "video_errors": 0}
    seconds = 0.0
    with torch.inference_mode():
        if records:
            summary.update(predict_images(args, cfg, records, model, device, decoder, checks, root, raw))
        for path in videos:
            result = predict_video(args, cfg, path, model, device, decoder, crop, checks, raw)
            summary["videos"] += int(result["frames"] > 0)
            summary["frames"] += result["frames"]
            summary["video_lanes"] += result["lanes"]
            summary["video_errors"] += int(result["error"])
            seconds += result["seconds"]
    summary["frames_per_s"] = summary["frames"] / seconds if seconds > 0 else 0.0
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
