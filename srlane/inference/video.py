"""Videos through the prediction loop: frames in (``srlane.data.video.VideoFrames``), prepared as
validation items and predicted in batches by ``predict_batches``; out, per video,
``<stem>.lanes.jsonl`` (one json line per frame) and on request the annotated video.

Every output file is written through a temp file and appears complete when its video is done;
a video whose frames do not fit the config's crop leaves none (``FrameError``); a video of
which no frame could be decoded has none to write.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType

import cv2
import torch
from tqdm import tqdm

from srlane.data.crop import Crop
from srlane.data.video import Frame, VideoFrames, lanes_json_line, prepare_image
from srlane.fileio import atomic_path
from srlane.inference.predict import ImagePrediction, Model, predict_batches
from srlane.inference.raw import RawWriter
from srlane.lanes import Lane
from srlane.models.decode import LaneDecoder
from srlane.visualize import draw_decoded_lanes

VIDEO_WRITERS = ((".mp4", "mp4v"), (".avi", "MJPG"))  # tried in this order for the annotated video
DEFAULT_FPS = 25.0  # annotated video of a stream that states no frame rate
FULL_DISK_MARGIN = 1 << 20  # bytes free below which a video with missing frames was cut by a full disk

Batches = Callable[[Iterable[dict]], Iterable[dict]]


class FrameError(ValueError):
    """The frames of a video do not fit the config's crop."""


@contextlib.contextmanager
def lanes_jsonl(path: str) -> Iterator[Callable[[int, float | None, list[Lane], int, int, int], None]]:
    """``write(frame, time, lanes, width, height, crop)`` appending one line of ``path`` (a
    ``.lanes.jsonl``, see ``srlane.data.video.lanes_json_line``), which appears when the block
    ends without an exception."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        yield lambda *frame: handle.write(lanes_json_line(*frame) + "\n")


def video_format(size: tuple[int, int], fps: float) -> tuple[str, str]:
    """``(extension, fourcc)``: the first of ``VIDEO_WRITERS`` this OpenCV writes at ``size``
    (height, width); OSError when it writes none."""
    height, width = size
    with tempfile.TemporaryDirectory() as folder:
        for ext, fourcc in VIDEO_WRITERS:
            probe = cv2.VideoWriter(os.path.join(folder, "probe" + ext), cv2.VideoWriter_fourcc(*fourcc), fps,
                                    (width, height))
            opened = probe.isOpened()
            probe.release()
            if opened:
                return ext, fourcc
    raise OSError(f"this OpenCV cannot write {' or '.join(ext for ext, _ in VIDEO_WRITERS)} videos")


def frame_batches(frames: Iterable[Frame], path: str, input_size: tuple[int, int], crop: Crop,
                  batch_size: int) -> Iterator[dict]:
    """Batches ``{"img": uint8 (B, 3, img_h, img_w), "meta": [...]}`` of the frames of the video
    ``path``, each prepared as ``prepare_image`` (a validation item) does; a frame's meta holds
    ``img_path``, ``img_name`` (the video's file name), ``img_size``, ``cut_height``, ``frame``,
    ``time`` and ``image`` (the BGR frame). FrameError when the crop does not fit a frame."""
    img_w, img_h = input_size
    images: list[torch.Tensor] = []
    metas: list[dict] = []
    for frame in frames:
        try:
            image, cut = prepare_image(frame.image, img_w, img_h, crop)
        except ValueError as err:
            raise FrameError(str(err)) from None
        images.append(image)
        metas.append({"img_path": path, "img_name": os.path.basename(path), "img_size": frame.image.shape[:2],
                      "cut_height": cut, "frame": frame.index, "time": frame.time, "image": frame.image})
        if len(metas) == batch_size:
            yield {"img": torch.stack(images), "meta": metas}
            images, metas = [], []
    if metas:
        yield {"img": torch.stack(images), "meta": metas}


def check_video(path: str, frames: int) -> None:
    """OSError unless ``path`` (a video OpenCV has written and released) opens with ``frames``
    frames: OpenCV's writer drops frames silently, e.g. on a full disk, which is then reported as
    one (ENOSPC, the file named by ``atomic_path``) when the disk has no room for another frame."""
    video = cv2.VideoCapture(path)
    found = int(video.get(cv2.CAP_PROP_FRAME_COUNT)) if video.isOpened() else 0
    video.release()
    if found == frames:
        return
    if shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < FULL_DISK_MARGIN:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    raise OSError(f"OpenCV wrote {found} of the {frames} frames of {path}")


class VideoFiles:
    """The output files of one video, opened at its first frame: ``<out>/<stem>.lanes.jsonl``
    and with ``view`` ``<out>/visualization/<stem>.mp4`` (``.avi`` where this OpenCV cannot write
    mp4) at ``fps``, every frame annotated at the first frame's size. Used as a context: the
    files are put in place when the block ends, removed when it raises."""

    def __init__(self, out: str, stem: str, fps: float, view: bool) -> None:
        self.lanes_path = os.path.join(out, stem + ".lanes.jsonl")
        self.view_stem = os.path.join(out, "visualization", stem) if view else None
        self.fps = fps
        self.stack = contextlib.ExitStack()
        self.write_lanes: Callable[..., None] | None = None
        self.view: cv2.VideoWriter | None = None
        self.view_size: tuple[int, int] = (0, 0)
        self.frames_written = 0

    def __enter__(self) -> VideoFiles:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> bool | None:
        return self.stack.__exit__(kind, error, trace)

    def write(self, prediction: ImagePrediction) -> None:
        """One predicted frame (its meta as ``frame_batches`` made it)."""
        meta = prediction.meta
        height, width = meta["img_size"]
        if self.write_lanes is None:
            self.write_lanes = self.stack.enter_context(lanes_jsonl(self.lanes_path))
            if self.view_stem is not None:
                self.view = self._open_view((height, width))
        self.write_lanes(meta["frame"], meta["time"], prediction.lanes, width, height, meta["cut_height"])
        if self.view is not None:
            picture = draw_decoded_lanes(meta["image"], prediction.lanes)
            if (height, width) != self.view_size:
                picture = cv2.resize(picture, self.view_size[::-1], interpolation=cv2.INTER_AREA)
            self.view.write(picture)
            self.frames_written += 1

    def _open_view(self, size: tuple[int, int]) -> cv2.VideoWriter:
        ext, fourcc = video_format(size, self.fps)
        tmp = self.stack.enter_context(atomic_path(self.view_stem + ext, suffix=ext))
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*fourcc), self.fps, (size[1], size[0]))
        # on exit: released, then read back, then put in place
        self.stack.push(lambda kind, error, trace: kind is None and check_video(tmp, self.frames_written))
        self.stack.callback(writer.release)
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write {self.view_stem + ext}")
        self.view_size = size
        return writer


@dataclasses.dataclass
class VideoResult:
    """What one video gave: ``frames`` predicted, their ``lanes``, ``seconds`` (reading, network,
    decoding and writing) and ``error``, the line that reports a problem (None when there was none)."""

    frames: int = 0
    lanes: int = 0
    seconds: float = 0.0
    error: str | None = None


class VideoPredictor:
    """Lanes of every frame of a video through ``predict_batches``.

    Args:
        model, decoder, device: as ``predict_batches`` takes them.
        input_size: the network's ``(img_w, img_h)``; crop: rows dropped per frame size.
        batch_size: frames per forward pass.
        out: the output folder; view: also write the annotated video.
        raw: where the raw outputs of each video's frames go once the video is done (None: not kept).
        sized: passes the batches on (e.g. ``InputChecks.sized``: one warning per unexpected size).
    """

    def __init__(self, model: Model, decoder: LaneDecoder, device: torch.device, input_size: tuple[int, int],
                 crop: Crop, batch_size: int, out: str, view: bool = False, raw: RawWriter | None = None,
                 sized: Batches = lambda batches: batches) -> None:
        self.model, self.decoder, self.device = model, decoder, device
        self.input_size, self.crop, self.batch_size = input_size, crop, batch_size
        self.out, self.view, self.raw, self.sized = out, view, raw, sized

    def __call__(self, path: str) -> VideoResult:
        """Predict the frames of the video ``path`` and write its files (a progress bar on stderr)."""
        try:
            frames = VideoFrames(path)
        except OSError as err:
            return VideoResult(error=f"{err}; nothing written for it")
        name = os.path.basename(path)
        with tqdm(total=frames.frame_count or None, desc=name, unit="frame", dynamic_ncols=True) as bar:
            return self._predict(frames, os.path.splitext(name)[0], bar.update)

    def _predict(self, frames: VideoFrames, stem: str, progress: Callable[[int], None]) -> VideoResult:
        result = VideoResult()
        raw = RawWriter()
        start = time.perf_counter()
        batches = self.sized(frame_batches(frames, frames.path, self.input_size, self.crop, self.batch_size))
        try:
            with VideoFiles(self.out, stem, frames.fps or DEFAULT_FPS, self.view) as files:
                for predictions in predict_batches(self.model, batches, self.decoder, self.device,
                                                   keep_raw=self.raw is not None):
                    for prediction in predictions:
                        files.write(prediction)
                        result.lanes += len(prediction.lanes)
                        if self.raw is not None:
                            raw.add(prediction)
                    result.frames += len(predictions)
                    progress(len(predictions))
        except FrameError as err:
            return VideoResult(error=f"{frames.path}: {err}; nothing written for it")
        finally:
            frames.close()
        result.seconds = time.perf_counter() - start
        if self.raw is not None:
            self.raw.extend(raw)
        if frames.failed_at is not None:
            kept = f"kept frames 0..{frames.failed_at - 1}" if frames.failed_at else "nothing written for it"
            result.error = f"{frames.path}: frame {frames.failed_at} could not be decoded; {kept}"
        elif result.frames == 0:
            result.error = f"{frames.path}: no frame could be decoded; nothing written for it"
        return result
