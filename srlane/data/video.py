"""Video files for prediction: frames in (OpenCV's VideoCapture, any container and codec it
reads), network inputs prepared as ``LaneDataset`` prepares images, lanes per frame out as json
lines.

A frame that cannot be decoded before the container's frame count is reached ends the video:
``VideoFrames.failed_at`` names it, the frames before it have been delivered.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from srlane.data.crop import Crop
from srlane.data.dataset import crop_and_resize, to_tensor
from srlane.lanes import Lane, has_kinds, sampled_lanes

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv", ".flv", ".ts")


def is_video(path: str) -> bool:
    """Whether ``path`` names a video file by its extension (case-insensitive)."""
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def prepare_image(img: np.ndarray, img_w: int, img_h: int, crop: Crop) -> tuple[torch.Tensor, int]:
    """A BGR uint8 image as the network's input, exactly as ``LaneDataset`` makes a validation
    item: the crop's rows dropped, resized to ``img_w x img_h`` (INTER_CUBIC), RGB, divided by
    255. Returns ``(float32 (3, img_h, img_w), rows dropped)``; ValueError when the crop does not
    fit the image."""
    rgb, cut = crop_and_resize(img, img_w, img_h, crop)
    return to_tensor(rgb), cut


@dataclass
class Frame:
    index: int
    time: float | None  # seconds from the start of the video (None when neither the stream nor fps says)
    image: np.ndarray  # BGR uint8


class VideoFrames:
    """The frames of a video file, in order. OSError when the file cannot be opened.

    Attributes:
        fps: the stream's frame rate (0.0 when it does not say).
        frame_count: frames the container announces (0 when unknown).
        failed_at: after iteration, the index of a frame that could not be decoded before
            ``frame_count`` was reached, else None.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        if not os.path.isfile(path):
            raise OSError(f"cannot open video {path}")
        self.capture = cv2.VideoCapture(path)
        if not self.capture.isOpened():
            self.capture.release()
            raise OSError(f"cannot open video {path}")
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(self.fps) or self.fps < 0:
            self.fps = 0.0
        count = self.capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and math.isfinite(count) and count > 0 else 0
        self.failed_at: int | None = None

    def _time(self, index: int) -> float | None:
        msec = self.capture.get(cv2.CAP_PROP_POS_MSEC)
        if math.isfinite(msec) and (msec > 0 or index == 0):
            return float(msec) / 1000.0
        return index / self.fps if self.fps > 0 else None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        try:
            while True:
                ok, image = self.capture.read()
                if not ok or image is None:
                    if index < self.frame_count:
                        self.failed_at = index
                    return
                yield Frame(index, self._time(index), image)
                index += 1
        finally:
            self.capture.release()

    def close(self) -> None:
        self.capture.release()


def lanes_json_line(index: int, time: float | None, lanes: Sequence[Lane], width: int, height: int,
                    crop: int) -> str:
    """One line of ``<video>.lanes.jsonl``: ``{"frame", "time" (s), "lanes": [[[x, y], ...], ...]}``,
    pixels of the frame with 3 decimals; when the lanes have kinds (a category head) also
    ``"categories"`` (OpenLane ids) and ``"category_scores"`` (their probabilities, 4 decimals),
    one per lane of ``"lanes"``."""
    sampled = sampled_lanes(lanes, width, height, crop)
    line = {"frame": int(index), "time": None if time is None else round(float(time), 6),
            "lanes": [[[round(float(x), 3), round(float(y), 3)] for x, y in pts] for _, pts in sampled]}
    if has_kinds(lanes):
        line["categories"] = [lane.category for lane, _ in sampled]
        line["category_scores"] = [None if lane.category_score is None else round(float(lane.category_score), 4)
                                   for lane, _ in sampled]
    return json.dumps(line)
