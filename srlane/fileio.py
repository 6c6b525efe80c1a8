"""Atomic file writes: a temp file in the target's folder, moved into place with ``os.replace``.

Readers of the target see either its old content or the complete new one, never a partial write;
a writer that fails (any exception, Ctrl-C included) leaves the old file untouched and no temp
file behind.
"""
from __future__ import annotations

import errno
import io
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

_MAX_NAME_IN_TEMP = 100  # keeps the temp name within the usual 255-byte file-name limit
FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left on the device, disk quota reached


class DiskFullError(OSError):
    """A write that found the disk full or the quota reached: one line naming the file and the
    space left; the file's previous version is untouched."""

    def __str__(self) -> str:
        return str(self.strerror)


def _free_bytes(folder: str) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return -1


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temp path next to ``path`` (its folder is created) for the block to write.

    When the block exits normally the temp file replaces ``path``; on any exception it is removed
    and the exception propagates (a full disk or quota as one ``DiskFullError`` line naming
    ``path`` and the bytes free). The temp file is not created beforehand, so the writer creates
    it with the usual permissions. ``suffix`` ends the temp name, for writers that pick the format
    from it (``cv2.imwrite``: pass the target's extension).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)[:_MAX_NAME_IN_TEMP]
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno in FULL and not isinstance(err, DiskFullError):
            raise disk_full(err.errno, path, "its previous version, if any, is unchanged") from None
        raise


def disk_full(code: int, path: str | os.PathLike, outcome: str) -> DiskFullError:
    """The one line for a full disk or quota (``code``: ENOSPC or EDQUOT) met writing ``path``:
    the file, the reason, the bytes free in its folder and ``outcome`` (what became of the file)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    free = _free_bytes(folder)
    return DiskFullError(code, f"cannot write {os.fspath(path)}: {os.strerror(code).lower()} "
                               f"({free if free >= 0 else 'unknown'} bytes free in {folder}); {outcome}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike, value: Any, **dumps: Any) -> None:
    """``value`` as indented JSON (``json.dumps`` options in ``dumps``) at ``path``, atomically."""
    atomic_write_text(path, json.dumps(value, **{"indent": 1, **dumps}) + "\n")


def atomic_write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as a ``.npy`` file atomically. Serialised in memory first: NumPy's own file
    writer reports a full disk without its errno, the plain write gives ``DiskFullError``."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getbuffer())


def line_fields(path: str | os.PathLike) -> Iterator[tuple[int, list[str]]]:
    """``(line number, whitespace-split fields)`` of each non-blank line of a text file (UTF-8):
    how list files and ``.lines.txt`` files are read."""
    with open(path, encoding="utf-8") as f:
        for line_no, text in enumerate(f, 1):
            fields = text.split()
            if fields:
                yield line_no, fields
