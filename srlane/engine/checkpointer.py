"""A run's checkpoint files: their names (``last.pth``, ``best.pth``, ``iter_<step>.pth``), how many
numbered ones stay, writing them atomically on rank 0, and reading them back to resume a run or
to start from their weights (``--load-from``)."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from torch import nn

from srlane.config import ConfigError
from srlane.engine.checkpoint import ITER_CHECKPOINT, save_checkpoint
from srlane.inference.model import check_checkpoint_config, checked_inference_weights
from srlane.models.weights import CheckpointError, load_checkpoint, load_net_weights

LAST, BEST = "last.pth", "best.pth"


def iter_name(step: int) -> str:
    """The numbered checkpoint of ``step``."""
    return f"iter_{step}.pth"


class Checkpointable(Protocol):
    """What a checkpoint is taken from and given back to (the Runner)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: Mapping[str, Any], origin: str) -> None: ...


class Checkpointer:
    """Args:
        folder: the run folder the files go to.
        is_main: whether this process writes them (rank 0); every process reads.
        config: the run's config: saved in every file (key ``config``), and compared with a
            file's own by ``load_weights``.
        log: where loads are reported.
        keep_iter: K > 0: every periodic save also writes ``iter_<step>.pth``, the newest K kept.

    What a file holds is the ``state_dict`` of the source ``attach`` names (the Runner, made
    after the hooks that hold this checkpointer); ``resume`` gives it back to the same source.
    """

    def __init__(self, folder: str, is_main: bool, config: Mapping[str, Any], log: Callable[[str], None],
                 keep_iter: int = 0) -> None:
        if not isinstance(keep_iter, int) or isinstance(keep_iter, bool) or keep_iter < 0:
            raise ConfigError(f"keep_iter_checkpoints should be a whole number >= 0 (0: off), got {keep_iter!r}")
        self.folder, self.is_main, self.config, self.log, self.keep_iter = folder, is_main, dict(config), log, keep_iter
        self.source: Checkpointable | None = None

    def attach(self, source: Checkpointable) -> None:
        """What the files are taken from and given back to from now on."""
        self.source = source

    def save(self, *names: str) -> None:
        """Write ``<folder>/<name>`` for each name, one state for all, on rank 0."""
        if not self.is_main:
            return
        state = {**self.source.state_dict(), "config": self.config}
        for name in names:
            save_checkpoint(state, os.path.join(self.folder, name))

    def save_periodic(self, step: int) -> None:
        """``last.pth``; with ``keep_iter`` also ``iter_<step>.pth``, removing the numbered files of
        steps up to ``step`` but the newest ``keep_iter`` (files of later steps, left by a run
        resumed from an earlier checkpoint, stay until overwritten)."""
        if not self.keep_iter:
            self.save(LAST)
            return
        self.save(LAST, iter_name(step))
        if self.is_main:
            steps = sorted(int(m.group(1)) for m in map(ITER_CHECKPOINT.fullmatch, os.listdir(self.folder)) if m)
            for old in [s for s in steps if s <= step][:-self.keep_iter]:
                os.remove(os.path.join(self.folder, iter_name(old)))

    def resume(self, path: str) -> None:
        """Give the source everything ``path`` saved (``--resume``); a file of weights only is
        one ``CheckpointError``, a run of another network geometry one ``ConfigError``."""
        state = load_checkpoint(path)
        if "optimizer" not in state:
            raise CheckpointError(f"checkpoint {path}: holds only weights; use --load-from, not --resume")
        check_checkpoint_config(self.config, state.get("config"), path, self.log)
        self.source.load_state_dict(state, path)
        self.log(f"resumed from {path} at step {state['step']} (epoch {state['epoch']})")

    def load_weights(self, net: nn.Module, path: str) -> None:
        """``--load-from``: the file's weights (its moving average when it has one) into ``net``,
        once its config agrees with this one on the network's geometry (one ``ConfigError`` else)."""
        load_net_weights(net, checked_inference_weights(self.config, path, self.log), path)
        self.log(f"loaded weights from {path}")
