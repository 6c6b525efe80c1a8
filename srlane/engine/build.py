"""A Runner made from a config: each part built once, here, and handed to what uses it.

``build_runner`` is what ``main.py`` runs. Its steps are public, so a tool assembles a loop of
its own from the same parts: ``build_parts`` (Fabric, record, network, optimizer, schedule,
moving average, loaders, input checks, trackers), ``build_validator`` and ``default_hooks``.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence

import torch
from lightning.fabric import Fabric
from torch import nn

from srlane.benchmarks import Benchmark, build_benchmark
from srlane.config import Config, flatten
from srlane.data.input_checks import InputChecks, expected_sizes
from srlane.data.label_checks import SkippedLabels
from srlane.engine.allocator import keep_freed_memory
from srlane.engine.checkpointer import BEST, LAST, Checkpointer
from srlane.engine.distributed import failures_shared
from srlane.engine.ema import ModelEMA
from srlane.engine.fabric import build_fabric
from srlane.engine.hooks import CheckpointHook, EarlyStopHook, Hook, LoggerHook, SkippedLabelsHook
from srlane.engine.kind_report import KindTextHook
from srlane.engine.loaders import LoaderBuilder, Prepare, SplitLoaders, split_loader
from srlane.engine.memory_format import FORMATS, training_memory_format
from srlane.engine.optim import build_optimizer, build_scheduler
from srlane.engine.recorder import Recorder
from srlane.engine.reporting import build_report_hooks
from srlane.engine.results import RESULTS, ResultsHook
from srlane.engine.runner import LoopOptions, Runner
from srlane.engine.trackers import ArtifactHook, GuardedTracker, build_trackers, start_trackers
from srlane.engine.validation import Validator
from srlane.models import build_net
from srlane.models.decode import LaneDecoder, build_decoder
from srlane.models.inference import build_inference_options


@dataclasses.dataclass
class TrainingParts:
    """What a run trains with (``build_parts``); ``model`` and ``optimizer`` as Fabric set them up."""

    fabric: Fabric
    recorder: Recorder
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: ModelEMA | None
    benchmark: Benchmark
    loaders: SplitLoaders
    input_checks: InputChecks
    options: LoopOptions
    skipped_labels: SkippedLabels

    @property
    def eval_net(self) -> nn.Module:
        """The weights validation uses: the moving average when enabled, else the network."""
        return self.ema.module if self.ema is not None else self.model.module

    def runner(self, validate: Callable[[], dict] | None, hooks: Sequence[Hook]) -> Runner:
        """A Runner of these parts with this validation (None: none) and these hooks."""
        return Runner(self.fabric, self.model, self.optimizer, self.scheduler, self.loaders.train, validate, hooks,
                      self.ema, options=self.options, recorder=self.recorder, input_checks=self.input_checks)


def build_loop_options(cfg: Config) -> LoopOptions:
    """The loop's numbers from the config's training keys."""
    return LoopOptions(total_iter=int(cfg.total_iter), eval_ep=int(cfg.eval_ep), accumulate=int(cfg.accumulate),
                       grad_clip=cfg.grad_clip, max_nonfinite=int(cfg.max_nonfinite), seed=int(cfg.seed))


def build_parts(cfg: Config, work_dir: str, gpus: Sequence[int] = (0,), prepare: Prepare | None = None,
                net: nn.Module | None = None, benchmark: Benchmark | None = None,
                build_loader: LoaderBuilder | None = None) -> TrainingParts:
    """Launch Fabric for ``gpus``, open the run's record in ``work_dir`` (its config dumped there),
    seed, and build the parts; ``net``, ``benchmark`` and ``build_loader`` replace the config's
    (``build_net(cfg)``, ``build_benchmark(cfg)``, the benchmark's splits through
    ``build_dataset``/``build_dataloader``). ``prepare`` runs once, on rank 0, before the first
    loader is built. The trackers of ``cfg.loggers`` are Fabric's loggers, their runs opened (and
    given the flattened config) before anything else is built: a missing package or an unreachable
    server is one line."""
    notes: list[str] = []
    trackers = build_trackers(cfg)
    fabric = build_fabric(cfg.accelerator, cfg.strategy, cfg.precision, gpus, notes.append, int(cfg.num_nodes),
                          cfg.matmul_precision, bool(cfg.deterministic), trackers)
    fabric.launch()
    if fabric.device.type == "cpu" and keep_freed_memory():
        notes.append("host allocator keeps freed memory (glibc, no mmap): no page faults on each step's activations")
    work_dir = fabric.broadcast(os.path.abspath(work_dir), src=0)
    recorder = Recorder(work_dir, fabric.is_global_zero, cfg.total_iter, fabric)
    for note in notes:
        recorder.info(note)
    with failures_shared(fabric):
        if fabric.is_global_zero:
            start_trackers(trackers, work_dir, recorder.info, flatten(cfg.to_dict()))
    fabric.seed_everything(cfg.seed, verbose=False)
    net = net if net is not None else build_net(cfg)
    size = (int(cfg.img_h), int(cfg.img_w)) if cfg.channels_last == "auto" else None  # the measured input
    memory_format = (training_memory_format(cfg.channels_last, net, size, fabric.device, recorder.info)
                     if fabric.is_global_zero else None)
    net = net.to(memory_format=FORMATS[fabric.broadcast(memory_format, src=0)])  # one choice for all ranks
    optimizer = build_optimizer(cfg.optimizer, net)
    scheduler = build_scheduler(cfg.scheduler, optimizer, cfg.total_iter)
    model, optimizer = fabric.setup(net, optimizer)
    ema = ModelEMA(net, cfg.ema_decay) if cfg.ema_decay else None
    benchmark = benchmark if benchmark is not None else build_benchmark(cfg)
    skipped_labels = SkippedLabels(recorder.info)
    build_loader = build_loader or functools.partial(split_loader, cfg, benchmark,
                                                     pin_memory=fabric.device.type == "cuda", report=skipped_labels)
    loaders = SplitLoaders(build_loader, cfg.dataset.train_split, cfg.dataset.val_split, fabric, recorder.info, prepare)
    input_checks = InputChecks(expected_sizes(cfg), int(cfg.get("cut_height", 0)), recorder.info,
                               int(cfg.max_unreadable_images))
    if fabric.is_global_zero:
        cfg.dump(os.path.join(work_dir, "config.py"))
    recorder.info(f"work dir: {work_dir}; {fabric.world_size} process(es) on {fabric.device.type}, strategy "
                  f"{type(fabric.strategy).__name__}, precision {type(fabric.strategy.precision).__name__}")
    return TrainingParts(fabric, recorder, model, optimizer, scheduler, ema, benchmark, loaders, input_checks,
                         build_loop_options(cfg), skipped_labels)


def build_validator(cfg: Config, parts: TrainingParts, view: bool = False,
                    decoder: LaneDecoder | None = None, keep_raw: bool = False) -> Validator:
    """Validation of ``parts.eval_net`` with the config's inference options and decoder (or
    ``decoder``); ``view`` writes one picture per image to ``<work dir>/visualization``;
    ``keep_raw`` (or the config's ``report.tensorboard``) keeps the raw outputs for a report."""
    folder = os.path.join(parts.recorder.work_dir, "visualization") if view else None
    return Validator(parts.fabric, parts.loaders.val, parts.eval_net, build_inference_options(cfg),
                     decoder or build_decoder(cfg), parts.benchmark, parts.input_checks, parts.recorder.info, folder,
                     keep_raw=keep_raw or bool(cfg.report.tensorboard))


def default_hooks(cfg: Config, recorder: Recorder, checkpointer: Checkpointer, optimizer: torch.optim.Optimizer,
                  trackers: Sequence[GuardedTracker] = (), skipped_labels: SkippedLabels | None = None) -> list[Hook]:
    """The log line, the lane-kind tables as TensorBoard text, the count of training images skipped
    for bad labels (``skipped_labels``), early stopping when ``early_stop`` is set, the checkpoints, the result files
    (``srlane.engine.results``) and, when training ends, ``best.pth`` and ``results.json`` to the
    ``trackers`` that keep artifacts. Early stopping counts a validation before best.pth is
    written, so the file holds that count."""
    early_stop = [EarlyStopHook.from_config(cfg.early_stop, cfg.total_iter)] if cfg.get("early_stop") else []
    skipped = [SkippedLabelsHook(skipped_labels, recorder.info)] if skipped_labels is not None else []
    folder = recorder.work_dir
    best, last = os.path.join(folder, BEST), os.path.join(folder, LAST)
    return [LoggerHook(recorder, optimizer, cfg.log_interval, cfg.total_iter), KindTextHook(trackers), *skipped,
            *early_stop, CheckpointHook(checkpointer, cfg.save_interval),
            ResultsHook(folder, recorder.is_main, cfg.get("test_parameters") or {}, best, last),
            ArtifactHook(trackers, [best, os.path.join(folder, RESULTS)])]


def build_runner(cfg: Config, work_dir: str, gpus: Sequence[int] = (0,), view: bool = False,
                 prepare: Prepare | None = None, *, net: nn.Module | None = None, benchmark: Benchmark | None = None,
                 build_loader: LoaderBuilder | None = None, decoder: LaneDecoder | None = None,
                 hooks: Sequence[Hook] = (), load_from: str | None = None, resume: str | None = None,
                 report: bool = False) -> Runner:
    """The Runner ``cfg`` describes (``build_parts`` for the arguments they share), its standard
    hooks followed by ``hooks``, checkpoints in the run folder. ``load_from``: start from that
    file's weights (the moving average when it has one; its config must agree on the network's
    geometry); ``resume``: continue the run that file saved; ``report``: validation keeps the raw
    outputs (``srlane.engine.reporting.write_validation_report``)."""
    parts = build_parts(cfg, work_dir, gpus, prepare, net, benchmark, build_loader)
    validator = build_validator(cfg, parts, view, decoder, keep_raw=report)
    checkpointer = Checkpointer(parts.recorder.work_dir, parts.fabric.is_global_zero, cfg.to_dict(),
                                parts.recorder.info, cfg.get("keep_iter_checkpoints") or 0)
    standard = default_hooks(cfg, parts.recorder, checkpointer, parts.optimizer, parts.fabric.loggers,
                             parts.skipped_labels)
    report_hooks = build_report_hooks(cfg, validator, parts.benchmark, parts.fabric.loggers)
    runner = parts.runner(validator, [*standard, *report_hooks, *hooks])
    checkpointer.attach(runner)
    if load_from:
        checkpointer.load_weights(parts.eval_net, load_from)
    if resume:
        checkpointer.resume(resume)
    return runner
