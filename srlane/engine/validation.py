"""Validation: every image of the validation split predicted once (each process its share; under
dp split by batch over the process's GPUs), gathered by image index and scored on rank 0 by the
benchmark's evaluator; every process gets the metrics. The network runs as the inference options
say, whatever the training precision."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric import Fabric
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from srlane.benchmarks import Benchmark, Evaluator
from srlane.data.input_checks import InputChecks
from srlane.data.records import DataFormatError
from srlane.engine.data_parallel import dp_devices, spread_over
from srlane.engine.distributed import failures_shared, gather_by_index
from srlane.inference import ImagePrediction, predict_batches
from srlane.models.decode import LaneDecoder
from srlane.models.inference import InferenceOptions, prepare_for_inference


def reject_unreadable(meta: dict) -> None:
    """A validation image that cannot be read stops the run with one line."""
    raise DataFormatError(meta["img_path"], None, "cannot read this validation image (validation scores every "
                          "image of the split); repair it or remove it from the list")


class Validator:
    """``validator()`` -> the metrics (with ``"metric"``, the number that picks the best checkpoint).

    Args:
        fabric: the device, the ranks, the broadcast of the metrics.
        loader: ``() -> DataLoader`` of the validation split, called at each validation (built
            once by its owner); its dataset has ``records``.
        net: the weights validation uses (the moving average when enabled). Its eval-mode copy
            with the inference options is made at the first validation and its weights renewed
            in place at each later one (a CUDA graph is captured once).
        options: how that copy runs (precision, fold_bn, channels_last, compile).
        decoder: lanes from the network's output, each image with its own crop.
        benchmark: its evaluator, built once over the split's records, scores on rank 0.
        input_checks: warns once per image size the config does not expect.
        log: where the pictures are told.
        view_folder: when given, one picture per validated image goes there (``--view``).
        keep_raw: keep each image's raw output: after each validation, ``last`` holds the
            split's ``ImagePrediction``s in the records' order on rank 0 (a report's input;
            None elsewhere and without ``keep_raw``).
    """

    def __init__(self, fabric: Fabric, loader: Callable[[], DataLoader], net: nn.Module, options: InferenceOptions,
                 decoder: LaneDecoder, benchmark: Benchmark, input_checks: InputChecks, log: Callable[[str], None],
                 view_folder: str | None = None, keep_raw: bool = False) -> None:
        self.fabric, self.loader, self.net, self.options = fabric, loader, net, options
        self.decoder, self.benchmark, self.input_checks, self.log = decoder, benchmark, input_checks, log
        self.view_folder, self.keep_raw = view_folder, keep_raw
        self.last: list[ImagePrediction] | None = None
        self.prepared: nn.Module | None = None  # the inference copy, made at the first validation
        self._evaluator: Evaluator | None = None
        self._kinds: Evaluator | None = None  # the lane-kind metrics (Benchmark.category_evaluator)

    def inference_net(self) -> nn.Module:
        """The inference copy of ``net``, holding its current weights: under dp split by batch over
        the run's GPUs, except a compiled copy (one GPU: its graph belongs to one device)."""
        if self.prepared is None:
            devices = dp_devices(self.fabric)
            if len(devices) > 1 and self.options.compile != "none":
                self.log(f"validation on {devices[0]} alone: inference.compile={self.options.compile!r} is not "
                         f"split over the {len(devices)} GPUs of dp")
                devices = devices[:1]
            self.prepared = spread_over(prepare_for_inference(self.net, self.options, self.fabric.device, self.log), devices)
        else:
            self.prepared.load_weights(self.net)
        return self.prepared

    @torch.no_grad()
    def __call__(self) -> dict:
        """Predict and score the split; the same metrics on every process."""
        loader = self.loader()
        net = self.inference_net()
        predictions: dict[int, list] = {}
        bar = tqdm(loader, desc="Validate", disable=not self.fabric.is_global_zero, leave=False, dynamic_ncols=True)
        # a failure on one process stops every process with its line (none waits in a collective)
        with failures_shared(self.fabric):
            for batch in predict_batches(net, self.input_checks.sized(bar), self.decoder, self.fabric.device,
                                         reject_unreadable, keep_raw=self.keep_raw):
                predictions.update((int(image.meta["index"]), image if self.keep_raw else image.lanes)
                                   for image in batch)
        gathered = gather_by_index(self.fabric, predictions)
        metrics = None
        with failures_shared(self.fabric):
            if self.fabric.is_global_zero:
                metrics = self._score(loader.dataset, gathered)
        return self.fabric.broadcast(metrics, src=0)

    def _score(self, dataset: Any, predictions: dict[int, list]) -> dict:
        missing = sorted(set(range(len(dataset))) - set(predictions))
        if missing:
            raise RuntimeError(f"validation produced no prediction for images {missing[:10]}")
        ordered = [predictions[i] for i in range(len(dataset))]
        if self.keep_raw:
            self.last, ordered = ordered, [image.lanes for image in ordered]
        if self.view_folder is not None:
            from srlane.visualize import write_visualizations

            count = write_visualizations(dataset, ordered, self.view_folder)
            self.log(f"wrote {count} pictures to {self.view_folder}")
        if self._evaluator is None:  # built once: it keeps what it derives from the annotations
            self._evaluator = self.benchmark.evaluator(dataset.records)
            self._kinds = self.benchmark.category_evaluator(dataset.records)
        metrics = dict(self._evaluator(ordered))
        if self._kinds is not None:  # the lane kinds, when the labels and the predictions have them
            metrics.update(self._kinds(ordered))
        return metrics
