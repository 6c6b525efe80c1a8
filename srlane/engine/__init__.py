"""Training engine: the Runner, its hooks, checkpoints, optimizer and schedule, and the run record."""
from srlane.engine.checkpoint import save_checkpoint
from srlane.engine.defaults import DEFAULTS, load_experiment
from srlane.engine.ema import ModelEMA
from srlane.engine.hooks import CheckpointHook, EarlyStopHook, Hook, LoggerHook
from srlane.engine.optim import build_optimizer, build_scheduler
from srlane.engine.runner import Runner

__all__ = [
    "DEFAULTS", "CheckpointHook", "EarlyStopHook", "Hook", "LoggerHook", "ModelEMA", "Runner",
    "build_optimizer", "build_scheduler", "load_experiment", "save_checkpoint",
]
