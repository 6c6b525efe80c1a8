"""Data pipeline speed: dataset items per second, one process, one thread.

Writes a few 1640x590 road-like JPEGs with 4 lanes in the CULane layout (temporary folder) and
times ``LaneDataset[i]`` with the CULane config: training (decode, crop, resize, full
augmentation, target encoding) and validation (decode, crop, resize). JPEG decoding, the
augmentation and the target encoding are also timed alone, so the rows show where a training
item's time goes. The release's pipeline does about 31 training items/s on one core.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import cv2
import numpy as np
import torch

from srlane.benchmarks import build_benchmark
from srlane.benchmarks.culane import annotation_text, lines_file_name, write_lists
from srlane.config import Config
from srlane.data.dataset import LaneDataset, build_dataset, crop_and_resize, read_image
from srlane.fileio import atomic_write_text

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ORI_W, ORI_H = 1640, 590


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="OUT", help="write {train_samples_per_s, val_samples_per_s, ...} here")
    parser.add_argument("--items", type=int, default=300, help="items timed per mode (default 300)")
    parser.add_argument("--config", default=os.path.join(PROJECT_ROOT, "configs", "srlane_r18_culane.py"))


def road_image(rng: np.random.Generator, lanes: list[np.ndarray]) -> np.ndarray:
    """Textured asphalt below a sky gradient, with four white lane markings (BGR)."""
    img = np.empty((ORI_H, ORI_W, 3), np.uint8)
    rows = np.linspace(200, 60, ORI_H)[:, None, None]
    texture = cv2.GaussianBlur(rng.normal(0, 18, (ORI_H, ORI_W)), (0, 0), 1.5)[..., None]
    img[:] = np.clip(rows + texture + np.array([0, 5, 10]), 0, 255).astype(np.uint8)
    for lane in lanes:
        cv2.polylines(img, [np.round(lane * 4).astype(np.int32)], False, (235, 235, 235), 8, cv2.LINE_AA, shift=2)
    return img


def lane_set(rng: np.random.Generator) -> list[np.ndarray]:
    """Four lanes converging to a vanishing point, points every 10 rows from the bottom."""
    vx, vy = ORI_W / 2 + rng.uniform(-80, 80), 280.0
    ys = np.arange(ORI_H - 1, vy + 20, -10.0)
    lanes = []
    for bottom_x in (-200.0, 450.0, 1150.0, 1850.0):
        t = (ys - vy) / (ORI_H - vy)
        xs = vx + t * (bottom_x - vx) + 30 * np.sin(t * 3) * rng.uniform(-1, 1)
        keep = (xs >= 0) & (xs < ORI_W)
        lanes.append(np.stack([xs[keep], ys[keep]], 1))
    return lanes


def write_dataset(root: str, count: int = 4) -> None:
    rng = np.random.default_rng(0)
    names = []
    for i in range(count):
        name = f"driver_bench/clip.MP4/{i:05d}.jpg"
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lanes = lane_set(rng)
        cv2.imwrite(path, road_image(rng, lanes), [cv2.IMWRITE_JPEG_QUALITY, 95])
        atomic_write_text(os.path.join(root, lines_file_name(name)), annotation_text(lanes))
        names.append(name)
    write_lists(root, [(name, (1, 1, 1, 1), None) for name in names], [(name, (1, 1, 1, 1), None) for name in names])


def time_items(dataset: LaneDataset, items: int) -> tuple[float, float]:
    """Wall and CPU seconds for ``items`` items (epochs advance so augmentation draws differ)."""
    n = len(dataset)
    dataset[0]
    start, cpu = time.perf_counter(), time.process_time()
    for k in range(items):
        dataset.set_epoch(k // n)
        dataset[k % n]
    return time.perf_counter() - start, time.process_time() - cpu


def time_decode(path: str, items: int) -> tuple[float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(items):
        cv2.imread(path, cv2.IMREAD_COLOR)
    return time.perf_counter() - start, time.process_time() - cpu


def time_stages(dataset: LaneDataset, items: int) -> dict[str, tuple[float, float]]:
    """Wall and CPU seconds of ``items`` calls of the training augmentation alone and of the
    target encoding alone, on the dataset's images as the augmentation receives them (decoded,
    cropped, resized) and the lanes it returns (each call draws from its own item generator)."""
    inputs = []
    for record in dataset.records:
        img = read_image(record.img_path)
        resized, cut = crop_and_resize(img, dataset.img_w, dataset.img_h, dataset.crop)
        inputs.append((resized, dataset.input_lanes(record.lanes, *img.shape[:2], cut)))
    rngs = [dataset.item_rng(k % len(inputs), k // len(inputs)) for k in range(items)]
    start, cpu = time.perf_counter(), time.process_time()
    augmented = [dataset.augmenter(*inputs[k % len(inputs)], rngs[k])[1] for k in range(items)]
    augment = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    for lanes in augmented:
        dataset.encoder(lanes)
    return {"augment": augment, "targets": (time.perf_counter() - start, time.process_time() - cpu)}


def run(args: argparse.Namespace) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    cfg = Config.fromfile(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "CULane")
        write_dataset(root)
        cfg.dataset.data_root, cfg.dataset.cache_dir = root, os.path.join(tmp, "cache")
        cfg.dataset.filter_duplicates = False
        benchmark = build_benchmark(cfg)
        train = build_dataset(cfg, benchmark.read_split("train", True), training=True)
        val = build_dataset(cfg, benchmark.read_split("test", False), training=False)
        seconds = {
            "train": time_items(train, args.items),
            "val": time_items(val, args.items),
            "decode": time_decode(train.records[0].img_path, args.items),
            **time_stages(train, args.items),
        }
    rates = {mode: args.items / wall for mode, (wall, _) in seconds.items()}
    cpu_rates = {mode: args.items / max(cpu, 1e-9) for mode, (_, cpu) in seconds.items()}
    load = os.getloadavg()
    print(f"data pipeline, one process, one thread ({args.items} items per row, {ORI_W}x{ORI_H} JPEG, 4 lanes)")
    print(f"{'mode':<30}{'items/s':>10}{'ms/item':>10}{'items/cpu-s':>13}")
    labels = {"train": "train (augment + targets)", "val": "val (decode, crop, resize)", "decode": "JPEG decode only",
              "augment": "augmentation only", "targets": "target encoding only"}
    for mode, label in labels.items():
        print(f"{label:<30}{rates[mode]:>10.1f}{1000 / rates[mode]:>10.2f}{cpu_rates[mode]:>13.1f}")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores "
          "(items/cpu-s: per second of this process's CPU time, less sensitive to a busy machine)")
    if args.json:
        result = {
            "train_samples_per_s": rates["train"],
            "val_samples_per_s": rates["val"],
            "decode_per_s": rates["decode"],
            "augment_per_s": rates["augment"],
            "targets_per_s": rates["targets"],
            "train_samples_per_cpu_s": cpu_rates["train"],
            "val_samples_per_cpu_s": cpu_rates["val"],
            "items": args.items,
            "load_average": list(load),
        }
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
