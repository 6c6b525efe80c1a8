"""What a prediction command is given, as records and videos: image files, folders (searched
recursively for ``IMAGE_PATTERNS``), list files (``.txt``, the first field of each line a path
relative to a root, as CULane's lists) and video files. Each image is named as its output files
will be: its file name, its path relative to a folder input, or its list entry."""
from __future__ import annotations

import glob
import os
from collections.abc import Iterable

from srlane.data.records import DataFormatError, LaneRecord
from srlane.data.records import read_list as read_list_entries
from srlane.data.video import is_video

IMAGE_PATTERNS = ("*.jpg", "*.png")


class InputError(ValueError):
    """An input that names no image, or two inputs that would write the same output file."""


def collect_inputs(inputs: Iterable[str], root: str | None) -> tuple[list[LaneRecord], list[str]]:
    """One record (no lanes) per image of ``inputs``, named as its output files will be, and the
    absolute paths of the video inputs; InputError (one line) for an input that names nothing or
    two that would be written under one name."""
    records: list[LaneRecord] = []
    videos: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted({path for pattern in IMAGE_PATTERNS
                            for path in glob.glob(os.path.join(glob.escape(item), "**", pattern), recursive=True)})
            if not found:
                raise InputError(f"{item}: no {' or '.join(IMAGE_PATTERNS)} files in this folder or below")
            records += [LaneRecord(os.path.abspath(p), os.path.relpath(p, item).replace(os.sep, "/")) for p in found]
        elif item.endswith(".txt"):
            records += read_list(item, root)
        elif os.path.isfile(item):
            if is_video(item):
                videos.append(os.path.abspath(item))
            else:
                records.append(LaneRecord(os.path.abspath(item), os.path.basename(item)))
        else:
            raise InputError(f"{item}: no such image, video, folder or list file")
    for named in ([(r.img_name, r.img_path) for r in records], [(os.path.basename(v), v) for v in videos]):
        names: dict[str, str] = {}
        for name, path in named:
            key = os.path.splitext(name)[0]
            if key in names:
                raise InputError(f"{names[key]} and {path} would both be written as {key}; "
                                 "give their folders, not the files, or predict them into different --out folders")
            names[key] = path
    return records, videos


def read_list(path: str, root: str | None) -> list[LaneRecord]:
    """The images of a list file: the first field of each non-blank line, relative to ``root``."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: list file not found")
    if root is None:
        raise InputError(f"{path}: list paths are relative to a root; give --root (the config has no dataset.data_root)")
    records = [LaneRecord(entry.path, entry.name) for entry in read_list_entries(path, root)]
    if not records:
        raise DataFormatError(path, None, "the list names no image")
    return records
