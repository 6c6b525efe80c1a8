"""Experiment trackers: the config's ``loggers`` as Lightning logger classes, given to Fabric.

``TRACKERS`` is the table of names (``"tensorboard"``, ``"csv"``, ``"mlflow"``, ``"wandb"``): the
package each needs, how its logger is made from the config and the run folder, how its run is
opened and where it goes. ``build_trackers(cfg)`` checks the names and imports the packages before
anything is built (a missing one: one ``TrackerError`` line); each tracker is a ``GuardedTracker``,
the logger Fabric holds: ``start`` (rank 0, before training) makes the real logger and opens its
run (an unreachable server: one line), and a tracker that raises later is dropped with one warning
in the log while training goes on. The MLflow and W&B settings are the config's ``mlflow`` and
``wandb`` dicts (``DEFAULTS``); the environment's ``MLFLOW_TRACKING_URI`` and ``WANDB_MODE`` stand
when the config leaves them unset.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lightning.fabric.loggers import Logger, TensorBoardLogger

from srlane.config import Config, ConfigError, check_choice
from srlane.fileio import FULL, disk_full
from srlane.engine.hooks import Hook
from srlane.engine.state import TrainState

Log = Callable[[str], None]


class TrackerError(ConfigError):
    """A configured tracker that cannot start: its package missing, its server unreachable (one line)."""


def first_line(err: BaseException) -> str:
    """``Type: the first line of the message``."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def quiet_tensorboard_full_disk() -> None:
    """Wrap ``threading.excepthook`` (once) so that TensorBoard's writer thread meeting a full
    disk prints no traceback: GuardedTracker reports it in one line when the error reaches its
    calls. Every other thread exception goes to the hook that was there."""
    previous = threading.excepthook
    if getattr(previous, "quiet_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if (type(args.thread).__name__ == "_AsyncWriterThread" and isinstance(args.exc_value, OSError)
                and args.exc_value.errno in FULL):
            return
        previous(args)

    hook.quiet_tensorboard = True
    threading.excepthook = hook


def runs_folder(work_dir: str) -> str:
    """The folder holding the run folder (``work_dirs/<config name>``): the local MLflow store's home."""
    return os.path.dirname(os.path.abspath(work_dir))


def mlflow_settings(cfg: Config, work_dir: str) -> dict[str, Any]:
    """The MLflow logger's arguments: ``mlflow.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else a
    local sqlite store ``<runs folder>/mlflow.db`` (artifacts in ``<runs folder>/mlartifacts``);
    ``mlflow.experiment`` (default: the runs folder's name, the config's name), ``mlflow.run_name``
    (default: the run folder's name)."""
    settings = cfg.get("mlflow") or {}
    uri = settings.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    artifacts = settings.get("artifact_location")
    if not uri:
        uri = f"sqlite:///{os.path.join(runs_folder(work_dir), 'mlflow.db')}"
        artifacts = artifacts or os.path.join(runs_folder(work_dir), "mlartifacts")
    return dict(tracking_uri=uri, artifact_location=artifacts,
                experiment_name=settings.get("experiment") or os.path.basename(runs_folder(work_dir)),
                run_name=settings.get("run_name") or os.path.basename(os.path.abspath(work_dir)))


def _tensorboard(cfg: Config, work_dir: str) -> Logger:
    quiet_tensorboard_full_disk()
    return TensorBoardLogger(root_dir=work_dir, name="tensorboard", version="", default_hp_metric=False)


def _csv(cfg: Config, work_dir: str) -> Logger:
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(save_dir=work_dir, name="csv", flush_logs_every_n_steps=1)


def _mlflow(cfg: Config, work_dir: str) -> Logger:
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(**mlflow_settings(cfg, work_dir))


def _wandb(cfg: Config, work_dir: str) -> Logger:
    from lightning.pytorch.loggers import WandbLogger

    settings = cfg.get("wandb") or {}
    mode = settings.get("mode") or os.environ.get("WANDB_MODE") or "offline"
    return WandbLogger(project=settings.get("project") or os.path.basename(runs_folder(work_dir)),
                       name=settings.get("name") or os.path.basename(os.path.abspath(work_dir)),
                       save_dir=work_dir, mode=mode)


def _open_folder(logger: Logger) -> str:
    return f"{logger.name}: {logger.log_dir}"


def _open_mlflow(logger: Logger) -> str:
    import mlflow

    run_id = logger.run_id  # creates the experiment (if new) and the run: contacts the tracking server
    experiment = logger.experiment.get_experiment(logger.experiment_id)
    return f"mlflow: tracking URI {mlflow.get_tracking_uri()}, experiment {experiment.name!r}, run id {run_id}"


def _open_wandb(logger: Logger) -> str:
    run = logger.experiment  # wandb.init
    mode = "offline" if run.offline else "online"
    sync = f"; upload it with: wandb sync {os.path.dirname(run.dir)}" if mode == "offline" else f"; {run.url}"
    return f"wandb: {mode} run {run.id} in {os.path.dirname(run.dir)}{sync}"


def _mlflow_artifact(logger: Logger, path: str) -> None:
    logger.experiment.log_artifact(logger.run_id, path)


def _finish_wandb(logger: Logger, status: str) -> None:
    logger.finalize(status)
    logger.experiment.finish(exit_code=0 if status == "success" else 1)


def _finalize(logger: Logger, status: str) -> None:
    logger.finalize(status)


@dataclasses.dataclass(frozen=True)
class TrackerKind:
    """One tracker of the table: the module it imports (None: nothing beyond Lightning), how to
    install it, its logger from ``(cfg, run folder)``, how its run opens (returns the log line
    saying where it goes), how files go to it as artifacts (None: they do not) and how it ends."""

    module: str | None
    install: str
    make: Callable[[Config, str], Logger]
    open: Callable[[Logger], str] = _open_folder
    artifact: Callable[[Logger, str], None] | None = None
    finish: Callable[[Logger, str], None] = _finalize


TRACKERS: dict[str, TrackerKind] = {
    "tensorboard": TrackerKind("tensorboard", "pip install -r requirements.txt", _tensorboard),
    "csv": TrackerKind(None, "", _csv),
    "mlflow": TrackerKind("mlflow", "pip install -r requirements-trackers.txt", _mlflow, _open_mlflow,
                          artifact=_mlflow_artifact),
    "wandb": TrackerKind("wandb", "pip install wandb", _wandb, _open_wandb, finish=_finish_wandb),
}


def check_loggers(loggers: Any) -> None:
    """ConfigError (one line) unless ``loggers`` is a list of distinct names of ``TRACKERS``."""
    if not isinstance(loggers, (list, tuple)):
        raise ConfigError(f"loggers should be a list of tracker names ({', '.join(TRACKERS)}), got {loggers!r}")
    for index, name in enumerate(loggers):
        check_choice(f"loggers[{index}]", name, tuple(TRACKERS))
    if len(set(loggers)) < len(loggers):
        raise ConfigError(f"loggers names a tracker twice: {list(loggers)!r}")


def full_disk_cause(err: BaseException) -> OSError | None:
    """The full-disk or quota OSError behind ``err`` (itself or a cause: Lightning's TensorBoard
    logger raises it as a ValueError's), else None."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in FULL:
            return err
        err = err.__cause__ or err.__context__
    return None


class GuardedTracker(Logger):
    """One configured tracker as Fabric holds it: the real logger is made and its run opened by
    ``start`` (rank 0 only; elsewhere every call does nothing). A call that raises drops the
    tracker with one warning line (``log``); the run goes on without it."""

    def __init__(self, tracker: str, kind: TrackerKind, cfg: Config) -> None:
        super().__init__()
        self.tracker, self.kind, self.cfg = tracker, kind, cfg
        self.logger: Logger | None = None
        self.log: Log = print
        self.work_dir = ""

    @property
    def name(self) -> str:
        return self.tracker

    @property
    def version(self) -> str | None:
        return None

    def start(self, work_dir: str, log: Log) -> None:
        """Make the logger for the run folder ``work_dir`` and open its run; TrackerError (one
        line) when it cannot (a server unreachable, a bad setting)."""
        self.log, self.work_dir = log, work_dir
        try:
            self.logger = self.kind.make(self.cfg, work_dir)
            log(self.kind.open(self.logger))
        except Exception as err:
            self.logger = None
            raise TrackerError(f"loggers: {self.tracker!r} cannot start: {first_line(err)}") from None

    def _call(self, what: str, call: Callable[[Logger], Any]) -> None:
        if self.logger is None:
            return
        try:
            call(self.logger)
        except Exception as err:
            full = full_disk_cause(err)
            if full is not None:  # not the tracker's fault: the run cannot write anything either
                raise disk_full(full.errno, os.path.normpath(getattr(self.logger, "log_dir", None) or self.work_dir),
                                f"tracker {self.tracker} was {what}; what it wrote before is in it") from None
            self.logger = None
            self.log(f"warning: tracker {self.tracker} failed ({what}: {first_line(err)}); dropped, training goes on")

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._call("logging metrics", lambda logger: logger.log_metrics(dict(metrics), step))

    def log_hyperparams(self, params: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        self._call("logging hyperparameters", lambda logger: logger.log_hyperparams(dict(params)))

    def log_artifact(self, path: str) -> None:
        """``path`` as an artifact of the run, where the tracker keeps artifacts."""
        if self.kind.artifact is not None:
            self._call(f"logging {os.path.basename(path)}", lambda logger: self.kind.artifact(logger, path))

    def save(self) -> None:
        self._call("saving", lambda logger: logger.save())

    def finalize(self, status: str) -> None:
        self._call("finishing", lambda logger: self.kind.finish(logger, status))
        self.logger = None


def tensorboard_writer(trackers: Sequence[Logger]) -> Any | None:
    """The SummaryWriter of the started TensorBoard tracker among ``trackers`` (for pictures);
    None without one, on ranks other than 0, or after it was dropped."""
    for tracker in trackers:
        if isinstance(tracker, GuardedTracker) and tracker.tracker == "tensorboard" and tracker.logger is not None:
            return tracker.logger.experiment
    return None


def build_trackers(cfg: Config) -> list[GuardedTracker]:
    """The trackers of ``cfg.loggers``, their packages imported now: a missing one is one
    TrackerError line, before anything is built."""
    check_loggers(cfg.loggers)
    for name in cfg.loggers:
        kind = TRACKERS[name]
        if kind.module is None:
            continue
        try:
            importlib.import_module(kind.module)
        except ImportError as err:
            raise TrackerError(f"loggers: {name!r} needs the {kind.module} package, not usable here "
                               f"({first_line(err)}); {kind.install}, or remove {name!r} from loggers") from None
    return [GuardedTracker(name, TRACKERS[name], cfg) for name in cfg.loggers]


def start_trackers(trackers: Sequence[GuardedTracker], work_dir: str, log: Log, params: Mapping[str, Any]) -> None:
    """On rank 0, before training: open each tracker's run in ``work_dir`` (its line in the log)
    and give it ``params`` (the flattened config) once."""
    for tracker in trackers:
        tracker.start(work_dir, log)
        tracker.log_hyperparams(params)


class ArtifactHook(Hook):
    """When training ends: ``paths`` (those that exist: the best checkpoint, results.json) to the
    trackers that keep artifacts (MLflow)."""

    name = "artifacts"

    def __init__(self, trackers: Sequence[GuardedTracker], paths: Sequence[str]) -> None:
        self.trackers, self.paths = list(trackers), list(paths)

    def after_train(self, state: TrainState) -> None:
        for path in filter(os.path.isfile, self.paths):
            for tracker in self.trackers:
                tracker.log_artifact(path)
