"""OpenLane: its layout, its per-frame JSON labels and result files (written and read back), and
its official 2D F1 (docs/openlane.md).

::

    <root>/images/<split>/<segment>/<frame>.jpg
    <root>/<lane_set>/<split>/<segment>/<frame>.json      lane_set: lane3d_1000 (or lane3d_300)
    <root>/lists/<split>.txt                               (optional) lines <split>/<segment>/<frame>.jpg

Splits are ``training`` and ``validation``. A frame's *name* is ``<split>/<segment>/<frame>``
(no extension): the label's ``file_path`` without ``.jpg``, the official tool's list line
without it, and the path of its result file under a results folder.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from srlane.fileio import atomic_write_json, atomic_write_text

SPLITS = ("training", "validation")
LANE_SETS = ("lane3d_1000", "lane3d_300")
IMAGE_SIZE = (1280, 1920)  # (height, width) of every OpenLane image: the official tool's canvas

# placeholders write_frame_label fills where a 2D generator knows nothing: a Waymo-like front camera
PLACEHOLDER_INTRINSIC = [[2000.0, 0.0, 960.0], [0.0, 2000.0, 640.0], [0.0, 0.0, 1.0]]
PLACEHOLDER_EXTRINSIC = [[1.0, 0.0, 0.0, 1.5], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.1], [0.0, 0.0, 0.0, 1.0]]


def image_name(name: str) -> str:
    """``training/seg/frame -> images/training/seg/frame.jpg``: the image relative to the root."""
    return f"images/{name}.jpg"


def image_path(root: str | os.PathLike, name: str) -> str:
    """The image of frame ``name`` under the dataset root."""
    return os.path.join(root, image_name(name))


def label_path(root: str | os.PathLike, name: str, lane_set: str = "lane3d_1000") -> str:
    """``<root>/<lane_set>/<name>.json``: the label of frame ``name``."""
    return os.path.join(root, lane_set, name + ".json")


def result_path(results_dir: str | os.PathLike, name: str) -> str:
    """``<results_dir>/<name>.json``: the result file of frame ``name`` (the official layout)."""
    return os.path.join(results_dir, name + ".json")


def list_path(root: str | os.PathLike, split: str) -> str:
    """``<root>/lists/<split>.txt``: a split's list in the official tool's ``-l`` format."""
    return os.path.join(root, "lists", f"{split}.txt")


def split_names(root: str | os.PathLike, split: str, lane_set: str = "lane3d_1000") -> list[str]:
    """The names of a split's frames, sorted: every ``.json`` under ``<root>/<lane_set>/<split>``
    (FileNotFoundError naming that folder when it does not exist)."""
    folder = os.path.join(root, lane_set, split)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"OpenLane split {split!r}: no label folder {folder}")
    names = []
    for here, _, files in os.walk(folder):
        rel = os.path.relpath(here, os.path.join(root, lane_set)).replace(os.sep, "/")
        names.extend(f"{rel}/{f[:-5]}" for f in files if f.endswith(".json"))
    return sorted(names)


def write_list(root: str | os.PathLike, split: str, names: Sequence[str]) -> None:
    """``list_path(root, split)``: one ``<name>.jpg`` per line, as the official tool's ``-l`` reads."""
    atomic_write_text(list_path(root, split), "".join(f"{name}.jpg\n" for name in names))


def lane_entry(points: np.ndarray, category: int) -> dict:
    """One ``lane_lines`` entry of a result file: ``{"category", "uv": [[u...], [v...]]}``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return {"category": int(category), "uv": [pts[:, 0].tolist(), pts[:, 1].tolist()]}


def write_frame_label(root: str | os.PathLike, split: str, name: str, lanes: Sequence[np.ndarray],
                      categories: Sequence[int], lane_set: str = "lane3d_1000",
                      attributes: Sequence[int] | None = None, track_ids: Sequence[int] | None = None) -> str:
    """Write the label of frame ``<split>/<name>`` (``name``: ``<segment>/<frame>``) and return its path.

    ``lanes``: ``(N, 2)`` pixel arrays, ``categories``: their OpenLane ids. What a 2D scene does
    not know is filled with placeholders, documented as such (docs/openlane.md): ``xyz`` zeros,
    ``visibility`` ones, ``attribute`` 0 (not given) and ``track_id`` the lane's index unless
    given, ``intrinsic`` / ``extrinsic`` the fixed camera PLACEHOLDER_INTRINSIC / _EXTRINSIC.
    """
    if len(categories) != len(lanes):
        raise ValueError(f"{len(categories)} categories for {len(lanes)} lanes")
    frame = f"{split}/{name}"
    entries = []
    for i, (points, category) in enumerate(zip(lanes, categories)):
        entry = lane_entry(points, category)
        n = len(entry["uv"][0])
        entry.update(xyz=[[0.0] * n, [0.0] * n, [0.0] * n], visibility=[1.0] * n,
                     attribute=int(attributes[i]) if attributes is not None else 0,
                     track_id=int(track_ids[i]) if track_ids is not None else i)
        entries.append(entry)
    path = label_path(root, frame, lane_set)
    atomic_write_json(path, {"file_path": frame + ".jpg", "intrinsic": PLACEHOLDER_INTRINSIC,
                             "extrinsic": PLACEHOLDER_EXTRINSIC, "lane_lines": entries}, indent=None)
    return path
