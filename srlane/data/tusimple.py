"""TuSimple in its official layout: json-lines label files next to ``clips/``.

Each line: ``{"lanes": [[x or -2, ...], ...], "h_samples": [y, ...], "raw_file": "clips/..."}``.
"""
from __future__ import annotations

import json
import os

import numpy as np

from srlane.data.cache import cached_records
from srlane.data.records import DataFormatError, LaneRecord, clean_lane, relative_name, require_image

SPLIT_FILES = {
    "train": ("label_data_0313.json", "label_data_0601.json"),
    "val": ("label_data_0531.json",),
    "trainval": ("label_data_0313.json", "label_data_0601.json", "label_data_0531.json"),
    "test": ("test_label.json",),
}


def split_files(data_root: str, split: str) -> list[str]:
    """The label files of a split (all must exist)."""
    if split not in SPLIT_FILES:
        raise ValueError(f"unknown TuSimple split {split!r}: expected one of {sorted(SPLIT_FILES)}")
    paths = [os.path.join(data_root, name) for name in SPLIT_FILES[split]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"TuSimple split {split!r}: missing label files {missing}")
    return paths


def parse_label_line(text: str, path: str, line_no: int) -> tuple[str, list[list[float]], list[int]]:
    """One json line -> (raw_file, lanes as xs per h_sample, h_samples), checked."""
    try:
        item = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, line_no, f"invalid json: {err}") from None
    for key in ("raw_file", "lanes", "h_samples"):
        if key not in item:
            raise DataFormatError(path, line_no, f"missing key {key!r}")
    h_samples, lanes = item["h_samples"], item["lanes"]
    numbers = [h_samples, *lanes]
    if not all(isinstance(seq, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seq)
               for seq in numbers):
        raise DataFormatError(path, line_no, "lanes and h_samples must be lists of numbers")
    for i, lane in enumerate(lanes):
        if len(lane) != len(h_samples):
            raise DataFormatError(path, line_no, f"lane {i} has {len(lane)} values for {len(h_samples)} h_samples")
    return item["raw_file"], lanes, h_samples


def parse_label_file(data_root: str, path: str) -> list[LaneRecord]:
    """Records of one label file; -2 (any negative x) marks a row where the lane is absent."""
    data_root = os.path.abspath(data_root)
    records = []
    with open(path) as f:
        for line_no, text in enumerate(f, 1):
            if not text.strip():
                continue
            raw_file, lanes, h_samples = parse_label_line(text, path, line_no)
            img_name = relative_name(raw_file)
            img_path = os.path.join(data_root, img_name)
            require_image(img_path, path, line_no)
            ys = np.asarray(h_samples, dtype=np.float32)
            cleaned = [clean_lane(np.stack([np.asarray(xs, dtype=np.float32), ys], axis=1)) for xs in lanes]
            records.append(LaneRecord(
                img_path=img_path,
                img_name=img_name,
                lanes=[lane for lane in cleaned if lane is not None],
                h_samples=tuple(int(y) for y in h_samples),
            ))
    return records


def load_tusimple(data_root: str, split: str, cache_dir: str | None = None) -> list[LaneRecord]:
    """LaneRecords of a TuSimple split: train (0313+0601), val (0531), trainval, test."""
    paths = split_files(data_root, split)

    def build() -> list[LaneRecord]:
        return [record for path in paths for record in parse_label_file(data_root, path)]

    return cached_records("tusimple", data_root, split, paths, build, cache_dir)
