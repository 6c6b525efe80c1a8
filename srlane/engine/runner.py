"""The Runner: the iteration loop, validation, checkpoints and resume, on Lightning Fabric.

The loop (``train``) fits on one screen; logging and checkpoints are hooks
(``srlane.engine.hooks``); the device and strategy come from ``srlane.engine.fabric``, the splits
and the metric from the benchmark. One optimizer step is one iteration; ``total_iter``
iterations in all, validation every ``eval_ep`` epochs and at the end.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from srlane.benchmarks import Benchmark, Evaluator, build_benchmark
from srlane.config import Config, ConfigError
from srlane.data.dataset import build_dataset
from srlane.data.input_checks import InputChecks, expected_sizes
from srlane.data.loader import build_dataloader
from srlane.data.records import DataFormatError
from srlane.engine import checkpoint as ckpt
from srlane.models import weights
from srlane.engine.allocator import keep_freed_memory
from srlane.engine.ema import ModelEMA
from srlane.engine.fabric import build_fabric
from srlane.engine.hooks import CheckpointHook, EarlyStopHook, Hook, LoggerHook
from srlane.engine.optim import build_optimizer, build_scheduler
from srlane.engine.recorder import Recorder
from srlane.inference import predict_batches
from srlane.models.inference import build_inference_options, prepare_for_inference

LoaderBuilder = Callable[[str, bool, int, int], DataLoader]  # (split, training, rank, world size)
Prepare = Callable[[Callable[[str], None]], None]  # data preparation, given a log function

# torch warns when the first scheduler step comes before any optimizer step; under 16-mixed the
# grad scaler skips the updates of the first steps (their float16 gradients overflow while it
# finds its scale). The schedule follows iterations, skipped or not, so that order is intended.
_SCHEDULER_BEFORE_OPTIMIZER = r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"


def split_loader(cfg: Config, benchmark: Benchmark, split: str, training: bool, rank: int = 0,
                 world_size: int = 1, pin_memory: bool = False) -> DataLoader:
    """The loader of a benchmark split as the config says (dataset, batch size, workers, seed);
    ``pin_memory`` (for CUDA) makes its host-to-device copies asynchronous."""
    dataset = build_dataset(cfg, benchmark.read_split(split, training), training)
    return build_dataloader(cfg, dataset, training, rank, world_size, pin_memory)


def _reject_unreadable(meta: dict) -> None:
    raise DataFormatError(meta["img_path"], None, "cannot read this validation image (validation scores every "
                          "image of the split); repair it or remove it from the list")


def _default_net(cfg: Config) -> nn.Module:
    from srlane.models import build_net

    return build_net(cfg)


def _default_decoder(cfg: Config) -> Callable[..., list]:
    from srlane.models.decode import build_decoder

    return build_decoder(cfg)


class Runner:
    """Trains and validates one network as ``cfg`` says.

    Args:
        cfg: the experiment config (see ``srlane.engine.defaults``).
        work_dir: where log.txt, TensorBoard, checkpoints and pictures go.
        gpus: device ids (CUDA) or, on CPU, one process per entry.
        view: write one picture per validated image to ``<work_dir>/visualization``.
        net: the network (default ``srlane.models.build_net(cfg)``).
        benchmark: reads the splits' records and scores validation (default ``build_benchmark(cfg)``).
        build_loader: ``(split, training, rank, world size) -> DataLoader`` whose dataset has
            ``records``; a training loader's sampler is an ``EpochSampler``, whose
            ``(epoch, index)`` keys its dataset takes (default: the
            benchmark's split through ``build_dataset`` and ``build_dataloader``).
        decoder: ``(predictions, crops) -> lanes per image`` (default ``build_decoder(cfg)``).
        prepare: data preparation (e.g. generating the synthetic set), run once on rank 0
            before the first loader is built; it gets the log function.
        hooks: extra hooks, run after the standard ones.
    """

    def __init__(
        self,
        cfg: Config,
        work_dir: str,
        gpus: Sequence[int] = (0,),
        view: bool = False,
        net: nn.Module | None = None,
        benchmark: Benchmark | None = None,
        build_loader: LoaderBuilder | None = None,
        decoder: Callable[..., list] | None = None,
        prepare: Prepare | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.cfg = cfg
        self.view = view
        notes: list[str] = []
        self.fabric = build_fabric(cfg.accelerator, cfg.strategy, cfg.precision, gpus, notes.append,
                                   int(cfg.num_nodes), cfg.matmul_precision)
        self.fabric.launch()
        if self.fabric.device.type == "cpu" and keep_freed_memory():
            notes.append("host allocator keeps freed memory (glibc, no mmap): no page faults on each step's activations")
        self.work_dir = self.fabric.broadcast(os.path.abspath(work_dir), src=0)
        self.recorder = Recorder(self.work_dir, self.fabric.is_global_zero, cfg.total_iter)
        for note in notes:
            self.recorder.info(note)
        self.fabric.seed_everything(cfg.seed, verbose=False)
        self.net = net if net is not None else _default_net(cfg)
        if cfg.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(cfg.optimizer, self.net)
        self.scheduler = build_scheduler(cfg.scheduler, optimizer, cfg.total_iter)
        self.model, self.optimizer = self.fabric.setup(self.net, optimizer)
        self.ema = ModelEMA(self.net, cfg.ema_decay) if cfg.ema_decay else None
        # updates the grad scaler skipped, counted on the device (read per log line)
        self.scaler_skips = torch.zeros((), dtype=torch.int64, device=self.fabric.device) if self.scaler is not None else None
        self.benchmark = benchmark if benchmark is not None else build_benchmark(cfg)
        self.build_loader = build_loader or functools.partial(split_loader, cfg, self.benchmark,
                                                              pin_memory=self.fabric.device.type == "cuda")
        self.decoder = decoder or _default_decoder(cfg)
        self.inference = build_inference_options(cfg)  # how validation runs the network
        self.prepare = prepare
        self.input_checks = InputChecks(expected_sizes(cfg), int(cfg.get("cut_height", 0)), self.recorder.info,
                                        int(cfg.max_unreadable_images))
        # early stopping counts a validation before best.pth is written, so the file holds that count
        self.hooks: list[Hook] = [LoggerHook(cfg.log_interval),
                                  *([EarlyStopHook.from_config(cfg.early_stop)] if cfg.get("early_stop") else []),
                                  CheckpointHook(cfg.save_interval, cfg.get("keep_iter_checkpoints") or 0),
                                  *hooks]
        self.total_iter = cfg.total_iter
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_metric = -math.inf
        self.nonfinite_in_row = self.nonfinite_total = 0
        self.step_losses: dict[str, torch.Tensor] = {}
        self.last_metrics: dict = {}
        self.failed = False
        self.stop_signal: int | None = None
        self.stop_reason: str | None = None  # set through request_stop
        self._train_loader: DataLoader | None = None
        self._val_loader: DataLoader | None = None
        self._evaluator: Evaluator | None = None
        self._inference_net: nn.Module | None = None
        self._prepared = False
        if self.fabric.is_global_zero:
            cfg.dump(os.path.join(self.work_dir, "config.py"))
        self.recorder.info(
            f"work dir: {self.work_dir}; {self.fabric.world_size} process(es) on {self.fabric.device.type}, "
            f"strategy {type(self.fabric.strategy).__name__}, precision {type(self.fabric.strategy.precision).__name__}"
        )

    def call_hooks(self, method: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, method)(self, *args)

    def request_stop(self, reason: str) -> None:
        """End training cleanly at the next check: after the current step, or right after the
        validation whose hook asked; no further validation, last.pth is saved, ``reason`` logged."""
        if self.stop_reason is None:
            self.stop_reason = reason

    # ------------------------------------------------------------------ training
    def train(self) -> None:
        """Train to ``total_iter``; validate every ``eval_ep`` epochs and at the end. A signal or
        ``request_stop`` ends it early (last.pth saved; a signal exits with 128 + its number)."""
        self.call_hooks("before_train")
        try:
            with self._stop_on_signals():
                while self.step < self.total_iter and not self._stop_requested():
                    for batches in self.train_batches():
                        self.call_hooks("before_step")
                        if self.run_step(batches):
                            self.call_hooks("after_step")
                        if self.step >= self.total_iter or self._stop_requested():
                            break
                    else:
                        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                        if self.epoch % self.cfg.eval_ep == 0 and self.step < self.total_iter:
                            self.validate()
                if not self._stop_requested():
                    self.validate()
        except BaseException:
            self.failed = True
            raise
        finally:
            self.call_hooks("after_train")
            if self.stop_signal is not None:
                name = signal.Signals(self.stop_signal).name
                self.recorder.info(f"stopped by {name} after iteration {self.step}; saved last.pth, resume with --resume")
            elif self.stop_reason is not None and not self.failed:
                self.recorder.info(f"{self.stop_reason}; stopped after iteration {self.step}, saved last.pth")
            self.recorder.close()
        if self.stop_signal is not None:
            raise SystemExit(128 + self.stop_signal)

    def train_batches(self) -> Iterator[list[Any]]:
        """The rest of the current epoch, as groups of ``accumulate`` batches on the device."""
        loader = self.train_loader()
        if len(loader.dataset) < loader.batch_size * self.cfg.accumulate * self.fabric.world_size:
            raise ConfigError(
                f"the training split has {len(loader.dataset)} images, fewer than one step needs "
                f"(batch_size {loader.batch_size} x accumulate {self.cfg.accumulate} x {self.fabric.world_size} process(es)); "
                "lower batch_size or accumulate, or use a larger split"
            )
        loader.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * loader.batch_size)  # its keys carry the epoch
        loader.generator.manual_seed(self.cfg.seed + self.epoch)
        group: list[Any] = []
        for batch in loader:
            self.input_checks.training(batch["meta"])
            group.append(self.fabric.to_device(batch))
            if len(group) == self.cfg.accumulate:
                self.batch_in_epoch += len(group)
                yield group
                group = []

    def run_step(self, batches: list[Any]) -> bool:
        """One optimizer step over the micro-batches; False when skipped for a non-finite loss.

        The loss terms stay detached tensors on the device (``step_losses``); the only host read
        of the step is whether the summed loss is finite (agreed by all ranks).
        """
        self.optimizer.zero_grad(set_to_none=True)
        losses: dict[str, torch.Tensor] = {}
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            sync = self.fabric.no_backward_sync(self.model, enabled=not last) if self.fabric.world_size > 1 else contextlib.nullcontext()
            with sync:
                # Extend here: the model sees the batch exactly as the loader collated it.
                output = self.model(batch)
                self.fabric.backward(output["loss"].mean() / len(batches))
            for name, value in {"loss": output["loss"], **output["loss_status"]}.items():
                term = value.detach().float().mean() / len(batches)
                losses[name] = losses[name] + term if name in losses else term
        if self._any_rank(~torch.isfinite(losses["loss"])):
            return self._skip_step(float(losses["loss"]))
        if self.cfg.grad_clip:
            self.fabric.clip_gradients(self.model, self.optimizer, max_norm=self.cfg.grad_clip)
        scale = self.scaler._scale.clone() if self.scaler_skips is not None else None
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update()
        if scale is not None:  # the scaler lowers its scale exactly when it skips the update
            self.scaler_skips += (self.scaler._scale < scale).squeeze().long()
        if self.scheduler.last_epoch == 0:  # torch checks the order on the schedule's first step only
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_SCHEDULER_BEFORE_OPTIMIZER)
                self.scheduler.step()
        else:
            self.scheduler.step()
        self.step += 1
        self.nonfinite_in_row = 0
        self.step_losses = losses
        return True

    def _skip_step(self, loss: float) -> bool:
        self.optimizer.zero_grad(set_to_none=True)
        self.nonfinite_in_row += 1
        self.nonfinite_total += 1
        iteration = self.step + 1
        self.recorder.info(
            f"iteration {iteration}: loss is {loss}, step skipped "
            f"({self.nonfinite_in_row} in a row, {self.nonfinite_total} in all)"
        )
        if self.nonfinite_in_row > self.cfg.max_nonfinite:
            raise FloatingPointError(
                f"loss not finite for {self.nonfinite_in_row} steps in a row up to iteration {iteration} "
                f"(max_nonfinite={self.cfg.max_nonfinite}); lower the learning rate or check the data"
            )
        return False

    def prepare_data(self) -> None:
        """Run ``prepare`` once, on rank 0, while the other ranks wait."""
        if self.prepare is not None and not self._prepared:
            if self.fabric.is_global_zero:
                self.prepare(self.recorder.info)
            self.fabric.barrier()
        self._prepared = True

    def train_loader(self) -> DataLoader:
        if self._train_loader is None:
            self.prepare_data()
            self.recorder.info("building the training loader")
            self._train_loader = self.build_loader(self.cfg.dataset.train_split, True, self.fabric.global_rank,
                                                   self.fabric.world_size)
        return self._train_loader

    # ---------------------------------------------------------------- validation
    def val_loader(self) -> DataLoader:
        """Built on first use; under several processes each rank reads its own share, no repeats."""
        if self._val_loader is None:
            self.prepare_data()
            self._val_loader = self.build_loader(self.cfg.dataset.val_split, False, self.fabric.global_rank,
                                                 self.fabric.world_size)
        return self._val_loader

    def eval_net(self) -> nn.Module:
        """The weights validation uses: the moving average when enabled, else the network."""
        return self.ema.module if self.ema is not None else self.net

    def inference_net(self) -> nn.Module:
        """The eval-mode copy of ``eval_net()`` that validation runs, with the inference options:
        made at the first validation, its weights refreshed in place at the later ones (a CUDA
        graph is captured once)."""
        if self._inference_net is None:
            self._inference_net = prepare_for_inference(self.eval_net(), self.inference, self.fabric.device)
        else:
            self._inference_net.load_weights(self.eval_net())
        return self._inference_net

    def validate(self) -> dict:
        """Evaluate, keep the best metric (agreed by all ranks) and run the validation hooks."""
        metrics = self.evaluate()
        is_best = metrics["metric"] > self.best_metric
        if is_best:
            self.best_metric = float(metrics["metric"])
        self.last_metrics = metrics
        self.call_hooks("after_validation", metrics, is_best)
        return metrics

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Predict every validation image once and score them on rank 0; every rank gets the metrics."""
        loader = self.val_loader()
        net = self.inference_net()
        predictions: dict[int, list] = {}
        bar = tqdm(loader, desc="Validate", disable=not self.fabric.is_global_zero, leave=False, dynamic_ncols=True)
        # the network runs at the inference options' precision, whatever the training precision
        for batch in predict_batches(net, self.input_checks.sized(bar), self.decoder, self.fabric.device,
                                     _reject_unreadable):
            predictions.update((int(image.meta["index"]), image.lanes) for image in batch)
        metrics = self._score(loader.dataset, self._gather(predictions))
        return self.fabric.broadcast(metrics, src=0)

    def _gather(self, predictions: dict[int, list]) -> dict[int, list] | None:
        if self.fabric.world_size == 1:
            return predictions
        parts: list[dict[int, list] | None] = [None] * self.fabric.world_size
        dist.all_gather_object(parts, predictions)
        return {index: lanes for part in parts for index, lanes in part.items()} if self.fabric.is_global_zero else None

    def _score(self, dataset: Any, predictions: dict[int, list] | None) -> dict | None:
        if not self.fabric.is_global_zero:
            return None
        missing = sorted(set(range(len(dataset))) - set(predictions))
        if missing:
            raise RuntimeError(f"validation produced no prediction for images {missing[:10]}")
        ordered = [predictions[i] for i in range(len(dataset))]
        if self.view:
            from srlane.visualize import write_visualizations

            folder = os.path.join(self.work_dir, "visualization")
            count = write_visualizations(dataset, ordered, folder)
            self.recorder.info(f"wrote {count} pictures to {folder}")
        if self._evaluator is None:  # built once: it keeps what it derives from the annotations
            self._evaluator = self.benchmark.evaluator(dataset.records)
        return dict(self._evaluator(ordered))

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        """The grad scaler of ``16-mixed`` training, else None."""
        return getattr(self.fabric.strategy.precision, "scaler", None)

    def counters(self) -> dict[str, int]:
        """Events the log line reports: steps skipped for a non-finite loss or by the grad scaler,
        training images replaced because they could not be read."""
        counts = {"skipped (non-finite loss)": self.nonfinite_total,
                  "unreadable images replaced": self.input_checks.unreadable}
        if self.scaler_skips is not None:
            counts["skipped by the grad scaler"] = int(self.scaler_skips)
        return counts

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue bit for bit."""
        scaler = self.scaler
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best_metric": self.best_metric,
            "metrics": dict(self.last_metrics),
            "nonfinite": [self.nonfinite_in_row, self.nonfinite_total],
            "unreadable_images": self.input_checks.unreadable,
            "scaler_skips": None if self.scaler_skips is None else self.scaler_skips.cpu(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "hooks": {hook.name: hook.state_dict() for hook in self.hooks},
            "rng": ckpt.rng_state(),
            "config": self.cfg.to_dict(),
        }

    def save_checkpoint(self, *names: str) -> None:
        """Write ``<work_dir>/<name>`` for each name (one state) on rank 0."""
        state = self.state_dict()
        if self.fabric.is_global_zero:
            for name in names:
                ckpt.save_checkpoint(state, os.path.join(self.work_dir, name))

    def load_weights(self, path: str) -> None:
        """Network weights only (``--load-from``): the averaged weights when the file has them."""
        weights.load_net_weights(self.eval_net(), weights.inference_weights(weights.load_checkpoint(path)), path)
        self.recorder.info(f"loaded weights from {path}")

    def resume(self, path: str) -> None:
        """Restore network, optimizer, schedule, counters, hooks and RNG from ``path``."""
        state = weights.load_checkpoint(path)
        weights.load_net_weights(self.net, state["net"], path)
        if "optimizer" not in state:
            raise weights.CheckpointError(f"checkpoint {path}: holds only weights; use --load-from, not --resume")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
            if state.get("scaler_skips") is not None:
                self.scaler_skips.copy_(state["scaler_skips"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.best_metric = state["best_metric"]
        self.last_metrics = state["metrics"]
        self.nonfinite_in_row, self.nonfinite_total = state["nonfinite"]
        self.input_checks.unreadable = state.get("unreadable_images", 0)
        if self.ema is not None:
            ema = weights.ema_weights(state)
            if ema is None:
                raise weights.CheckpointError(f"checkpoint {path}: ema_decay is set but the checkpoint has no moving average")
            self.ema.load_state_dict(ema)
        for hook in self.hooks:
            hook.load_state_dict(state["hooks"].get(hook.name, {}))
        ckpt.set_rng_state(state["rng"])
        self.recorder.info(f"resumed from {path} at step {self.step} (epoch {self.epoch})")

    # ------------------------------------------------------------------- signals
    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM finish the current step, save last.pth and exit; a second one kills."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            self.stop_signal = signum
            for sig, old in previous.items():
                signal.signal(sig, old)

        for sig in previous:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _stop_requested(self) -> bool:
        """A signal or ``request_stop`` on any process; all ranks then agree on the cause (a
        signal wins), so they end alike. One all-reduce under several processes, no host read else."""
        cause = 2 if self.stop_signal is not None else 1 if self.stop_reason is not None else 0
        if self.fabric.world_size > 1:
            value = torch.tensor(cause, dtype=torch.float32, device=self.fabric.device)
            cause = int(self.fabric.all_reduce(value, reduce_op="max"))
        if cause == 2 and self.stop_signal is None:
            self.stop_signal = signal.SIGTERM
        if cause == 1 and self.stop_reason is None:
            self.stop_reason = "stop requested on another process"
        return cause > 0

    def _any_rank(self, flag: bool | torch.Tensor) -> bool:
        """``flag`` (a bool or a 0-dim tensor on the device) true on some process: one host read."""
        if self.fabric.world_size == 1:
            return bool(flag)
        value = torch.as_tensor(flag, dtype=torch.float32, device=self.fabric.device)
        return bool(self.fabric.all_reduce(value, reduce_op="sum") > 0)
