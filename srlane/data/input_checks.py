"""Checks on the items a loader delivers (``LaneDataset`` marks what it could not read): images of
another size than the config's, warned once per size, and unreadable images, which training
replaces (logged by name, counted, at most ``max_unreadable``) and everything else reports."""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

from srlane.data.dataset import MAX_REPLACEMENTS
from srlane.data.records import DataFormatError


def image_crops(metas: Sequence[dict]) -> list[tuple[int, int]]:
    """``(rows cropped, image height)`` of each item: what the decoder needs per image."""
    return [(meta["cut_height"], meta["img_size"][0]) for meta in metas]


def readable_part(batch: dict, report: Callable[[dict], None]) -> tuple[torch.Tensor, list[dict]] | None:
    """The images and metas of a collated batch that could be read; ``report`` is called with the
    meta of each one that could not. None when no image of the batch was read. A batch read
    whole keeps its own image tensor (no copy: pinned memory stays pinned)."""
    keep = []
    for i, meta in enumerate(batch["meta"]):
        if meta.get("unreadable"):
            report(meta)
        else:
            keep.append(i)
    if not keep:
        return None
    if len(keep) == len(batch["meta"]):
        return batch["img"], batch["meta"]
    return batch["img"][keep], [batch["meta"][i] for i in keep]


def expected_sizes(cfg: Mapping[str, Any]) -> list[tuple[int, int]]:
    """``(height, width)`` sizes a config expects: ``ori_img_h x ori_img_w`` and those of
    ``cut_heights`` (``"WxH"`` keys)."""
    sizes = [(int(cfg["ori_img_h"]), int(cfg["ori_img_w"]))] if "ori_img_h" in cfg else []
    for key in cfg.get("cut_heights") or {}:
        width, height = (int(v) for v in str(key).split("x"))
        sizes.append((height, width))
    return sizes


class InputChecks:
    """Args:
        expected_sizes: ``(height, width)`` sizes the config expects; empty: no size check.
        cut_height: rows the dataset drops from the top of every image (said in the warning).
        log: where warnings and unreadable images are written (one line each).
        max_unreadable: unreadable training images tolerated in a run; one more stops it.
    """

    def __init__(self, expected_sizes: Collection[tuple[int, int]], cut_height: int, log: Callable[[str], None],
                 max_unreadable: int = 0) -> None:
        self.expected_sizes = {tuple(size) for size in expected_sizes}
        self.cut_height, self.log = cut_height, log
        self.max_unreadable = max_unreadable
        self.unreadable = 0
        self.sizes_seen: set[tuple[int, int]] = set()

    def check_sizes(self, metas: Sequence[dict]) -> None:
        """One warning for each image size the config does not expect."""
        for meta in metas:
            size = meta.get("img_size")
            if size is None or not self.expected_sizes or tuple(size) in self.expected_sizes:
                continue
            if tuple(size) not in self.sizes_seen:
                self.sizes_seen.add(tuple(size))
                expected = " or ".join(f"{w}x{h}" for h, w in sorted(self.expected_sizes, reverse=True))
                self.log(f"warning: {meta['img_path']} is {size[1]}x{size[0]}, the config expects {expected} "
                         f"(ori_img_w x ori_img_h, cut_heights); its top {self.cut_height} rows (cut_height) are "
                         "dropped all the same (said once per size)")

    def sized(self, batches: Iterable[dict]) -> Iterator[dict]:
        """``batches`` passed on, each after ``check_sizes`` of its metas."""
        for batch in batches:
            self.check_sizes(batch["meta"])
            yield batch

    def training(self, metas: Sequence[dict]) -> None:
        """Log each replaced image by name and count it; DataFormatError past ``max_unreadable``
        or when an item found no readable image at all."""
        self.check_sizes(metas)
        for meta in metas:
            for path in meta.get("replaced", ()):
                self.unreadable += 1
                if self.unreadable > self.max_unreadable:
                    raise DataFormatError(path, None, f"cannot read this training image, unreadable image number "
                                          f"{self.unreadable} of the run (max_unreadable_images={self.max_unreadable}); "
                                          "repair or remove such images, or raise max_unreadable_images")
                self.log(f"cannot read training image {path}: replaced by the next image in the list "
                         f"({self.unreadable} so far, at most {self.max_unreadable})")
            if meta.get("unreadable"):
                raise DataFormatError(meta["img_path"], None, f"cannot read this training image nor the "
                                      f"{MAX_REPLACEMENTS} after it in the list")
