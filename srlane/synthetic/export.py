"""Writing a synthetic set to disk in a benchmark's layout, through the benchmark's own writers.

* ``culane``: ``driver_synth_<split>/clip_*.MP4/*.jpg`` with ``.lines.txt`` annotations, their
  ``.lines.categories.txt`` sidecars (each lane's OpenLane category) and the ``list/`` files
  (test scenes also as the validation split and in the nine category lists).
* ``tusimple``: ``clips/.../20.jpg``; train scenes spread over the three ``label_data_*.json``
  files (5:1:1), test scenes in ``test_label.json``.
* ``curvelanes``: ``train/images/*.jpg`` with ``train/labels/*.lines.json`` and
  ``train/train.txt``; the test scenes as the ``valid`` split.
* ``openlane``: ``images/<split>/segment-synth-*/<frame>.jpg`` (1920 x 1280) with per-frame labels
  ``lane3d_1000/<split>/.../<frame>.json`` (``openlane.write_frame_label``: each lane's ``uv``,
  ``category``, ``attribute``) and ``lists/<split>.txt``; train scenes as ``training``, test
  scenes as ``validation``. Its scenes draw every kind of line, and their road edges as curbs.

Same arguments, same bytes, with any number of worker processes. The ``.complete`` marker (the
parameters as JSON) is removed first and written last, so an interrupted run is detected.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from srlane.benchmarks import culane, curvelanes, openlane, tusimple
from srlane.fileio import atomic_write_bytes, atomic_write_text
from srlane.synthetic.render import render
from srlane.synthetic.scene import SPLITS, SceneLabel, layouts

GENERATOR_VERSION = 2  # 2: lane categories (culane: .lines.categories.txt sidecars); the images are unchanged
MARKER = ".complete"
JPEG_QUALITY = 90
TUSIMPLE_H_SAMPLES = tuple(range(160, 720, 10))
TUSIMPLE_TRAIN_FILES = ("label_data_0313.json",) * 5 + ("label_data_0531.json", "label_data_0601.json")
CURVELANES_FOLDERS = {"train": "train", "test": "valid"}  # the test scenes are CurveLanes' labelled "valid" split
OPENLANE_SPLITS = dict(zip(SPLITS, openlane.SPLITS))  # train -> training, test -> validation


def culane_name(split: str, index: int) -> str:
    """Image path (relative to the root) of a CULane-layout scene."""
    return f"driver_synth_{split}/clip_{index // 100:04d}.MP4/{index % 100 * 30:05d}.jpg"


def tusimple_name(split: str, index: int) -> tuple[str, str]:
    """(label file, image path relative to the root) of a TuSimple-layout scene."""
    if split == "test":
        return "test_label.json", f"clips/0530/{index}/20.jpg"
    label_file = TUSIMPLE_TRAIN_FILES[index % len(TUSIMPLE_TRAIN_FILES)]
    clip_dir = {"label_data_0313.json": "0313-1", "label_data_0531.json": "0531", "label_data_0601.json": "0601"}
    return label_file, f"clips/{clip_dir[label_file]}/{index}/20.jpg"


def curvelanes_name(split: str, index: int) -> str:
    """Image path (relative to the root) of a CurveLanes-layout scene."""
    return f"{CURVELANES_FOLDERS[split]}/images/{index:06d}.jpg"


def openlane_name(split: str, index: int) -> str:
    """Frame name (``<split>/<segment>/<frame>``, ``srlane.benchmarks.openlane``) of an
    OpenLane-layout scene: 100 frames per segment."""
    return f"{OPENLANE_SPLITS[split]}/segment-synth-{index // 100:04d}/{index % 100 * 100000:010d}"


# ----------------------------------------------------------------------------- one scene per format

def _culane_scene(root: Path, split: str, index: int, jpeg: bytes, label: SceneLabel) -> dict:
    name = culane_name(split, index)
    atomic_write_bytes(root / name, jpeg)
    atomic_write_text(root / culane.lines_file_name(name), culane.annotation_text(label.lanes))
    atomic_write_text(root / culane.categories_file_name(name), culane.categories_text(label.categories))
    return {"name": name, "flags": [int(slot in label.slots) for slot in range(4)]}


def _tusimple_scene(root: Path, split: str, index: int, jpeg: bytes, label: SceneLabel) -> dict:
    label_file, name = tusimple_name(split, index)
    atomic_write_bytes(root / name, jpeg)
    rows = tusimple.label_rows(label.lanes, TUSIMPLE_H_SAMPLES, cast=int)
    return {"label_file": label_file, "line": tusimple.label_line(name, rows, TUSIMPLE_H_SAMPLES)}


def _curvelanes_scene(root: Path, split: str, index: int, jpeg: bytes, label: SceneLabel) -> dict:
    name = curvelanes_name(split, index)
    atomic_write_bytes(root / name, jpeg)
    atomic_write_text(curvelanes.label_path(root, name), curvelanes.label_text(label.lanes))
    return {"name": name}


def _openlane_scene(root: Path, split: str, index: int, jpeg: bytes, label: SceneLabel) -> dict:
    name = openlane_name(split, index)
    atomic_write_bytes(Path(openlane.image_path(root, name)), jpeg)
    split_name, frame = name.split("/", 1)
    attributes = [slot + 1 if 0 <= slot <= 3 else 0 for slot in label.slots]  # 1 left-left ... 4 right-right
    openlane.write_frame_label(root, split_name, frame, label.lanes, label.categories, attributes=attributes)
    return {"name": name}


# ----------------------------------------------------------------------------- lists per format

def _culane_lists(root: Path, records: list[dict]) -> None:
    train, test = ([(r["name"], r["flags"], r["category"]) for r in records if r["split"] == split] for split in SPLITS)
    culane.write_lists(str(root), train, test)


def _tusimple_lists(root: Path, records: list[dict]) -> None:
    files: dict[str, list[str]] = {name: [] for name in [*TUSIMPLE_TRAIN_FILES, "test_label.json"]}
    for r in records:
        files[r["label_file"]].append(r["line"])
    tusimple.write_label_files(str(root), files)


def _curvelanes_lists(root: Path, records: list[dict]) -> None:
    for split, folder in CURVELANES_FOLDERS.items():
        curvelanes.write_list(str(root), folder, [r["name"] for r in records if r["split"] == split])


def _openlane_lists(root: Path, records: list[dict]) -> None:
    for split, split_name in OPENLANE_SPLITS.items():
        openlane.write_list(root, split_name, [r["name"] for r in records if r["split"] == split])


SceneWriter = Callable[[Path, str, int, bytes, SceneLabel], dict]
ListWriter = Callable[[Path, list[dict]], None]
_WRITERS: dict[str, tuple[SceneWriter, ListWriter]] = {
    "culane": (_culane_scene, _culane_lists),
    "tusimple": (_tusimple_scene, _tusimple_lists),
    "curvelanes": (_curvelanes_scene, _curvelanes_lists),
    "openlane": (_openlane_scene, _openlane_lists),
}


def _write_scene(root: str, fmt: str, seed: int, task: tuple[str, int]) -> dict:
    """Render one scene, write its image and annotation; returns what the lists need."""
    split, index = task
    image, label = render(fmt, seed, split, index)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {split} scene {index}")
    write, _ = _WRITERS[fmt]
    return {"split": split, "category": label.category, "lanes": len(label.lanes), "lane_categories": label.categories,
            **write(Path(root), split, index, jpeg.tobytes(), label)}


def _parameters(fmt: str, n_train: int, n_test: int, seed: int) -> dict:
    return {"format": fmt, "train": n_train, "test": n_test, "seed": seed, "version": GENERATOR_VERSION}


def is_complete(out_dir: str | os.PathLike, fmt: str, n_train: int, n_test: int, seed: int) -> bool:
    """True when ``out_dir`` holds a finished set generated with exactly these parameters (and this
    generator version); a trainer regenerates otherwise."""
    marker = Path(out_dir, MARKER)
    try:
        return json.loads(marker.read_text()) == _parameters(fmt, n_train, n_test, seed)
    except (OSError, ValueError):
        return False


def generate(out_dir: str | os.PathLike, fmt: str = "culane", n_train: int = 1000, n_test: int = 300,
             seed: int = 0, progress: bool = True, workers: int = 1) -> dict:
    """Write a synthetic set in the ``culane``, ``tusimple``, ``curvelanes`` or ``openlane``
    layout under ``out_dir`` (``workers`` spawned processes render the scenes; the bytes do not
    depend on it).

    Returns a summary: root, format, seed, image counts, the number of lanes, per-split
    (``train``, ``test``) scene category counts and per-split lane counts of each lane category
    (OpenLane ids).
    """
    layouts(fmt)
    for key, value, low in (("n_train", n_train, 0), ("n_test", n_test, 0), ("seed", seed, 0), ("workers", workers, 1)):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
    if n_train + n_test == 0:
        raise ValueError("nothing to generate: n_train and n_test are both 0")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).unlink(missing_ok=True)
    tasks = [(split, i) for split, n in zip(SPLITS, (n_train, n_test)) for i in range(n)]
    job = partial(_write_scene, str(root), fmt, int(seed))
    records = []
    with tqdm(total=len(tasks), desc=f"synthetic {fmt}", unit="img", disable=not progress) as bar:
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for record in pool.imap(job, tasks, chunksize=4):
                    records.append(record)
                    bar.update()
        else:
            for task in tasks:
                records.append(job(task))
                bar.update()
    _, write_lists = _WRITERS[fmt]
    write_lists(root, records)
    parameters = _parameters(fmt, int(n_train), int(n_test), int(seed))
    atomic_write_text(root / MARKER, json.dumps(parameters))
    return {
        "root": str(root), "format": fmt, "seed": int(seed), "train": int(n_train), "test": int(n_test),
        "lanes": sum(r["lanes"] for r in records),
        "categories": {split: dict(Counter(r["category"] for r in records if r["split"] == split)) for split in SPLITS},
        "lane_categories": {split: dict(sorted(Counter(c for r in records if r["split"] == split
                                                       for c in r["lane_categories"]).items())) for split in SPLITS},
    }


def preparation(dataset_cfg: Mapping[str, Any], workers: int = 1) -> Callable[[Callable[[str], None]], None] | None:
    """When a dataset config asks for the synthetic set (``generate=dict(train, test, seed)``): a
    step (given a log function) that writes it in ``data_root``, in the layout of ``type``,
    unless a complete one with these parameters is there; else None."""
    spec = dataset_cfg.get("generate")
    if not spec:
        return None
    root, fmt, size = dataset_cfg["data_root"], dataset_cfg["type"], (int(spec["train"]), int(spec["test"]), int(spec["seed"]))

    def prepare(log: Callable[[str], None]) -> None:
        if not is_complete(root, fmt, *size):
            log(f"generating the synthetic {fmt} set ({size[0]} train, {size[1]} test) in {root}")
            generate(root, fmt, *size, workers=max(1, workers))

    return prepare
