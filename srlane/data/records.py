"""LaneRecord (one annotated image) and the helpers the readers share."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from srlane.fileio import line_fields


class DataFormatError(ValueError):
    """A dataset file that does not follow its format; the message names the file and line."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.message = path, line, message


@dataclass
class LaneRecord:
    """One image and its lanes.

    Attributes:
        img_path: absolute image path.
        img_name: the image path as the list names it, relative to the data root, no leading '/'.
        lanes: float32 ``(N, 2)`` arrays of (x, y) in original-image pixels (points with a
            negative coordinate dropped, lanes with fewer than 2 points dropped).
        category: CULane test category (``normal`` ... ``night``) or None.
        mask_path: absolute path of the segmentation mask named in the list, or None.
        lane_exist: the list's 0/1 lane-existence flags, or None.
        h_samples: TuSimple rows at which the lanes are annotated, or None.
        img_size: ``(height, width)`` read from the image when the benchmark's sizes vary, or None.
        bad_label: ``(file, line or None, message)`` when the image's label cannot be used
            (``srlane.data.label_checks``); the record then has no lanes.
        lane_categories: each lane's kind (an OpenLane id, ``srlane.lane_kinds``; 0 unknown), as
            long as ``lanes``, or None when the labels say nothing of kinds.
    """

    img_path: str
    img_name: str
    lanes: list[np.ndarray] = field(default_factory=list)
    category: str | None = None
    mask_path: str | None = None
    lane_exist: tuple[int, ...] | None = None
    h_samples: tuple[int, ...] | None = None
    img_size: tuple[int, int] | None = None
    bad_label: tuple[str, int | None, str] | None = None
    lane_categories: tuple[int, ...] | None = None


def relative_name(path_text: str) -> str:
    """A list entry as a name relative to the data root (leading '/' removed)."""
    return path_text.lstrip("/")


def read_text(path: str | os.PathLike) -> str:
    """A text file's content (UTF-8, newlines as ``\\n``); DataFormatError naming the file when it
    is not UTF-8 text."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as err:
        raise DataFormatError(os.fspath(path), None, f"not UTF-8 text (byte {err.start})") from None


def require_image(img_path: str, source: str, line: int) -> None:
    """Raise DataFormatError naming the list file and line when the image does not exist."""
    if not os.path.isfile(img_path):
        raise DataFormatError(source, line, f"image not found: {img_path}")


class ListEntry(NamedTuple):
    """One non-blank line of a list file."""

    line: int  # 1-based line number
    name: str  # the first field, relative to the data root (``relative_name``)
    fields: list[str]  # the fields after the name
    path: str | None  # the image's absolute path when the list was read with a root, else None


def read_list(list_path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[ListEntry]:
    """The entries of a list file (CULane's, CurveLanes', a list given to predict): one image per
    non-blank line, its path relative to a data root first, then any other fields.

    With ``root`` each entry carries the image's absolute path, and the image must exist
    (DataFormatError naming the list file and line).
    """
    root = os.path.abspath(root) if root is not None else None
    try:
        lines = list(line_fields(list_path))
    except UnicodeDecodeError as err:
        raise DataFormatError(os.fspath(list_path), None, f"not UTF-8 text (byte {err.start})") from None
    entries = []
    for line_no, fields in lines:
        name = relative_name(fields[0])
        path = None
        if root is not None:
            path = os.path.join(root, name)
            require_image(path, os.fspath(list_path), line_no)
        entries.append(ListEntry(line_no, name, fields[1:], path))
    return entries
