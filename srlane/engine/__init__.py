"""Training engine: the Runner and the parts ``build_runner`` makes it from (hooks, checkpoints,
validation, optimizer and schedule, the run record)."""
from srlane.engine.build import build_runner
from srlane.engine.checkpoint import save_checkpoint
from srlane.engine.checkpointer import Checkpointer
from srlane.engine.defaults import DEFAULTS, load_experiment
from srlane.engine.ema import ModelEMA
from srlane.engine.hooks import CheckpointHook, EarlyStopHook, Hook, LoggerHook
from srlane.engine.optim import build_optimizer, build_scheduler
from srlane.engine.runner import LoopOptions, Runner
from srlane.engine.state import TrainState
from srlane.engine.validation import Validator

__all__ = [
    "DEFAULTS", "CheckpointHook", "Checkpointer", "EarlyStopHook", "Hook", "LoggerHook", "LoopOptions", "ModelEMA",
    "Runner", "TrainState", "Validator", "build_optimizer", "build_runner", "build_scheduler", "load_experiment",
    "save_checkpoint",
]
