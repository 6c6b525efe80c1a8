"""Checks on the items a loader delivers (``LaneDataset`` marks what it could not read): images of
another size than the config's, warned once per size, and unreadable images, which training
replaces (logged by name, counted, at most ``max_unreadable``) and everything else reports."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from srlane.data.dataset import MAX_REPLACEMENTS
from srlane.data.records import DataFormatError


class InputChecks:
    """Args:
        expected_size: ``(height, width)`` the config expects (``ori_img_h, ori_img_w``), or None.
        cut_height: rows the dataset drops from the top of every image (said in the warning).
        log: where warnings and unreadable images are written (one line each).
        max_unreadable: unreadable training images tolerated in a run; one more stops it.
    """

    def __init__(self, expected_size: tuple[int, int] | None, cut_height: int, log: Callable[[str], None],
                 max_unreadable: int = 0) -> None:
        self.expected_size, self.cut_height, self.log = expected_size, cut_height, log
        self.max_unreadable = max_unreadable
        self.unreadable = 0
        self.sizes_seen: set[tuple[int, int]] = set()

    def check_sizes(self, metas: Sequence[dict]) -> None:
        """One warning for each image size that differs from ``expected_size``."""
        for meta in metas:
            size = meta.get("img_size")
            if size is None or self.expected_size is None or tuple(size) == tuple(self.expected_size):
                continue
            if tuple(size) not in self.sizes_seen:
                self.sizes_seen.add(tuple(size))
                (h, w), (eh, ew) = size, self.expected_size
                self.log(f"warning: {meta['img_path']} is {w}x{h}, the config expects {ew}x{eh} (ori_img_w x ori_img_h); "
                         f"its top {self.cut_height} rows (cut_height) are dropped all the same "
                         "(said once per size)")

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

    def unreadable_items(self, metas: Sequence[dict]) -> list[dict]:
        """Outside training: warn about sizes, return the items whose image could not be read."""
        self.check_sizes(metas)
        return [meta for meta in metas if meta.get("unreadable")]
