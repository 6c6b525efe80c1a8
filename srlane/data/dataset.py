"""LaneDataset (items, evaluation), collate, per-item seeding and the DataLoader builder.

Reproducibility: item ``i`` of epoch ``e`` draws all its augmentation from
``numpy.random.default_rng([seed, e, i])``, and the training order is a permutation seeded by
``(seed, e)``. So a batch depends only on (seed, epoch, position): the same with 0 or N workers,
different from one epoch to the next. Call ``loader.dataset.set_epoch(e)`` before iterating
epoch ``e`` (workers are re-created per epoch, so they see it).
"""
from __future__ import annotations

import math
import os
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from srlane.data.culane import CATEGORIES, load_culane
from srlane.data.records import LaneRecord
from srlane.data.targets import build_target_encoder
from srlane.data.transforms import build_augmenter, resize_lanes
from srlane.data.tusimple import load_tusimple
from srlane.fileio import atomic_write_text
from srlane.lanes import Lane, tusimple_json_line, write_culane_lines

MAX_AUGMENT_TRIES = 10
MAX_REPLACEMENTS = 10  # unreadable training images in a row replaced before an item gives up


def load_split(dataset_cfg, split: str, training: bool) -> list[LaneRecord]:
    """Records of ``split`` for ``dataset_cfg.type`` (``culane`` or ``tusimple``)."""
    root, cache_dir = dataset_cfg.data_root, dataset_cfg.get("cache_dir")
    if dataset_cfg.type == "culane":
        dedupe = bool(dataset_cfg.get("filter_duplicates", False)) and training
        return load_culane(root, split, cache_dir=cache_dir, filter_duplicates=dedupe)
    if dataset_cfg.type == "tusimple":
        return load_tusimple(root, split, cache_dir=cache_dir)
    raise ValueError(f"dataset.type must be 'culane' or 'tusimple', got {dataset_cfg.type!r}")


def read_image(path: str) -> np.ndarray:
    """BGR uint8 image; OSError naming the file when it cannot be decoded."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return img


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> CHW float32 in [0, 1] (divided by 255, as the release)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class LaneDataset(Dataset):
    """Images and lanes of one split, as network inputs (and training targets).

    Args:
        cfg: the experiment config (``img_w, img_h, cut_height, num_points, max_lanes, seed``,
            ``dataset``, ``augmentation``, ``model.sketch_head.feat_ds_strides``).
        split: the dataset's split name (see the readers) or, for CULane, a list path.
        training: augment and return targets.
        records: use these records instead of reading the split.
    """

    def __init__(self, cfg, split: str, training: bool, records: Sequence[LaneRecord] | None = None) -> None:
        self.cfg = cfg
        self.split, self.training = split, training
        self.records = list(records) if records is not None else load_split(cfg.dataset, split, training)
        self.img_w, self.img_h, self.cut_height = cfg.img_w, cfg.img_h, cfg.cut_height
        self.seed = int(cfg.seed)
        self.epoch = 0
        self.augmenter = build_augmenter(cfg.augmentation) if training else None
        self.encoder = build_target_encoder(cfg) if training else None
        self._evaluator = None

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws (and the training order) of ``epoch``."""
        self.epoch = int(epoch)

    def item_rng(self, index: int) -> np.random.Generator:
        """The generator of item ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __getitem__(self, index: int) -> dict:
        """The item of ``index``. An image that cannot be read never raises here (a worker's
        exception would reach the main process as a traceback): a training item takes the next
        readable image instead and lists the unreadable paths in ``meta["replaced"]``; when none
        is found, or outside training, the item is a black image without lanes marked
        ``meta["unreadable"]``, for the caller to report."""
        record, img, replaced = self._read(index)
        unreadable = img is None
        if unreadable:
            img = np.zeros((self.cut_height + self.img_h, self.img_w, 3), np.uint8)
        ori_h, ori_w = img.shape[:2]
        if not 0 <= self.cut_height < ori_h:
            raise ValueError(f"cut_height {self.cut_height} does not fit image {record.img_path} ({ori_w}x{ori_h})")
        img = cv2.resize(img[self.cut_height:], (self.img_w, self.img_h), interpolation=cv2.INTER_CUBIC)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        meta = {"index": int(index), "img_path": record.img_path, "img_name": record.img_name,
                "img_size": None if unreadable else (ori_h, ori_w), "cut_height": self.cut_height,
                "replaced": replaced, "unreadable": unreadable}
        if not self.training:
            return {"img": to_tensor(img), "meta": meta}
        lanes = [] if unreadable else [lane - np.array([0.0, self.cut_height]) for lane in record.lanes]
        lanes = resize_lanes(lanes, self.img_w / ori_w, self.img_h / (ori_h - self.cut_height))
        img, targets = self._augment_and_encode(img, lanes, self.item_rng(index), record.img_path)
        return {
            "img": to_tensor(img),
            "gt_lane": torch.from_numpy(targets["gt_lane"]),
            "gt_angle": [torch.from_numpy(m) for m in targets["gt_angle"]],
            "gt_seg": [torch.from_numpy(m) for m in targets["gt_seg"]],
            "meta": meta,
        }

    def _read(self, index: int) -> tuple[LaneRecord, np.ndarray | None, list[str]]:
        """The record and image of ``index`` or, in training, of the next readable index (the
        unreadable paths listed); in training an image stays None only after MAX_REPLACEMENTS."""
        replaced: list[str] = []
        for step in range(MAX_REPLACEMENTS + 1 if self.training else 1):
            record = self.records[(index + step) % len(self.records)]
            img = cv2.imread(record.img_path, cv2.IMREAD_COLOR)
            if img is not None:
                return record, img, replaced
            replaced.append(record.img_path)
        return self.records[index], None, replaced if self.training else []

    def _augment_and_encode(self, img: np.ndarray, lanes: list[np.ndarray], rng: np.random.Generator,
                            name: str) -> tuple[np.ndarray, dict]:
        error = None
        for _ in range(MAX_AUGMENT_TRIES):
            out_img, out_lanes = self.augmenter(img, lanes, rng)
            try:
                return out_img, self.encoder(out_lanes)
            except ValueError as err:
                error = err
        raise RuntimeError(f"{name}: no encodable augmentation in {MAX_AUGMENT_TRIES} tries: {error}")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_evaluator"] = None   # workers never score; do not copy annotation rasters to them
        return state

    def evaluate(self, predictions: Sequence[Sequence[Lane]], output_dir: str | None = None) -> dict:
        """Score one list of ``Lane`` per image (dataset order) with the benchmark's metric.

        Returns the metric's results plus ``"metric"``: CULane F1 at IoU 0.5 (0.0 where it is
        undefined, e.g. no lanes at all) or TuSimple accuracy. With ``output_dir`` also writes
        the prediction files there (see ``write_predictions``). The original image size is
        ``cfg.ori_img_w x cfg.ori_img_h``.
        """
        if len(predictions) != len(self.records):
            raise ValueError(f"{len(predictions)} predictions for {len(self.records)} images")
        ori_w, ori_h = int(self.cfg.ori_img_w), int(self.cfg.ori_img_h)
        if output_dir is not None:
            self.write_predictions(predictions, output_dir)
        if self.cfg.dataset.type == "tusimple":
            from srlane.evaluation.tusimple import tusimple_metric

            preds = [{"raw_file": r.img_name, "run_time": 0,
                      "lanes": [lane.to_tusimple(r.h_samples, ori_w, ori_h) for lane in lanes]}
                     for lanes, r in zip(predictions, self.records)]
            results = tusimple_metric(preds, self.tusimple_ground_truth())
            return {"metric": float(results["accuracy"]), **results}
        # the points the CULane writer writes (lanes with < 2 points are not written)
        y_start = int(self.cfg.cut_height)
        points = [[pts for pts in (lane.to_culane(ori_w, ori_h, y_start=y_start) for lane in lanes) if len(pts) >= 2]
                  for lanes in predictions]
        results = self.culane_evaluator().evaluate(points)
        f1 = results["0.5"]["f1"]
        return {"metric": float(f1) if f1 is not None else 0.0, **results}

    def write_predictions(self, predictions: Sequence[Sequence[Lane]], output_dir: str) -> None:
        """CULane: ``<output_dir>/<image name>.lines.txt`` per image; TuSimple: one
        ``<output_dir>/predictions.json`` (``run_time`` 0: not measured here)."""
        ori_w, ori_h = int(self.cfg.ori_img_w), int(self.cfg.ori_img_h)
        if self.cfg.dataset.type == "tusimple":
            lines = [tusimple_json_line(r.img_name, lanes, r.h_samples, 0, ori_w, ori_h)
                     for r, lanes in zip(self.records, predictions)]
            atomic_write_text(os.path.join(output_dir, "predictions.json"), "".join(line + "\n" for line in lines))
            return
        for record, lanes in zip(self.records, predictions):
            name = os.path.splitext(record.img_name)[0] + ".lines.txt"
            write_culane_lines(os.path.join(output_dir, name), lanes, ori_w, ori_h, int(self.cfg.cut_height))

    def culane_evaluator(self):
        """The CULane metric over this split's annotations, built once: its annotation rasters
        are kept and reused by every later validation."""
        if self._evaluator is None:
            from srlane.evaluation.culane import CULaneEvaluator

            self._evaluator = CULaneEvaluator([r.lanes for r in self.records], category_indices(self.records),
                                              iou_thresholds=(0.5,),
                                              img_shape=(int(self.cfg.ori_img_h), int(self.cfg.ori_img_w)))
        return self._evaluator

    def tusimple_ground_truth(self) -> list[dict]:
        """The split's annotations as TuSimple json records (raw_file, lanes, h_samples)."""
        return [{"raw_file": r.img_name, "lanes": tusimple_rows(r), "h_samples": list(r.h_samples)}
                for r in self.records]


def category_indices(records: Sequence[LaneRecord]) -> dict[str, list[int]] | None:
    """Image indices per CULane test category, in CULane's order (normal ... night), or None
    when no record has one."""
    out: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        if record.category is not None:
            out.setdefault(record.category, []).append(i)
    rank = {name: i for i, name in enumerate(CATEGORIES)}
    return {name: out[name] for name in sorted(out, key=lambda n: rank.get(n, len(rank)))} or None


def tusimple_rows(record: LaneRecord) -> list[list[float]]:
    """The record's lanes back as TuSimple rows: x at each h_sample, -2 where absent."""
    rows = []
    index = {y: j for j, y in enumerate(record.h_samples)}
    for lane in record.lanes:
        xs = [-2.0] * len(record.h_samples)
        for x, y in lane.tolist():
            xs[index[int(y)]] = x
        rows.append(xs)
    return rows


def collate(batch: Sequence[dict]) -> dict:
    """Stack tensors; per-level maps become lists of stacked maps; ``meta`` a list of dicts."""
    out = {"img": torch.stack([item["img"] for item in batch]), "meta": [item["meta"] for item in batch]}
    if "gt_lane" in batch[0]:
        out["gt_lane"] = torch.stack([item["gt_lane"] for item in batch])
        for key in ("gt_angle", "gt_seg"):
            out[key] = [torch.stack(level) for level in zip(*(item[key] for item in batch))]
    return out


class EpochSampler(Sampler[int]):
    """Indices of one epoch: shuffled with ``seed + epoch``, sharded by rank, from ``start`` on.

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

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        padded = torch.cat([order, order[: self.per_rank * self.world_size - self.size]])
        yield from padded[self.rank :: self.world_size][self.start :].tolist()


def _init_worker(_: int) -> None:
    torch.set_num_threads(1)


def build_dataloader(cfg, split: str, training: bool, records: Sequence[LaneRecord] | None = None) -> DataLoader:
    """DataLoader over ``LaneDataset(cfg, split, training)``: ``cfg.batch_size``, ``cfg.workers``;
    training shuffles with EpochSampler (seed ``cfg.seed``; set its epoch with ``loader.sampler.set_epoch``) and drops the last partial
    batch, validation keeps the dataset order."""
    dataset = LaneDataset(cfg, split, training, records=records)
    workers = int(cfg.workers)
    if workers > 0:
        # One OpenCV thread per worker, set here in the parent before the workers fork: a
        # forked child that calls cv2.setNumThreads after the parent's OpenCV thread pool ran
        # can deadlock inside it.
        cv2.setNumThreads(1)
    return DataLoader(
        dataset,
        batch_size=int(cfg.batch_size),
        sampler=EpochSampler(len(dataset), True, int(cfg.seed)) if training else None,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        drop_last=training,
        worker_init_fn=_init_worker if workers > 0 else None,
        persistent_workers=False,
    )
