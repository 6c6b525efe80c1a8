"""Raw network outputs on disk: what ``tools/predict.py --save-raw`` keeps and
``tools/redecode.py`` decodes again, written and read here only (docs/outputs.md, section 6).

A raw folder holds ``outputs.npy``, float32 (N, proposals, 4 + num_points): each predicted
image's and frame's output before the score threshold and NMS, and ``index.json``:
``{"format": RAW_FORMAT, "config", "img_w", "img_h", "num_points", "shape": [proposals, 4 +
num_points], "rows": [{"name", ("frame", "time",) "size": [h, w], "crop"}, ...]}``, one row per
output in order.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from srlane.fileio import atomic_write_npy, atomic_write_text
from srlane.inference.predict import ImagePrediction

RAW_FORMAT = "srlane-raw-outputs/1"
GEOMETRY = ("img_w", "img_h", "num_points")  # the config keys the outputs were made with
ROW_KEYS = {"name", "size", "crop"}  # every row has them; a video frame's also "frame" and "time"


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
        outputs = (np.stack(self.outputs) if self.outputs
                   else np.zeros((0, 0, 4 + int(cfg["num_points"])), np.float32))
        atomic_write_npy(os.path.join(folder, "outputs.npy"), outputs)
        index = {"format": RAW_FORMAT, "config": os.path.abspath(config_path),
                 **{key: int(cfg[key]) for key in GEOMETRY}, "shape": list(outputs.shape[1:]), "rows": self.rows}
        atomic_write_text(os.path.join(folder, "index.json"), json.dumps(index, indent=1) + "\n")


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


def check_geometry(outputs: np.ndarray, index: Mapping[str, Any], cfg: Mapping[str, Any], config: str) -> None:
    """RawError (one line) unless the outputs were made with the config's input size and points."""
    saved = {key: int(index[key]) for key in GEOMETRY}
    wanted = {key: int(cfg[key]) for key in GEOMETRY}
    width = 4 + wanted["num_points"]
    if saved != wanted or (len(outputs) and outputs.shape[2] != width):
        have = ", ".join(f"{k}={v}" for k, v in saved.items())
        want = ", ".join(f"{k}={v}" for k, v in wanted.items())
        raise RawError(f"the raw outputs were made with {have}, output rows {tuple(outputs.shape[1:])} "
                       f"(config {index.get('config')}); {config} has {want} (rows of {width}): "
                       "re-decode them with the config they were saved with")
