"""CULane in its official layout (also any custom set in the same layout).

::

    <root>/list/train_gt.txt   "/driver_.../00000.jpg /laneseg_label_w16/.../00000.png 1 1 1 0"
    <root>/list/val.txt, val_gt.txt, test.txt, train.txt     "/driver_.../00000.jpg"
    <root>/list/test_split/test0_normal.txt ... test8_night.txt
    <root>/driver_.../00000.jpg and 00000.lines.txt          "x1 y1 x2 y2 ..." per lane
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from srlane.data.cache import cached_records
from srlane.data.records import DataFormatError, LaneRecord, clean_lane, relative_name, require_image

SPLIT_LISTS = {
    "train": ("list/train_gt.txt", "list/train.txt"),
    "val": ("list/val.txt", "list/val_gt.txt"),
    "test": ("list/test.txt",),
}
CATEGORIES = ("normal", "crowd", "hlight", "shadow", "noline", "arrow", "curve", "cross", "night")
DUPLICATE_THRESHOLD = 15.0


def split_list_path(data_root: str, split: str) -> str:
    """The list file of a split: a name of SPLIT_LISTS (first existing candidate) or a path
    relative to the data root ending in ``.txt`` (for custom lists)."""
    candidates = (split,) if split.endswith(".txt") else SPLIT_LISTS.get(split)
    if candidates is None:
        raise ValueError(f"unknown CULane split {split!r}: expected one of {sorted(SPLIT_LISTS)} "
                         "or a list file path relative to the data root")
    for candidate in candidates:
        path = os.path.join(data_root, candidate)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"CULane split {split!r}: none of {list(candidates)} exists under {data_root}")


def category_lists(data_root: str) -> dict[str, str]:
    """Existing ``list/test_split/test{i}_{name}.txt`` files by category name."""
    out = {}
    for i, name in enumerate(CATEGORIES):
        path = os.path.join(data_root, "list", "test_split", f"test{i}_{name}.txt")
        if os.path.isfile(path):
            out[name] = path
    return out


def read_lines_file(path: str) -> list[np.ndarray]:
    """Lanes of one ``.lines.txt``: negative-coordinate points and lanes with < 2 points dropped."""
    lanes = []
    with open(path) as f:
        for line_no, text in enumerate(f, 1):
            fields = text.split()
            if not fields:
                continue
            if len(fields) % 2:
                raise DataFormatError(path, line_no, f"odd number of values ({len(fields)}); expected x y pairs")
            try:
                values = np.array([float(v) for v in fields], dtype=np.float32)
            except ValueError as err:
                raise DataFormatError(path, line_no, f"non-numeric value: {err}") from None
            lane = clean_lane(values)
            if lane is not None:
                lanes.append(lane)
    return lanes


def parse_list_line(fields: list[str], list_path: str, line_no: int) -> tuple[str, str | None, tuple[int, ...] | None]:
    """``image [mask [flags...]]`` -> (image name, mask name or None, flags or None)."""
    mask = relative_name(fields[1]) if len(fields) > 1 else None
    flags = None
    if len(fields) > 2:
        if any(f not in ("0", "1") for f in fields[2:]):
            raise DataFormatError(list_path, line_no, f"lane flags must be 0 or 1, got {fields[2:]}")
        flags = tuple(int(f) for f in fields[2:])
    return relative_name(fields[0]), mask, flags


def read_categories(data_root: str) -> dict[str, str]:
    """Image name -> test category from the ``test_split`` lists (an image in two lists is an error)."""
    owner: dict[str, str] = {}
    for name, path in category_lists(data_root).items():
        with open(path) as f:
            for line_no, text in enumerate(f, 1):
                fields = text.split()
                if not fields:
                    continue
                img_name = relative_name(fields[0])
                if owner.get(img_name, name) != name:
                    raise DataFormatError(path, line_no, f"{img_name} is already in category {owner[img_name]!r}")
                owner[img_name] = name
    return owner


def parse_culane_list(data_root: str, list_path: str, categories: dict[str, str] | None = None) -> list[LaneRecord]:
    """Records of every line of a list file (blank lines skipped), with their lanes."""
    data_root = os.path.abspath(data_root)
    records = []
    with open(list_path) as f:
        for line_no, text in enumerate(f, 1):
            fields = text.split()
            if not fields:
                continue
            img_name, mask, flags = parse_list_line(fields, list_path, line_no)
            img_path = os.path.join(data_root, img_name)
            require_image(img_path, list_path, line_no)
            anno_path = os.path.splitext(img_path)[0] + ".lines.txt"
            if not os.path.isfile(anno_path):
                raise DataFormatError(list_path, line_no, f"annotation not found: {anno_path}")
            records.append(LaneRecord(
                img_path=img_path,
                img_name=img_name,
                lanes=read_lines_file(anno_path),
                category=(categories or {}).get(img_name),
                mask_path=os.path.join(data_root, mask) if mask else None,
                lane_exist=flags,
            ))
    return records


def filter_near_duplicates(records: list[LaneRecord], threshold: float = DUPLICATE_THRESHOLD) -> list[LaneRecord]:
    """Drop frames whose mean absolute pixel difference to the previous frame is below
    ``threshold`` (the release's filter of near-identical video frames).

    The previous frame is the previous list entry, kept or not. Unlike the release (which
    compares the first frame with a black image) the first frame is always kept, as is a frame
    whose size differs from the previous one.
    """
    kept, previous = [], None
    for record in records:
        img = cv2.imread(record.img_path, cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"cannot decode image {record.img_path}")
        img = img.astype(np.float32)
        if previous is None or previous.shape != img.shape or np.abs(img - previous).mean() >= threshold:
            kept.append(record)
        previous = img
    return kept


def load_culane(data_root: str, split: str, cache_dir: str | None = None,
                filter_duplicates: bool = False) -> list[LaneRecord]:
    """LaneRecords of a CULane split (``train``, ``val``, ``test`` or a list path).

    Test records carry their category from ``list/test_split``. ``filter_duplicates`` drops
    near-duplicate frames (training only; reads every image once, then cached).
    """
    list_path = split_list_path(data_root, split)
    category_files = category_lists(data_root) if split == "test" else {}

    def build() -> list[LaneRecord]:
        categories = read_categories(data_root) if category_files else None
        records = parse_culane_list(data_root, list_path, categories)
        return filter_near_duplicates(records) if filter_duplicates else records

    sources = [list_path, *category_files.values()]
    return cached_records("culane", data_root, split, sources, build, cache_dir,
                          extra={"filter_duplicates": bool(filter_duplicates)})
