"""CULane: its official layout (also any custom set in the same layout), its prediction files
(``.lines.txt`` per image, written and read back) and its official F1 with the nine test
categories.

::

    <root>/list/train_gt.txt   "/driver_.../00000.jpg /laneseg_label_w16/.../00000.png 1 1 1 0"
    <root>/list/val.txt, val_gt.txt, test.txt, train.txt     "/driver_.../00000.jpg"
    <root>/list/test_split/test0_normal.txt ... test8_night.txt
    <root>/driver_.../00000.jpg and 00000.lines.txt          "x1 y1 x2 y2 ..." per lane
    <root>/driver_.../00000.lines.categories.txt            (optional) one OpenLane category id per lane

A ``.lines.categories.txt`` sidecar (not CULane's own: the synthetic set writes one, docs/labels.md)
gives the kind of each lane of the ``.lines.txt`` beside it, one id of ``srlane.lane_kinds`` per
line in the same order; the reader puts them in ``LaneRecord.lane_categories`` (None without a
sidecar). A sidecar with another number of lines than its ``.lines.txt``, or an id that is not
OpenLane's, is a DataFormatError naming the file and line. Sidecars are cache sources.

Reading ``.lines.txt`` files: annotations scored from files (``scoring_records``) are read as the
official C++ tool reads them (``read_lines_file``); training annotations and prediction files are
read strictly (``read_lane_file``: a value that is not a number or an odd number of values is an
error naming the file and line, where the official tool would keep the pairs before it), with the
same values wherever a file is well-formed. A value that reads as a number that is not finite
(``nan``, ``inf``, ``1e999``) is an error in every reading. Training and validation lanes then
pass the label checks (``srlane.data.label_checks``, docs/labels.md) on the config's image size.
Missing annotation or prediction files count as 0 lanes, reported by one warning with their
number (the official tool counts them silently).
"""
from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence

import cv2
import numpy as np

from srlane.benchmarks.base import Benchmark, PixelEvaluator
from srlane.data.cache import cached_records
from srlane.data.crop import Crop
from srlane.data.label_checks import clean_lane
from srlane.data.records import DataFormatError, LaneRecord, ListEntry, read_list, read_text, relative_name
from srlane.evaluation.culane import CULaneEvaluator, ImageScores, threshold_key
from srlane.fileio import atomic_write_text
from srlane.lane_kinds import CATEGORY_IDS, check_category
from srlane.lanes import (CULANE_DECIMALS, Lane, has_kinds, lanes_pixel_points, printed, sampled_categories,
                          write_culane_lines)

SPLIT_LISTS = {
    "train": ("list/train_gt.txt", "list/train.txt"),
    "val": ("list/val.txt", "list/val_gt.txt"),
    "test": ("list/test.txt",),
}
CATEGORIES = ("normal", "crowd", "hlight", "shadow", "noline", "arrow", "curve", "cross", "night")
CATEGORY_FOLDER = os.path.join("list", "test_split")
DUPLICATE_THRESHOLD = 15.0
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_NUMBER_TOKEN = re.compile(_NUMBER)
_PLAIN_LINE = re.compile(rf"\s*(?:{_NUMBER}\s+)*(?:{_NUMBER})?\s*")
_TOKEN = re.compile(rf"\s*({_NUMBER})")


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


def lines_file_name(image_name: str) -> str:
    """``a/b/00000.jpg -> a/b/00000.lines.txt`` (the official naming of annotations and predictions)."""
    stem = image_name[:image_name.rfind(".")] if "." in image_name else image_name
    return stem + ".lines.txt"


def categories_path(lines_path: str) -> str:
    """``a/b/00000.lines.txt -> a/b/00000.lines.categories.txt``: the sidecar giving the kind of
    each lane of a ``.lines.txt``."""
    return lines_path[:-len(".txt")] + ".categories.txt"


def categories_file_name(image_name: str) -> str:
    """``a/b/00000.jpg -> a/b/00000.lines.categories.txt``: the category sidecar of an image."""
    return categories_path(lines_file_name(image_name))


def category_lists(folder: str) -> dict[str, str]:
    """Category name -> list file, for each ``*.txt`` of ``folder`` in file-name order
    (``test0_normal.txt`` -> ``normal``, as in CULane's ``list/test_split``); {} without the folder."""
    if not os.path.isdir(folder):
        return {}
    out: dict[str, str] = {}
    for file in sorted(os.listdir(folder)):
        if file.endswith(".txt"):
            path = os.path.join(folder, file)
            category = re.sub(r"^test\d+_", "", file[:-len(".txt")])
            if category in out:
                raise DataFormatError(path, None, f"category {category!r} has a list already: {out[category]}")
            out[category] = path
    return out


def image_categories(lists: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    """Image name -> category from category list files (``category_lists``): each listed image
    must be one of ``names`` and in one category only (DataFormatError naming list and line)."""
    known = set(names)
    owner: dict[str, str] = {}
    for category, path in lists.items():
        for entry in read_list(path):
            if entry.name not in known:
                raise DataFormatError(path, entry.line, f"image {entry.name!r} is not in the evaluated list")
            if owner.get(entry.name, category) != category:
                raise DataFormatError(path, entry.line, f"{entry.name} is already in category {owner[entry.name]!r}")
            owner[entry.name] = category
    return owner


def category_indices(records: Sequence[LaneRecord]) -> dict[str, list[int]] | None:
    """Image indices per CULane test category, in CULane's order (normal ... night, then other
    names), or None when no record has one."""
    out: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        if record.category is not None:
            out.setdefault(record.category, []).append(i)
    rank = {name: i for i, name in enumerate(CATEGORIES)}
    return {name: out[name] for name in sorted(out, key=lambda n: rank.get(n, len(rank)))} or None


# ----------------------------------------------------------------------------- .lines.txt files

def _text_lines(path: str) -> list[str]:
    """The text lines of a file (UTF-8; a last empty line is not a line)."""
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def parse_lane_line(line: str) -> np.ndarray:
    """One text line -> float32 ``(N, 2)``: numbers read as ``x y`` pairs until parsing fails.

    Mirrors C++ ``while (ss >> x >> y)``: a number is the longest valid prefix at the current
    position, reading stops at the first thing that is not a number, a trailing odd value is lost.
    """
    if _PLAIN_LINE.fullmatch(line):
        values = np.array(line.split(), dtype=np.float64)
    else:
        found, pos = [], 0
        while (match := _TOKEN.match(line, pos)) is not None:
            found.append(float(match.group(1)))
            pos = match.end()
        values = np.array(found, dtype=np.float64)
    return values[:len(values) // 2 * 2].astype(np.float32).reshape(-1, 2)


def _require_finite(path: str, number: int, line: str) -> None:
    """DataFormatError naming the first value of a text line that reads as a number but is not
    finite (``nan``, ``inf``, ``1e999``: what no reading should pass on)."""
    for token in line.split():
        try:
            value = float(token)
        except ValueError:
            continue
        if not math.isfinite(value):
            raise DataFormatError(path, number, f"value {token!r} is not a finite number; expected x y pairs of "
                                                "finite numbers")


def read_lines_file(path: str) -> list[np.ndarray]:
    """Lanes of a ``.lines.txt`` file as the official tool reads them (``parse_lane_line``), one
    per text line (a blank line is a lane with 0 points); a value that is not finite is a
    DataFormatError naming the file and line."""
    lines = _text_lines(path)
    for number, line in enumerate(lines, 1):
        _require_finite(path, number, line)
    return [parse_lane_line(line) for line in lines]


def read_lane_file(path: str) -> list[np.ndarray]:
    """Lanes of a ``.lines.txt`` file read strictly: float32 ``(N, 2)``, one per text line (a
    blank line is a lane with 0 points).

    A value that is not a finite number or an odd number of values is a DataFormatError naming
    the file and line; otherwise the values are ``read_lines_file``'s.
    """
    lanes = []
    for number, line in enumerate(_text_lines(path), 1):
        _require_finite(path, number, line)
        values = line.split()
        if not _PLAIN_LINE.fullmatch(line):
            bad = next((v for v in values if not _NUMBER_TOKEN.fullmatch(v)), line.strip())
            raise DataFormatError(path, number, f"non-numeric value {bad!r}; expected x y pairs of numbers")
        if len(values) % 2:
            raise DataFormatError(path, number, f"odd number of values ({len(values)}); expected x y pairs")
        lanes.append(parse_lane_line(line))
    return lanes


def read_categories_file(path: str, count: int) -> tuple[int, ...]:
    """The lane categories of a ``.lines.categories.txt`` sidecar, which must hold ``count`` ids
    (one per lane of its ``.lines.txt``), each one of OpenLane's; else a DataFormatError naming
    the file and line."""
    lines = _text_lines(path)
    categories = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        category = check_category(int(text)) if re.fullmatch(r"[+-]?\d+", text) else None
        if category is None:
            raise DataFormatError(path, number, f"lane category {text!r} is not one of OpenLane's {list(CATEGORY_IDS)}")
        categories.append(category)
    if len(categories) != count:
        raise DataFormatError(path, min(len(categories), count) + 1,
                              f"{len(categories)} lane categories for the {count} lanes of its .lines.txt; "
                              "expected one per lane")
    return tuple(categories)


def read_annotation(path: str, image_size: tuple[int, int] | None = None
                    ) -> tuple[list[np.ndarray], tuple[int, ...] | None]:
    """Training lanes of one annotation ``.lines.txt`` (``read_lane_file``), checked on an image
    of ``image_size`` (``clean_lane``: negative-coordinate points and lanes with < 2 points
    dropped, a lane that cannot be true a DataFormatError naming the file and line), and their
    categories from the ``.lines.categories.txt`` beside it (``read_categories_file``; None
    without one)."""
    raw = read_lane_file(path)
    sidecar = categories_path(path)
    read = read_categories_file(sidecar, len(raw)) if os.path.isfile(sidecar) else None
    lanes, categories = [], []
    for number, points in enumerate(raw, 1):
        try:
            lane = clean_lane(points, image_size)
        except ValueError as err:
            raise DataFormatError(path, number, str(err)) from None
        if lane is not None:
            lanes.append(lane)
            categories.append(read[number - 1] if read is not None else 0)
    return lanes, tuple(categories) if read is not None else None


def read_lane_files(folder: str, names: Sequence[str], what: str,
                    read: Callable[[str], list[np.ndarray]]) -> list[list[np.ndarray]]:
    """``read(<folder>/<lines_file_name(name)>)`` of each image name; a missing file is an image
    without lanes, all of them reported by one warning (``what``: "annotation", "prediction")."""
    lanes, missing = [], []
    for name in names:
        path = os.path.join(folder, lines_file_name(name))
        if os.path.exists(path):
            lanes.append(read(path))
        else:
            lanes.append([])
            missing.append(path)
    if missing:
        warnings.warn(f"{len(missing)} of {len(names)} {what} files are missing (counted as 0 lanes), "
                      f"e.g. {missing[0]}", stacklevel=3)
    return lanes


def read_predictions(records: Sequence[LaneRecord], source: str) -> list[list[np.ndarray]]:
    """The predicted lanes of each record from ``<source>/<image name>.lines.txt``
    (``read_lane_file``; a missing file: no lanes, one warning for all)."""
    return read_lane_files(source, [r.img_name for r in records], "prediction", read_lane_file)


# ----------------------------------------------------------------------------- the split

def list_extras(entry: ListEntry, list_path: str) -> tuple[str | None, tuple[int, ...] | None]:
    """The fields after the image of ``image [mask [flags...]]``: (mask name or None, flags or None)."""
    mask = relative_name(entry.fields[0]) if entry.fields else None
    flags = None
    if len(entry.fields) > 1:
        if any(f not in ("0", "1") for f in entry.fields[1:]):
            raise DataFormatError(list_path, entry.line, f"lane flags must be 0 or 1, got {entry.fields[1:]}")
        flags = tuple(int(f) for f in entry.fields[1:])
    return mask, flags


def parse_culane_list(data_root: str, list_path: str, category_files: Mapping[str, str] | None = None,
                      image_size: tuple[int, int] | None = None) -> list[LaneRecord]:
    """Records of every line of a list file (blank lines skipped), with their lanes
    (``read_annotation`` on ``image_size``; a label that fails: no lanes and its ``bad_label``)
    and, from ``category_files`` (``category_lists``), their category."""
    data_root = os.path.abspath(data_root)
    entries = read_list(list_path, data_root)
    categories = image_categories(category_files or {}, [e.name for e in entries])
    records = []
    for entry in entries:
        mask, flags = list_extras(entry, list_path)
        anno_path = os.path.join(data_root, lines_file_name(entry.name))
        if not os.path.isfile(anno_path):
            raise DataFormatError(list_path, entry.line, f"annotation not found: {anno_path}")
        lanes, lane_categories, bad = [], None, None
        try:
            lanes, lane_categories = read_annotation(anno_path, image_size)
        except DataFormatError as err:
            bad = (err.path, err.line, err.message)
        records.append(LaneRecord(
            img_path=entry.path,
            img_name=entry.name,
            lanes=lanes,
            category=categories.get(entry.name),
            mask_path=os.path.join(data_root, mask) if mask else None,
            lane_exist=flags,
            bad_label=bad,
            lane_categories=lane_categories,
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


def load_culane(data_root: str, split: str, cache_dir: str | None = None, filter_duplicates: bool = False,
                image_size: tuple[int, int] | None = None) -> list[LaneRecord]:
    """LaneRecords of a CULane split (``train``, ``val``, ``test`` or a list path), their lanes
    checked on ``image_size`` (``(height, width)``; None: no margin check), those whose label
    fails with their ``bad_label``.

    Test records carry their category from ``list/test_split``. ``filter_duplicates`` drops
    near-duplicate frames (training only; reads every image once, then cached).
    """
    list_path = split_list_path(data_root, split)
    category_files = category_lists(os.path.join(data_root, CATEGORY_FOLDER)) if split == "test" else {}

    def build() -> list[LaneRecord]:
        records = parse_culane_list(data_root, list_path, category_files, image_size)
        return filter_near_duplicates(records) if filter_duplicates else records

    sidecars = [os.path.join(data_root, categories_file_name(entry.name)) for entry in read_list(list_path)]
    sources = [list_path, *category_files.values(), *filter(os.path.isfile, sidecars)]
    return cached_records("culane", data_root, split, sources, build, cache_dir,
                          extra={"filter_duplicates": bool(filter_duplicates)}, image_size=image_size)


def annotation_text(lanes: Sequence[np.ndarray], x_digits: int = 3) -> str:
    """An annotation ``.lines.txt``: one line per lane, ``x`` with ``x_digits`` decimals and
    integer ``y`` (CULane's own files: rows every 10 pixels, bottom up)."""
    return "".join(" ".join(f"{x:.{x_digits}f} {int(y)}" for x, y in lane) + "\n" for lane in lanes)


def categories_text(categories: Sequence[int]) -> str:
    """A ``.lines.categories.txt`` sidecar: one category id per line, in the order of the lanes."""
    return "".join(f"{category}\n" for category in categories)


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


def scoring_records(list_path: str, anno_dir: str, categories_dir: str | None = None) -> list[LaneRecord]:
    """Records of a list file for scoring prediction files: each image's annotation under
    ``anno_dir`` as the official tool reads it (``read_lines_file``; a missing file: no lanes, one
    warning for all) and its category from the lists in ``categories_dir`` (``category_lists``)."""
    names = [entry.name for entry in read_list(list_path)]
    annotations = read_lane_files(anno_dir, names, "annotation", read_lines_file)
    categories: dict[str, str] = {}
    if categories_dir is not None:
        lists = category_lists(categories_dir)
        if not lists:
            raise DataFormatError(categories_dir, None, "no category lists (*.txt) in this folder")
        categories = image_categories(lists, names)
    return [LaneRecord(img_path=os.path.abspath(os.path.join(anno_dir, name)), img_name=name, lanes=lanes,
                       category=categories.get(name))
            for name, lanes in zip(names, annotations)]


def annotation_evaluator(records: Sequence[LaneRecord], iou_thresholds: Sequence[float] = (0.5,), width: int = 30,
                         img_shape: tuple[int, int] = (590, 1640), workers: int | None = None) -> CULaneEvaluator:
    """The official F1 over the records' lanes, per category of ``category_indices(records)``
    (``CULaneEvaluator``: lane ``width``, canvas ``img_shape``, pool of ``workers``)."""
    return CULaneEvaluator([r.lanes for r in records], category_indices(records), iou_thresholds, width, img_shape,
                           workers)


def f1_results(evaluator: CULaneEvaluator, scores: ImageScores) -> dict:
    """``evaluator.summarize(scores)`` with ``"metric"``: the F1 at its lowest IoU threshold
    (validation's only one, 0.5), 0 where undefined."""
    results = evaluator.summarize(scores)
    f1 = results[threshold_key(evaluator.thresholds[0])]["f1"]
    return {"metric": float(f1) if f1 is not None else 0.0, **results}


class CULane(Benchmark):
    """CULane F1 at IoU 0.5 (width 30 on the 590 x 1640 canvas) per test category; prediction
    files ``<image name>.lines.txt`` sampled every 8 rows from the crop down."""

    name = "culane"
    splits = tuple(SPLIT_LISTS)
    options = ("filter_duplicates",)

    def __init__(self, data_root: str, crop: Crop, image_size: tuple[int, int] | None = (590, 1640),
                 cache_dir: str | None = None, on_bad_label: str = "error", filter_duplicates: bool = False) -> None:
        super().__init__(data_root, crop, image_size, cache_dir, on_bad_label)
        self.filter_duplicates = filter_duplicates

    def _read_split(self, split: str, training: bool) -> list[LaneRecord]:
        return load_culane(self.data_root, split, self.cache_dir, self.filter_duplicates and training, self.image_size)

    def pixel_evaluator(self, records: Sequence[LaneRecord]) -> PixelEvaluator:
        metric = self.iou_evaluator(records, (0.5,))
        return lambda predictions: f1_results(metric, metric.score_images(predictions))

    def iou_evaluator(self, records: Sequence[LaneRecord], iou_thresholds: Sequence[float]) -> CULaneEvaluator:
        return annotation_evaluator(records, iou_thresholds, img_shape=self.image_size)

    def prediction_points(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[np.ndarray]:
        ori_h, ori_w = self.size_of(record)
        sampled = lanes_pixel_points(lanes, ori_w, ori_h, self.crop(ori_h, ori_w))
        return [printed(points, CULANE_DECIMALS).astype(np.float32) for points in sampled]

    def prediction_categories(self, record: LaneRecord, lanes: Sequence[Lane]) -> list[int]:
        ori_h, ori_w = self.size_of(record)
        return sampled_categories(lanes, ori_w, ori_h, self.crop(ori_h, ori_w))

    def write_predictions(self, records: Sequence[LaneRecord], predictions: Sequence[Sequence[Lane]],
                          output_dir: str, run_times_ms: Sequence[float] | None = None) -> None:
        """``<name>.lines.txt`` per image (the official format, unchanged) and, when the lanes have
        kinds, the ``.lines.categories.txt`` sidecar beside it (``categories_file_name``, the
        labels' format)."""
        kinds = any(has_kinds(lanes) for lanes in predictions)
        for record, lanes in zip(records, predictions, strict=True):
            ori_h, ori_w = self.size_of(record)
            write_culane_lines(os.path.join(output_dir, lines_file_name(record.img_name)), lanes, ori_w, ori_h,
                               self.crop(ori_h, ori_w))
            if kinds:
                atomic_write_text(os.path.join(output_dir, categories_file_name(record.img_name)),
                                  categories_text(self.prediction_categories(record, lanes)))

    read_predictions = staticmethod(read_predictions)
