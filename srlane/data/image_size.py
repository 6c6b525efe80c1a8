"""The size of an image file from its header (PNG, JPEG), without decoding the pixels."""
from __future__ import annotations

import os
import struct
from typing import BinaryIO

import cv2

# JPEG start-of-frame markers (baseline, progressive, lossless, ...): their segment holds the size
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when it cannot be found."""
    f.seek(2)
    while True:
        byte = f.read(1)
        if byte != b"\xff":
            return None
        marker = f.read(1)
        while marker == b"\xff":
            marker = f.read(1)
        if not marker or marker[0] in (0xD9, 0xDA):  # end of file / of image, or scan data before a frame
            return None
        if marker[0] == 0x01 or 0xD0 <= marker[0] <= 0xD8:  # markers without a segment
            continue
        raw = f.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0]
        if marker[0] in _SOF:
            raw = f.read(5)
            if len(raw) < 5:
                return None
            _, height, width = struct.unpack(">BHH", raw)
            return (width, height) if width and height else None
        f.seek(length - 2, os.SEEK_CUR)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image as stored (no EXIF rotation, like ``imagesize.get``).

    PNG and JPEG sizes come from the header alone; other files are decoded with ``cv2.imread``.
    ValueError when the file is not a readable image.
    """
    with open(path, "rb") as f:
        head = f.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            width, height = struct.unpack(">II", head[16:24])
            return width, height
        if head[:2] == b"\xff\xd8" and (size := _jpeg_size(f)) is not None:
            return size
    image = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: cannot read the image size (not a readable image)")
    return image.shape[1], image.shape[0]
