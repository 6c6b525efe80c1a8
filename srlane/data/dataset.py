"""LaneDataset: the items of a list of records, as network inputs (and training targets).

Reproducibility: item ``i`` of epoch ``e`` draws all its augmentation from
``numpy.random.default_rng([seed, e, i])``, so an item depends only on (seed, epoch, index): the
same with 0 or N workers, different from one epoch to the next. The training sampler asks for
``dataset[(e, i)]``, so workers that live across epochs draw each epoch's augmentation; a plain
``dataset[i]`` uses the epoch of ``set_epoch``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from srlane.data.crop import Crop, build_crop
from srlane.data.records import LaneRecord
from srlane.data.targets import LaneTargetEncoder, build_target_encoder
from srlane.data.transforms import LaneAugmenter, build_augmenter, resize_lanes
from srlane.lane_kinds import UNKNOWN

MAX_AUGMENT_TRIES = 10
MAX_REPLACEMENTS = 10  # unreadable training images in a row replaced before an item gives up


def read_image(path: str) -> np.ndarray:
    """BGR uint8 image; OSError naming the file when it cannot be decoded."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return img


def crop_and_resize(img: np.ndarray, img_w: int, img_h: int, crop: Crop) -> tuple[np.ndarray, int]:
    """A BGR uint8 image as the network sees it: the crop's rows dropped, resized to
    ``img_w x img_h`` (INTER_CUBIC), RGB. Returns ``(uint8 (img_h, img_w, 3), rows dropped)``;
    ValueError when the crop does not fit the image."""
    ori_h, ori_w = img.shape[:2]
    cut = crop(ori_h, ori_w)
    if not 0 <= cut < ori_h:
        raise ValueError(f"cut_height {cut} does not fit a {ori_w}x{ori_h} image")
    img = cv2.resize(img[cut:], (int(img_w), int(img_h)), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), cut


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> CHW uint8; the network divides by 255 on its device
    (``srlane.models.detector.input_images``)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class LaneDataset(Dataset):
    """Images and lanes of ``records`` as network inputs; training items also carry targets.

    Args:
        records: the images (and their lanes in original pixels).
        img_w, img_h: the network's input size.
        crop: rows dropped from the top of each image before the resize.
        seed: augmentation seed (item ``i`` of epoch ``e`` draws from ``[seed, e, i]``).
        augmenter, encoder: training only (both or neither): augmentation and target encoding.
    """

    def __init__(self, records: Sequence[LaneRecord], img_w: int, img_h: int, crop: Crop, seed: int = 0,
                 augmenter: LaneAugmenter | None = None, encoder: LaneTargetEncoder | None = None) -> None:
        if (augmenter is None) != (encoder is None):
            raise ValueError("a training dataset needs both an augmenter and a target encoder")
        self.records = list(records)
        self.img_w, self.img_h, self.crop = int(img_w), int(img_h), crop
        self.seed = int(seed)
        self.epoch = 0
        self.augmenter, self.encoder = augmenter, encoder
        self.training = encoder is not None

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws (and the training order) of ``epoch``."""
        self.epoch = int(epoch)

    def item_rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The generator of item ``index`` in ``epoch`` (default: the ``set_epoch`` one)."""
        return np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch), int(index)])

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """The item of ``key``: an index, or ``(epoch, index)`` as the training sampler asks.
        An image that cannot be read never raises here (a worker's
        exception would reach the main process as a traceback): a training item takes the next
        readable image instead and lists the unreadable paths in ``meta["replaced"]``; when none
        is found, or outside training, the item is a black image without lanes marked
        ``meta["unreadable"]``, for the caller to report."""
        epoch, index = key if isinstance(key, tuple) else (None, key)
        record, img, replaced = self._read(index)
        unreadable = img is None
        if unreadable:
            img = np.zeros((self.crop.rows + self.img_h, self.img_w, 3), np.uint8)
        ori_h, ori_w = img.shape[:2]
        try:
            img, cut = crop_and_resize(img, self.img_w, self.img_h, self.crop)
        except ValueError as err:
            raise ValueError(f"{record.img_path}: {err}") from None
        meta = {"index": int(index), "img_path": record.img_path, "img_name": record.img_name,
                "img_size": None if unreadable else (ori_h, ori_w), "cut_height": cut,
                "replaced": replaced, "unreadable": unreadable}
        if not self.training:
            return {"img": to_tensor(img), "meta": meta}
        labelled = [] if unreadable else [
            (lane, category) for lane, category in zip(record.lanes, lane_categories(record)) if len(lane) >= 2]
        lanes = self.input_lanes([lane for lane, _ in labelled], ori_h, ori_w, cut)
        img, targets = self._augment_and_encode(img, lanes, [c for _, c in labelled],
                                                self.item_rng(index, epoch), record.img_path)
        item = {
            "img": to_tensor(img),
            "gt_lane": torch.from_numpy(targets["gt_lane"]),
            "gt_angle": [torch.from_numpy(m) for m in targets["gt_angle"]],
            "gt_seg": [torch.from_numpy(m) for m in targets["gt_seg"]],
            "meta": meta,
        }
        if "gt_category" in targets:
            item["gt_category"] = torch.from_numpy(targets["gt_category"])
        return item

    def input_lanes(self, lanes: Sequence[np.ndarray], ori_h: int, ori_w: int, cut: int) -> list[np.ndarray]:
        """Lanes in an ``ori_w x ori_h`` image's pixels as ``crop_and_resize`` maps them: in the
        network input's pixels, ``cut`` rows dropped from the top (lanes of < 2 points dropped)."""
        shifted = [lane - np.array([0.0, cut]) for lane in lanes if len(lane) >= 2]
        return resize_lanes(shifted, self.img_w / ori_w, self.img_h / (ori_h - cut))

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

    def _augment_and_encode(self, img: np.ndarray, lanes: list[np.ndarray], categories: list[int],
                            rng: np.random.Generator, name: str) -> tuple[np.ndarray, dict]:
        error = None
        for _ in range(MAX_AUGMENT_TRIES):
            out_img, out_lanes, out_categories = self.augmenter.augment(img, lanes, categories, rng)
            try:
                return out_img, self.encoder(out_lanes, out_categories)
            except ValueError as err:
                error = err
        raise RuntimeError(f"{name}: no encodable augmentation in {MAX_AUGMENT_TRIES} tries: {error}")


def lane_categories(record: LaneRecord) -> tuple[int, ...]:
    """Each lane's category of ``record`` (all unknown when its labels name none)."""
    if record.lane_categories is None:
        return (UNKNOWN,) * len(record.lanes)
    return record.lane_categories


def build_dataset(cfg: Mapping[str, Any], records: Sequence[LaneRecord], training: bool) -> LaneDataset:
    """``LaneDataset`` of a config: ``img_w, img_h``, the crop (``cut_height``, ``cut_heights``),
    ``seed``; training: ``augmentation`` and the target encoder of the model's geometry."""
    return LaneDataset(records, cfg["img_w"], cfg["img_h"], build_crop(cfg), cfg["seed"],
                       build_augmenter(cfg["augmentation"]) if training else None,
                       build_target_encoder(cfg) if training else None)
