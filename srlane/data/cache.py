"""Annotation cache: parsed LaneRecords in one ``.npz`` (no pickle), keyed on its sources.

The key hashes the reader's name, the absolute data root, the split, every source file's
absolute path, size and modification time, and any extra options (e.g. the duplicate filter).
Changing any of them gives a new file; a stale or unreadable cache is never used. Edits to
per-image ``.lines.txt`` files do not change the key: delete the cache folder after such edits.
(A reader may name per-image files as sources: CULane's lane-category sidecars are, so adding,
changing or removing one gives a new key.)

Records are cached as the readers made them: checked (``srlane.data.label_checks``), an image
whose label cannot be used kept with its ``bad_label``. A cache whose lanes do not pass the same
checks (one written before them, or altered) is not used: the split is read again, and the
reader names the file and line of a bad label.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, Sequence

import numpy as np

from srlane.data.label_checks import records_pass
from srlane.data.records import LaneRecord
from srlane.fileio import atomic_path

FORMAT_VERSION = 4  # 3: records checked by srlane.data.label_checks, bad labels kept; 4: lane categories
PROJECT_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
DEFAULT_CACHE_DIR = os.path.join(PROJECT_ROOT, "datasets", ".cache")


def cache_key(reader: str, data_root: str, split: str, sources: Sequence[str], extra: dict | None = None) -> str:
    """Hex digest identifying one parse of ``sources`` (paths, sizes, mtimes) under ``data_root``."""
    stats = []
    for path in sources:
        st = os.stat(path)
        stats.append([os.path.abspath(path), st.st_size, st.st_mtime_ns])
    payload = {
        "version": FORMAT_VERSION,
        "reader": reader,
        "data_root": os.path.abspath(data_root),
        "split": split,
        "sources": stats,
        "extra": extra or {},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def save_records(path: str, records: Sequence[LaneRecord], key: str) -> None:
    """Write records to ``path`` atomically (temp file + os.replace)."""
    lanes = [lane for record in records for lane in record.lanes]
    meta = {
        "key": key,
        "records": [
            {
                "img_path": r.img_path,
                "img_name": r.img_name,
                "num_lanes": len(r.lanes),
                "category": r.category,
                "mask_path": r.mask_path,
                "lane_exist": list(r.lane_exist) if r.lane_exist is not None else None,
                "h_samples": list(r.h_samples) if r.h_samples is not None else None,
                "img_size": list(r.img_size) if r.img_size is not None else None,
                "bad_label": list(r.bad_label) if r.bad_label is not None else None,
                "lane_categories": list(r.lane_categories) if r.lane_categories is not None else None,
            }
            for r in records
        ],
    }
    points = np.concatenate(lanes).astype(np.float32) if lanes else np.zeros((0, 2), np.float32)
    lengths = np.array([len(lane) for lane in lanes], dtype=np.int64)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, points=points, lengths=lengths, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


def load_records(path: str, key: str) -> list[LaneRecord] | None:
    """Records from ``path`` if it exists, is readable and was written for ``key``; else None."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            points, lengths = data["points"], data["lengths"]
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("key") != key:
        return None
    lanes = np.split(points, np.cumsum(lengths)[:-1]) if len(lengths) else []
    records, pos = [], 0
    for item in meta["records"]:
        n = item["num_lanes"]
        records.append(LaneRecord(
            img_path=item["img_path"],
            img_name=item["img_name"],
            lanes=[np.array(lane, dtype=np.float32) for lane in lanes[pos:pos + n]],
            category=item["category"],
            mask_path=item["mask_path"],
            lane_exist=tuple(item["lane_exist"]) if item["lane_exist"] is not None else None,
            h_samples=tuple(item["h_samples"]) if item["h_samples"] is not None else None,
            img_size=tuple(item["img_size"]) if item["img_size"] is not None else None,
            bad_label=tuple(item["bad_label"]) if item.get("bad_label") is not None else None,
            lane_categories=tuple(item["lane_categories"]) if item["lane_categories"] is not None else None,
        ))
        pos += n
    return records


def cached_records(reader: str, data_root: str, split: str, sources: Sequence[str],
                   build: Callable[[], list[LaneRecord]], cache_dir: str | None = None,
                   extra: dict | None = None, image_size: tuple[int, int] | None = None) -> list[LaneRecord]:
    """Load the records for this key from ``cache_dir`` or ``build()`` and store them there.

    ``cache_dir`` None means ``datasets/.cache`` under the project root. Cached records whose
    lanes fail the label checks (``records_pass``, on each record's size or ``image_size``, which
    is part of the key) are built again.
    """
    extra = {**(extra or {}), "image_size": list(image_size) if image_size is not None else None}
    key = cache_key(reader, data_root, split, sources, extra)
    safe_split = "".join(c if c.isalnum() else "_" for c in split)
    path = os.path.join(cache_dir or DEFAULT_CACHE_DIR, f"{reader}_{safe_split}_{key[:20]}.npz")
    records = load_records(path, key)
    if records is None or not records_pass(records, image_size):
        records = build()
        save_records(path, records, key)
    return records
