"""Raw network outputs on disk: what ``tools/predict.py --save-raw`` keeps and
``tools/redecode.py`` decodes again, written and read here only (docs/outputs.md, section 6).

A raw folder holds ``outputs.npy``, float32 (N, proposals, 4 + num_points + K): each predicted
image's and frame's output before the score threshold and NMS (K: the category head's logits,
``model.num_lane_categories``), and ``index.json``: ``{"format": RAW_FORMAT, "config", "img_w",
"img_h", "num_points", "num_lane_categories", "shape": [proposals, 4 + num_points + K], "rows":
[{"name", ("frame", "time",) "size": [h, w], "crop"}, ...]}``, one row per output in order (an
index without ``num_lane_categories`` is of a network without a head: K = 0).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from srlane.data.records import LaneRecord
from srlane.fileio import atomic_write_json, atomic_write_npy
from srlane.inference.predict import ImagePrediction
from srlane.lanes import Lane
from srlane.models.decode import LaneDecoder
from srlane.models.detector import num_lane_categories

RAW_FORMAT = "srlane-raw-outputs/1"
GEOMETRY = ("img_w", "img_h", "num_points")  # the config keys the outputs were made with
CATEGORIES_KEY = "num_lane_categories"  # and model.num_lane_categories (absent: 0)
ROW_KEYS = {"name", "size", "crop"}  # every row has them; a video frame's also "frame" and "time"
DECODE_CHUNK = 256  # rows per decoder call


class RawError(ValueError):
    """Raw outputs that are missing, malformed or of another geometry than the config's."""


def raw_row(meta: Mapping[str, Any]) -> dict:
    """The ``index.json`` row of an image's (or video frame's) ``meta``."""
    row: dict[str, Any] = {"name": meta["img_name"]}
    if "frame" in meta:
        row.update(frame=meta["frame"], time=meta["time"])
    row.update(size=[int(v) for v in meta["img_size"]], crop=int(meta["cut_height"]))
    return row


class RawWriter:
    """Collects the raw output of each prediction (``predict_batches(..., keep_raw=True)``) in the
    order given, and saves them as a raw folder."""

    def __init__(self) -> None:
        self.outputs: list[np.ndarray] = []
        self.rows: list[dict] = []

    @classmethod
    def of(cls, predictions: Sequence[ImagePrediction]) -> RawWriter:
        """A writer holding these predictions' raw outputs, in order."""
        writer = cls()
        for prediction in predictions:
            writer.add(prediction)
        return writer

    def add(self, prediction: ImagePrediction) -> None:
        if prediction.raw is None:
            raise ValueError("a prediction without its raw output: predict with keep_raw=True")
        self.outputs.append(np.asarray(prediction.raw, dtype=np.float32))
        self.rows.append(raw_row(prediction.meta))

    def extend(self, other: RawWriter) -> None:
        """``other``'s outputs after these."""
        self.outputs += other.outputs
        self.rows += other.rows

    def save(self, folder: str, cfg: Mapping[str, Any], config_path: str) -> None:
        """``folder/outputs.npy`` and ``folder/index.json``, each atomically; ``config_path`` is
        the config redecode reads by default."""
        geometry = raw_geometry(cfg)
        outputs = (np.stack(self.outputs) if self.outputs
                   else np.zeros((0, 0, row_width(geometry)), np.float32))
        atomic_write_npy(os.path.join(folder, "outputs.npy"), outputs)
        index = {"format": RAW_FORMAT, "config": os.path.abspath(config_path),
                 **geometry, "shape": list(outputs.shape[1:]), "rows": self.rows}
        atomic_write_json(os.path.join(folder, "index.json"), index)


def load_raw(folder: str) -> tuple[np.ndarray, dict]:
    """``outputs.npy`` and ``index.json`` of ``folder``; RawError (one line) when they are missing,
    malformed or disagree."""
    outputs_path, index_path = os.path.join(folder, "outputs.npy"), os.path.join(folder, "index.json")
    for path in (outputs_path, index_path):
        if not os.path.isfile(path):
            raise RawError(f"{path} not found; RAW_DIR is the <out>/raw folder of predict.py --save-raw")
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RawError(f"{index_path}: not json ({err})") from None
    if not isinstance(index, dict) or index.get("format") != RAW_FORMAT:
        raise RawError(f"{index_path}: not an index of {RAW_FORMAT} (predict.py --save-raw)")
    missing = [key for key in (*GEOMETRY, "shape", "rows") if key not in index]
    if missing:
        raise RawError(f"{index_path}: no {', '.join(missing)}")
    try:
        outputs = np.load(outputs_path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise RawError(f"{outputs_path}: not a .npy array ({err})") from None
    if outputs.ndim != 3 or outputs.dtype != np.float32:
        raise RawError(f"{outputs_path}: expected float32 (N, proposals, 4 + num_points), got {outputs.dtype} "
                       f"{tuple(outputs.shape)}")
    if len(outputs) != len(index["rows"]):
        raise RawError(f"{outputs_path} has {len(outputs)} rows, {index_path} describes {len(index['rows'])}")
    if len(outputs) and list(outputs.shape[1:]) != list(index["shape"]):
        raise RawError(f"{outputs_path} rows are {tuple(outputs.shape[1:])}, {index_path} says {tuple(index['shape'])}")
    for i, row in enumerate(index["rows"]):
        if not isinstance(row, dict) or not ROW_KEYS <= set(row):
            raise RawError(f"{index_path}: row {i} lacks name, size or crop")
    return outputs, index


def raw_geometry(cfg: Mapping[str, Any]) -> dict[str, int]:
    """What an index records of the config the outputs come from: ``GEOMETRY`` and the category
    head's classes ``num_lane_categories``."""
    categories = num_lane_categories(cfg.get("model") or {})
    return {**{key: int(cfg[key]) for key in GEOMETRY}, CATEGORIES_KEY: categories}


def row_width(geometry: Mapping[str, int]) -> int:
    """Values per proposal of outputs of this ``raw_geometry``: 4 + num_points + categories."""
    return 4 + geometry["num_points"] + geometry[CATEGORIES_KEY]


def check_geometry(outputs: np.ndarray, index: Mapping[str, Any], cfg: Mapping[str, Any], config: str) -> None:
    """RawError (one line) unless the outputs were made with the config's input size, points and
    category head."""
    saved = {key: int(index[key]) for key in GEOMETRY}
    saved[CATEGORIES_KEY] = int(index.get(CATEGORIES_KEY, 0))
    wanted = raw_geometry(cfg)
    width = row_width(wanted)
    if saved != wanted or (len(outputs) and outputs.shape[2] != width):
        have = ", ".join(f"{k}={v}" for k, v in saved.items())
        want = ", ".join(f"{k}={v}" for k, v in wanted.items())
        raise RawError(f"the raw outputs were made with {have}, output rows {tuple(outputs.shape[1:])} "
                       f"(config {index.get('config')}); {config} has {want} (rows of {width}): "
                       "re-decode them with the config they were saved with")


def decode_rows(outputs: np.ndarray, rows: Sequence[Mapping[str, Any]], decoder: LaneDecoder,
                progress: Callable[[int], object] | None = None) -> list[list[Lane]]:
    """The lanes of every row, each decoded with its own ``(crop, height)``; ``progress(n)``
    after each chunk of ``n`` rows (a tqdm bar's ``update``)."""
    lanes: list[list[Lane]] = []
    for start in range(0, len(outputs), DECODE_CHUNK):
        part = rows[start:start + DECODE_CHUNK]
        lanes += decoder(torch.from_numpy(outputs[start:start + DECODE_CHUNK]),
                         [(int(row["crop"]), int(row["size"][0])) for row in part])
        if progress is not None:
            progress(len(part))
    return lanes


def split_rows(rows: Sequence[Mapping[str, Any]], records: Sequence[LaneRecord], split: str) -> list[int]:
    """For each record of the split, the index of the image row of the same name; RawError
    naming the first image without one."""
    by_name: dict[str, int] = {}
    for i, row in enumerate(rows):
        if "frame" not in row:
            by_name.setdefault(str(row["name"]).lstrip("/"), i)
    missing = [record.img_name for record in records if record.img_name not in by_name]
    if missing:
        raise RawError(f"{len(missing)} of the {len(records)} images of split {split!r} have no raw output "
                       f"(first: {missing[0]}); run predict.py --save-raw on that split's list file with --root "
                       "at the data root")
    return [by_name[record.img_name] for record in records]
