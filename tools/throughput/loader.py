"""Training loader throughput: samples per second of the real training loader with N workers.

Writes a CULane-layout set of road-like 1640x590 JPEGs (as ``data`` does) in a temporary folder
and reads it through the training path the Runner uses (benchmark reader, dataset with the
config's augmentation and targets, collate, epoch sampler). Per worker count: samples/s over
whole epochs (the workers' start at each epoch included, as in training), the time to the first
batch of an epoch, and the efficiency against N times the one-process item rate.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import cv2
import torch

from srlane.benchmarks import build_benchmark
from srlane.config import Config
from srlane.data.dataset import build_dataset
from srlane.data.loader import build_dataloader
from srlane.fileio import atomic_write_text
from throughput.data import PROJECT_ROOT, time_items, write_dataset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=os.path.join(PROJECT_ROOT, "configs", "srlane_r18_culane.py"))
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (default 0 1 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="samples per batch (default 8)")
    parser.add_argument("--images", type=int, default=64, help="images in the set, one epoch (default 64)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per worker count (default 2)")
    parser.add_argument("--json", metavar="OUT", help="write the table as json here")


def time_loader(loader, epochs: int) -> tuple[float, float, int]:
    """(seconds for ``epochs`` epochs, mean seconds to an epoch's first batch, samples)."""
    samples, first, start = 0, 0.0, time.perf_counter()
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        begin = time.perf_counter()
        for k, batch in enumerate(loader):
            if k == 0:
                first += time.perf_counter() - begin
            samples += len(batch["meta"])
    return time.perf_counter() - start, first / epochs, samples


def run(args: argparse.Namespace) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    cfg = Config.fromfile(args.config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "CULane")
        write_dataset(root, args.images)
        cfg.dataset.update(data_root=root, cache_dir=os.path.join(tmp, "cache"), filter_duplicates=False)
        dataset = build_dataset(cfg, build_benchmark(cfg).read_split("train", True), training=True)
        wall, _ = time_items(dataset, args.images)
        single = args.images / wall
        for workers in args.workers:
            cfg.update(workers=workers, batch_size=args.batch_size)
            seconds, first, samples = time_loader(build_dataloader(cfg, dataset, training=True), args.epochs)
            rate = samples / seconds
            rows.append({"workers": workers, "samples_per_s": rate, "first_batch_s": first,
                         "efficiency": rate / (max(1, workers) * single)})
    load = os.getloadavg()
    print(f"training loader, batch {args.batch_size}, {args.images} images an epoch, {args.epochs} epochs per row; "
          f"one process: {single:.1f} items/s")
    print(f"{'workers':>8}{'samples/s':>12}{'first batch s':>15}{'efficiency':>12}")
    for row in rows:
        print(f"{row['workers']:>8}{row['samples_per_s']:>12.1f}{row['first_batch_s']:>15.3f}{row['efficiency']:>12.2f}")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores "
          "(efficiency: samples/s over workers x the one-process rate; 0 workers count as one)")
    if args.json:
        result = {"one_process_items_per_s": single, "batch_size": args.batch_size, "rows": rows,
                  "load_average": list(load)}
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
