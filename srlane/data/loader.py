"""Batches: collate, the samplers (training: shuffled per epoch, sharded by rank, resumable;
validation: each rank its own share, no repeats) and the DataLoader builder.

The training order is a permutation seeded by ``(seed, epoch)``; with the dataset's per-item
draws a batch depends only on (seed, epoch, position).
"""
from __future__ import annotations

import math
import signal
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import cv2
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def collate(batch: Sequence[dict]) -> dict:
    """Stack tensors (``gt_category`` where the items have it); per-level maps become lists of stacked maps; ``meta`` a list of dicts."""
    out = {"img": torch.stack([item["img"] for item in batch]), "meta": [item["meta"] for item in batch]}
    if "gt_lane" in batch[0]:
        out["gt_lane"] = torch.stack([item["gt_lane"] for item in batch])
        if "gt_category" in batch[0]:
            out["gt_category"] = torch.stack([item["gt_category"] for item in batch])
        for key in ("gt_angle", "gt_seg"):
            out[key] = [torch.stack(level) for level in zip(*(item[key] for item in batch))]
    return out


class EpochSampler(Sampler[tuple[int, int]]):
    """``(epoch, index)`` keys of one epoch: indices shuffled with ``seed + epoch``, sharded by
    rank, from ``start`` on. The key carries the epoch to the dataset, also in workers that live
    across epochs (``persistent_workers``).

    The order is a function of (seed, epoch) alone, so a resumed run replays the same epoch and
    skips the samples it already trained on.
    """

    def __init__(self, size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.per_rank = math.ceil(size / world_size)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        padded = torch.cat([order, order[: self.per_rank * self.world_size - self.size]])
        yield from ((self.epoch, index) for index in padded[self.rank :: self.world_size][self.start :].tolist())


def _init_worker(_: int) -> None:
    """One torch thread per worker; Ctrl-C is the main process's (it finishes its step and saves)."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(dataset: Dataset, batch_size: int, workers: int, training: bool, seed: int = 0, rank: int = 0,
                world_size: int = 1, collate_fn=collate, pin_memory: bool = False) -> DataLoader:
    """Training: an ``EpochSampler`` (set its epoch with ``loader.sampler.set_epoch``), the last
    partial batch dropped, a seedable ``loader.generator``, workers kept from one epoch to the
    next (no restart at every epoch). Otherwise the dataset order, rank ``r`` of ``n`` reading
    indices ``r, r + n, ...`` (every image once over all ranks). ``pin_memory``: batches in
    page-locked memory (a thread of the main process copies them there), so that CUDA copies
    with ``non_blocking=True``, as Fabric's ``to_device`` makes them, overlap the running step.
    Each worker keeps its default ``prefetch_factor`` of 2 batches in flight."""
    if workers > 0:
        # One OpenCV thread per worker, set here in the parent before the workers fork: a
        # forked child that calls cv2.setNumThreads after the parent's OpenCV thread pool ran
        # can deadlock inside it.
        cv2.setNumThreads(1)
    sampler = (EpochSampler(len(dataset), True, seed, rank, world_size) if training
               else range(rank, len(dataset), world_size))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_fn,
                      drop_last=training, worker_init_fn=_init_worker if workers > 0 else None,
                      generator=torch.Generator() if training else None,
                      persistent_workers=training and workers > 0, pin_memory=pin_memory)


def build_dataloader(cfg: Mapping[str, Any], dataset: Dataset, training: bool, rank: int = 0,
                     world_size: int = 1, pin_memory: bool = False) -> DataLoader:
    """``make_loader`` with the config's ``batch_size``, ``workers`` and ``seed``."""
    return make_loader(dataset, int(cfg["batch_size"]), int(cfg["workers"]), training, int(cfg["seed"]), rank,
                       world_size, pin_memory=pin_memory)
