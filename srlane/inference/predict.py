"""Batches of images -> lanes per image: the loop every prediction path runs.

``predict_batches(model, batches, decoder, device)`` takes collated batches (``{"img", "meta"}``,
as the validation loader gives them), drops the images that could not be read (reported through
``on_unreadable``), runs the model on the rest and decodes each image with its own crop. What it
yields per image, ``ImagePrediction``, holds the lanes and the proposal each comes from, and on
request the raw output row block and the features a ``tap`` read during the forward.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

import numpy as np
import torch

from srlane.data.input_checks import image_crops, readable_part
from srlane.data.records import DataFormatError
from srlane.lanes import Lane
from srlane.models.decode import LaneDecoder
from srlane.models.graph_decode import FinalLanes

Model = Callable[[torch.Tensor], torch.Tensor | FinalLanes]


class FeatureTap(Protocol):
    """Reads features during a forward; ``features(i, proposals)`` gives image ``i``'s."""

    def features(self, image: int, proposals: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclasses.dataclass
class ImagePrediction:
    """One predicted image: its ``meta`` (as the dataset gave it), its ``lanes`` (best score
    first), ``proposals`` (the proposal index of each lane), ``seconds`` (network + decoding of
    its batch, divided by the batch's images), and on request ``raw`` (float32 (N, 4 +
    num_points), the network's output before threshold and NMS) and ``features``."""

    meta: dict
    lanes: list[Lane]
    proposals: np.ndarray
    seconds: float
    raw: np.ndarray | None = None
    features: dict[str, np.ndarray] | None = None


def reject_unreadable(meta: dict) -> None:
    """The default for ``on_unreadable``: an image that cannot be read stops with one line."""
    raise DataFormatError(meta["img_path"], None, "cannot read this image (every image is predicted); "
                          "repair it or remove it from the list")


def predict_batches(model: Model, batches: Iterable[dict[str, Any]], decoder: LaneDecoder, device: torch.device,
                    on_unreadable: Callable[[dict], None] = reject_unreadable, keep_raw: bool = False,
                    tap: FeatureTap | None = None) -> Iterator[list[ImagePrediction]]:
    """For each batch, the predictions of its readable images (an empty list when none was).

    ``model(images on device)`` returns float predictions (B, N, 4 + num_points), or the final
    lanes a graph decoded (``FinalLanes``: an ONNX file with the decoder; the decoder then only
    maps their points); the decoder maps each image's rows with ``meta["cut_height"]`` and
    ``meta["img_size"]``. ``keep_raw`` keeps each image's raw output on the host; ``tap`` adds
    its features of each image."""
    for batch in batches:
        readable = readable_part(batch, on_unreadable)
        if readable is None:
            yield []
            continue
        images, metas = readable
        start = time.perf_counter()
        output = model(images.to(device, non_blocking=True))
        decoded = decoder.decode(output, image_crops(metas))  # copies the kept rows to the host: synchronises
        seconds = (time.perf_counter() - start) / len(metas)
        network = output.predictions if isinstance(output, FinalLanes) else output
        raw = network.detach().float().cpu().numpy() if keep_raw else None
        predictions = []
        for i, (meta, lanes) in enumerate(zip(metas, decoded)):
            proposals = np.array([proposal for _, proposal in lanes], dtype=np.int64)
            predictions.append(ImagePrediction(
                meta, [lane for lane, _ in lanes], proposals, seconds,
                raw=None if raw is None else raw[i],
                features=None if tap is None else tap.features(i, proposals)))
        yield predictions
