"""The Runner: the iteration loop, the step and the run's state, on Lightning Fabric.

It is given its parts (``srlane.engine.build.build_runner`` makes them from a config): Fabric,
the network and optimizer Fabric set up, the schedule, the training loader (built on first use),
the validation, the hooks (``srlane.engine.hooks``) and the moving average. One optimizer step
is one iteration; ``total_iter`` in all, validation every ``eval_ep`` epochs and at the end.
"""
from __future__ import annotations

import contextlib
import dataclasses
import signal
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
from lightning.fabric import Fabric
from torch.utils.data import DataLoader

from srlane.config import ConfigError
from srlane.data.input_checks import InputChecks
from srlane.engine.checkpoint import rng_state, set_rng_state
from srlane.engine.distributed import agreed_stop, any_rank
from srlane.engine.ema import ModelEMA
from srlane.engine.hooks import Hook
from srlane.engine.optim import clip_gradients
from srlane.engine.recorder import Recorder
from srlane.engine.signals import stop_signals_to
from srlane.engine.state import TrainState
from srlane.models.weights import CheckpointError, ema_weights, load_net_weights

# torch warns when the first scheduler step comes before any optimizer step; under 16-mixed the
# grad scaler skips the updates of the first steps (their float16 gradients overflow while it
# finds its scale). The schedule follows iterations, skipped or not, so that order is intended.
_SCHEDULER_BEFORE_OPTIMIZER = r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"


@dataclasses.dataclass(frozen=True)
class LoopOptions:
    """How the loop runs: ``total_iter`` optimizer steps, validation every ``eval_ep`` epochs,
    ``accumulate`` micro-batches per step, gradients clipped to norm ``grad_clip`` (None: off),
    at most ``max_nonfinite`` steps in a row skipped for a non-finite loss, the training loader's
    shuffling seeded with ``seed + epoch``."""

    total_iter: int
    eval_ep: int
    accumulate: int = 1
    grad_clip: float | None = None
    max_nonfinite: int = 10
    seed: int = 0


class Runner:
    """Trains one network.

    Args:
        fabric: the launched Fabric (device, processes, precision).
        model, optimizer: as ``fabric.setup`` returned them.
        scheduler: stepped once after every optimizer step, skipped or not.
        train_loader: ``() -> DataLoader``, called at each epoch (built once by its owner); its
            sampler is an ``EpochSampler`` and it has a ``generator``.
        validate: ``() -> metrics`` with ``"metric"`` (higher is better; every rank gets them);
            None: no validation.
        hooks: called in this order around the steps and validations, given ``state``.
        ema: the moving average of the network's weights, updated after every optimizer step.
        options: the loop's numbers (``LoopOptions``).
        recorder: the log lines of skipped steps and of how the run ended; closed at the end.
        input_checks: checks (and counts) the training images the loader could not read.
    """

    def __init__(self, fabric: Fabric, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, train_loader: Callable[[], DataLoader],
                 validate: Callable[[], dict] | None, hooks: Sequence[Hook], ema: ModelEMA | None = None, *,
                 options: LoopOptions, recorder: Recorder, input_checks: InputChecks) -> None:
        self.fabric, self.model, self.optimizer, self.scheduler = fabric, model, optimizer, scheduler
        self.net = model.module  # without Fabric's wrapper: the weights checkpoints hold
        self.train_loader, self.validate, self.hooks, self.ema = train_loader, validate, list(hooks), ema
        self.options, self.recorder, self.input_checks = options, recorder, input_checks
        # updates the grad scaler skipped, counted on the device (read per log line)
        skips = torch.zeros((), dtype=torch.int64, device=fabric.device) if self.scaler is not None else None
        self.state = TrainState(scaler_skips=skips)

    @property
    def scaler(self) -> torch.amp.GradScaler | None:
        """The grad scaler of ``16-mixed`` training, else None."""
        return getattr(self.fabric.strategy.precision, "scaler", None)

    def call_hooks(self, method: str, *args: Any) -> None:
        """``hook.<method>(state, *args)`` for every hook, in order."""
        for hook in self.hooks:
            getattr(hook, method)(self.state, *args)

    def train(self) -> None:
        """Train to ``total_iter``; validate every ``eval_ep`` epochs and at the end. A signal or
        ``state.request_stop`` ends it early (last.pth saved; a signal exits with 128 + its number)."""
        state, total = self.state, self.options.total_iter
        self.call_hooks("before_train")
        try:
            with stop_signals_to(self._note_signal):
                while state.step < total and not self._stop_requested():
                    for batches in self.train_batches():
                        self.call_hooks("before_step")
                        if self.run_step(batches):
                            self.call_hooks("after_step")
                        if state.step >= total or self._stop_requested():
                            break
                    else:
                        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                        if state.epoch % self.options.eval_ep == 0 and state.step < total:
                            self.run_validation()
                if not self._stop_requested():
                    self.run_validation()
        except BaseException:
            state.failed = True
            raise
        finally:
            self.call_hooks("after_train")
            if state.stop_signal is not None:
                name = signal.Signals(state.stop_signal).name
                self.recorder.info(f"stopped by {name} after iteration {state.step}; saved last.pth, resume with --resume")
            elif state.stop_reason is not None and not state.failed:
                self.recorder.info(f"{state.stop_reason}; stopped after iteration {state.step}, saved last.pth")
            self.recorder.close("failed" if state.failed else "success")
        if state.stop_signal is not None:
            raise SystemExit(128 + state.stop_signal)

    def train_batches(self) -> Iterator[list[Any]]:
        """The rest of the current epoch, as groups of ``accumulate`` batches on the device."""
        loader, state, accumulate, world = self.train_loader(), self.state, self.options.accumulate, self.fabric.world_size
        if len(loader.dataset) < loader.batch_size * accumulate * world:
            raise ConfigError(
                f"the training split has {len(loader.dataset)} images, fewer than one step needs "
                f"(batch_size {loader.batch_size} x accumulate {accumulate} x {world} process(es)); "
                "lower batch_size or accumulate, or use a larger split"
            )
        loader.sampler.set_epoch(state.epoch, start=state.batch_in_epoch * loader.batch_size)  # its keys carry the epoch
        loader.generator.manual_seed(self.options.seed + state.epoch)
        group: list[Any] = []
        for batch in loader:
            self.input_checks.training(batch["meta"])
            state.unreadable_images = self.input_checks.unreadable
            group.append(self.fabric.to_device(batch))
            if len(group) == accumulate:
                state.batch_in_epoch += len(group)
                yield group
                group = []

    def run_step(self, batches: list[Any]) -> bool:
        """One optimizer step over the micro-batches; False when skipped for a non-finite loss.

        The loss terms stay detached tensors on the device (``state.step_losses``); the only host
        read of the step is whether the summed loss is finite (agreed by all ranks).
        """
        self.optimizer.zero_grad(set_to_none=True)
        losses: dict[str, torch.Tensor] = {}
        for index, batch in enumerate(batches):
            several, last = self.fabric.world_size > 1, index == len(batches) - 1
            with self.fabric.no_backward_sync(self.model, enabled=not last) if several else contextlib.nullcontext():
                # Extend here: the model sees the batch exactly as the loader collated it.
                output = self.model(batch)
                self.fabric.backward(output["loss"].mean() / len(batches))
            for name, value in {"loss": output["loss"], **output["loss_status"]}.items():
                term = value.detach().float().mean() / len(batches)
                losses[name] = losses[name] + term if name in losses else term
        if any_rank(self.fabric, ~torch.isfinite(losses["loss"])):
            return self._skip_step(float(losses["loss"]))
        if self.options.grad_clip:
            clip_gradients(self.net, self.optimizer, self.scaler, self.options.grad_clip)
        state = self.state
        scale = self.scaler._scale.clone() if state.scaler_skips is not None else None
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update()
        if scale is not None:  # the scaler lowers its scale exactly when it skips the update
            state.scaler_skips += (self.scaler._scale < scale).squeeze().long()
        if self.scheduler.last_epoch == 0:  # torch checks the order on the schedule's first step only
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_SCHEDULER_BEFORE_OPTIMIZER)
                self.scheduler.step()
        else:
            self.scheduler.step()
        state.step, state.nonfinite_in_row, state.step_losses = state.step + 1, 0, losses
        return True

    def _skip_step(self, loss: float) -> bool:
        self.optimizer.zero_grad(set_to_none=True)
        state, limit = self.state, self.options.max_nonfinite
        state.nonfinite_in_row, state.nonfinite_total = state.nonfinite_in_row + 1, state.nonfinite_total + 1
        iteration = state.step + 1
        self.recorder.info(f"iteration {iteration}: loss is {loss}, step skipped "
                           f"({state.nonfinite_in_row} in a row, {state.nonfinite_total} in all)")
        if state.nonfinite_in_row > limit:
            raise FloatingPointError(
                f"loss not finite for {state.nonfinite_in_row} steps in a row up to iteration {iteration} "
                f"(max_nonfinite={limit}); lower the learning rate or check the data"
            )
        return False

    def run_validation(self) -> None:
        """Validate, keep the best metric (agreed by all ranks) and run the validation hooks."""
        if self.validate is None:
            return
        metrics = self.validate()
        is_best = metrics["metric"] > self.state.best_metric
        if is_best:
            self.state.best_metric = float(metrics["metric"])
        self.state.last_metrics = metrics
        self.call_hooks("after_validation", metrics, is_best)

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue bit for bit."""
        scaler = self.scaler
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            **self.state.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "hooks": {hook.name: hook.state_dict() for hook in self.hooks},
            "rng": rng_state(),
        }

    def load_state_dict(self, saved: Mapping[str, Any], origin: str = "checkpoint") -> None:
        """Take back what ``state_dict`` gave (``origin``, e.g. the file, names it in errors)."""
        load_net_weights(self.net, saved["net"], origin)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.scaler is not None and saved["scaler"] is not None:
            self.scaler.load_state_dict(saved["scaler"])
        self.state.load_state_dict(saved)
        self.input_checks.unreadable = self.state.unreadable_images
        if self.ema is not None:
            ema = ema_weights(saved)
            if ema is None:
                raise CheckpointError(f"checkpoint {origin}: ema_decay is set but the checkpoint has no moving average")
            self.ema.load_state_dict(ema)
        for hook in self.hooks:
            hook.load_state_dict(saved["hooks"].get(hook.name, {}))
        set_rng_state(saved["rng"], self.recorder.info)

    def _note_signal(self, signum: int) -> None:
        self.state.stop_signal = signum

    def _stop_requested(self) -> bool:
        """A signal or a stop request on any process; all ranks then stop alike."""
        state = self.state
        state.stop_signal, state.stop_reason = agreed_stop(self.fabric, state.stop_signal, state.stop_reason)
        return state.stop_signal is not None or state.stop_reason is not None
