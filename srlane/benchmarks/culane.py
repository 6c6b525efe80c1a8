"""CULane: its official layout (also any custom set in the same layout), its prediction files
(``.lines.txt`` per image) and its official F1 with the nine test categories.

::

    <root>/list/train_gt.txt   "/driver_.../00000.jpg /laneseg_label_w16/.../00000.png 1 1 1 0"
    <root>/list/val.txt, val_gt.txt, test.txt, train.txt     "/driver_.../00000.jpg"
    <root>/list/test_split/test0_normal.txt ... test8_night.txt
    <root>/driver_.../00000.jpg and 00000.lines.txt          "x1 y1 x2 y2 ..." per lane
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

from srlane.benchmarks.base import Benchmark, Evaluator, check_count
from srlane.data.cache import cached_records
from srlane.data.crop import Crop
from srlane.data.records import DataFormatError, LaneRecord, clean_lane, relative_name, require_image
from srlane.evaluation.culane import CULaneEvaluator, lines_file_name
from srlane.fileio import atomic_write_text, line_fields
from srlane.lanes import Lane, write_culane_lines

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


def read_annotation(path: str) -> list[np.ndarray]:
    """Lanes of one annotation ``.lines.txt`` (strict: a malformed line is an error naming it);
    negative-coordinate points and lanes with < 2 points dropped."""
    lanes = []
    for line_no, fields in line_fields(path):
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


def image_categories(data_root: str) -> dict[str, str]:
    """Image name -> test category from the ``test_split`` lists (an image in two lists is an error)."""
    owner: dict[str, str] = {}
    for name, path in category_lists(data_root).items():
        for line_no, fields in line_fields(path):
            img_name = relative_name(fields[0])
            if owner.get(img_name, name) != name:
                raise DataFormatError(path, line_no, f"{img_name} is already in category {owner[img_name]!r}")
            owner[img_name] = name
    return owner


def parse_culane_list(data_root: str, list_path: str, categories: dict[str, str] | None = None) -> list[LaneRecord]:
    """Records of every line of a list file (blank lines skipped), with their lanes."""
    data_root = os.path.abspath(data_root)
    records = []
    for line_no, fields in line_fields(list_path):
        img_name, mask, flags = parse_list_line(fields, list_path, line_no)
        img_path = os.path.join(data_root, img_name)
        require_image(img_path, list_path, line_no)
        anno_path = os.path.join(data_root, lines_file_name(img_name))
        if not os.path.isfile(anno_path):
            raise DataFormatError(list_path, line_no, f"annotation not found: {anno_path}")
        records.append(LaneRecord(
            img_path=img_path,
            img_name=img_name,
            lanes=read_annotation(anno_path),
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
        categories = image_categories(data_root) if category_files else None
        records = parse_culane_list(data_root, list_path, categories)
        return filter_near_duplicates(records) if filter_duplicates else records

    sources = [list_path, *category_files.values()]
    return cached_records("culane", data_root, split, sources, build, cache_dir,
                          extra={"filter_duplicates": bool(filter_duplicates)})


def annotation_text(lanes: Sequence[np.ndarray], x_digits: int = 3) -> str:
    """An annotation ``.lines.txt``: one line per lane, ``x`` with ``x_digits`` decimals and
    integer ``y`` (CULane's own files: rows every 10 pixels, bottom up)."""
    return "".join(" ".join(f"{x:.{x_digits}f} {int(y)}" for x, y in lane) + "\n" for lane in lanes)


def write_lists(root: str, train: Sequence[tuple[str, Sequence[int], str | None]],
                test: Sequence[tuple[str, Sequence[int], str | None]]) -> None:
    """The list files of a CULane-layout set from (image name, lane flags, category) entries:
    ``train`` in ``train_gt.txt``/``train.txt``; ``test`` in ``test.txt``, the nine
    ``test_split`` lists and, as the validation split, ``val.txt``/``val_gt.txt``."""

    def gt_line(name: str, flags: Sequence[int]) -> str:
        mask = "/laneseg_label_w16/" + os.path.splitext(name)[0] + ".png"
        return f"/{name} {mask} " + " ".join(str(f) for f in flags) + "\n"

    lists = {
        "list/train_gt.txt": [gt_line(name, flags) for name, flags, _ in train],
        "list/train.txt": [f"/{name}\n" for name, _, _ in train],
        "list/val_gt.txt": [gt_line(name, flags) for name, flags, _ in test],
        "list/val.txt": [f"/{name}\n" for name, _, _ in test],
        "list/test.txt": [f"/{name}\n" for name, _, _ in test],
    }
    for i, category in enumerate(CATEGORIES):
        lists[f"list/test_split/test{i}_{category}.txt"] = [f"/{name}\n" for name, _, c in test if c == category]
    for rel, lines in lists.items():
        atomic_write_text(os.path.join(root, rel), "".join(lines))


def category_indices(records: Sequence[LaneRecord]) -> dict[str, list[int]] | None:
    """Image indices per CULane test category, in CULane's order (normal ... night), or None
    when no record has one."""
    out: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        if record.category is not None:
            out.setdefault(record.category, []).append(i)
    rank = {name: i for i, name in enumerate(CATEGORIES)}
    return {name: out[name] for name in sorted(out, key=lambda n: rank.get(n, len(rank)))} or None


class CULane(Benchmark):
    """CULane F1 at IoU 0.5 (width 30 on the 590 x 1640 canvas) per test category; prediction
    files ``<image name>.lines.txt`` sampled every 8 rows from the crop down."""

    name = "culane"
    splits = tuple(SPLIT_LISTS)
    options = ("filter_duplicates",)

    def __init__(self, data_root: str, crop: Crop, image_size: tuple[int, int] | None = (590, 1640),
                 cache_dir: str | None = None, filter_duplicates: bool = False) -> None:
        super().__init__(data_root, crop, image_size, cache_dir)
        self.filter_duplicates = filter_duplicates

    def _read_split(self, split: str, training: bool) -> list[LaneRecord]:
        return load_culane(self.data_root, split, self.cache_dir, filter_duplicates=self.filter_duplicates and training)

    def _points(self, lanes: Sequence[Lane]) -> list[np.ndarray]:
        """The points the writer writes (lanes with < 2 of them are not written)."""
        ori_h, ori_w = self.image_size
        y_start = self.crop(ori_h, ori_w)
        return [pts for pts in (lane.to_culane(ori_w, ori_h, y_start=y_start) for lane in lanes) if len(pts) >= 2]

    def evaluator(self, records: Sequence[LaneRecord]) -> Evaluator:
        metric = CULaneEvaluator([r.lanes for r in records], category_indices(records), iou_thresholds=(0.5,),
                                 img_shape=self.image_size)

        def evaluate(predictions: Sequence[Sequence[Lane]]) -> dict:
            check_count(predictions, records)
            results = metric.evaluate([self._points(lanes) for lanes in predictions])
            f1 = results["0.5"]["f1"]
            return {"metric": float(f1) if f1 is not None else 0.0, **results}

        return evaluate

    def write_predictions(self, records: Sequence[LaneRecord], predictions: Sequence[Sequence[Lane]],
                          output_dir: str, run_times_ms: Sequence[float] | None = None) -> None:
        for record, lanes in zip(records, predictions, strict=True):
            ori_h, ori_w = self.size_of(record)
            write_culane_lines(os.path.join(output_dir, lines_file_name(record.img_name)), lanes, ori_w, ori_h,
                               self.crop(ori_h, ori_w))
