"""Trackers through Lightning's loggers: a short training read back from MLflow (its local sqlite
store, through MlflowClient) and from the CSV file; a missing package or an unreachable server is
one line before training; a tracker failing mid-run is dropped and training goes on."""
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.engine import add_record, make_runner
from srlane.config import ConfigError
from srlane.engine.defaults import load_experiment
from srlane.engine.trackers import TrackerError, mlflow_settings
from srlane.models.weights import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "srlane_r18_synthetic.py"


def csv_rows(run: Path) -> list[dict]:
    with open(run / "csv" / "version_0" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(row["step"]), float(row[key])) for row in rows if row.get(key)]


def test_a_training_is_read_back_from_mlflow_and_csv(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = make_runner(tmp_path, loggers=["csv", "mlflow"])  # the default mlflow settings
    record = add_record(runner)
    runner.train()
    run = tmp_path / "run"
    log = (run / "log.txt").read_text()
    found = re.search(r"mlflow: tracking URI (\S+), experiment '(\S+)', run id (\w+)", log)
    uri, experiment, run_id = found.groups()
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}" and experiment == tmp_path.name  # the local default
    client = MlflowClient(tracking_uri=uri)
    mlflow_run = client.get_run(run_id)
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.info.run_name == "run"
    params = mlflow_run.data.params
    assert (params["total_iter"], params["optimizer.lr"], params["scheduler.warmup_iter"]) == ("6", "0.01", "2")
    assert params["loggers"] == "['csv', 'mlflow']"

    # every log line's numbers at its step, the same in MLflow as in the CSV; validations at steps 4, 6
    rows = csv_rows(run)
    for key in ("train/loss", "train/lr", "val/metric"):
        history = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        assert sorted(history) == series(rows, key)
    assert [step for step, _ in series(rows, "train/loss")] == [1, 2, 3, 4, 5, 6]
    assert series(rows, "val/metric") == [(step, metric) for step, _, metric, _ in record.validations]
    assert [(s, e) for s, e, _, _ in record.validations] == [(4, 2), (6, 2)]
    logged_losses = [float(v) for v in re.findall(r"step: \d+ lr: \S+ loss: (\S+)", log)]
    assert [value for _, value in series(rows, "train/loss")] == pytest.approx(logged_losses, abs=5e-5)
    assert "total_iter: 6" in (run / "csv" / "version_0" / "hparams.yaml").read_text()

    # the best checkpoint and the final results.json as artifacts, the same files
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["best.pth", "results.json"]
    folder = Path(client.download_artifacts(run_id, "", str(tmp_path / "download")))
    assert json.loads((folder / "results.json").read_text()) == json.loads((run / "results.json").read_text())
    assert (folder / "best.pth").read_bytes() == (run / "best.pth").read_bytes()


def test_the_mlflow_store_comes_from_the_config_then_the_environment_then_the_work_dir(tmp_path, monkeypatch):
    cfg = load_experiment(QUICKSTART)
    run = str(tmp_path / "srlane_r18_synthetic" / "20260101_000000")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    local = mlflow_settings(cfg, run)
    assert local == dict(tracking_uri=f"sqlite:///{tmp_path / 'srlane_r18_synthetic' / 'mlflow.db'}",
                         artifact_location=str(tmp_path / "srlane_r18_synthetic" / "mlartifacts"),
                         experiment_name="srlane_r18_synthetic", run_name="20260101_000000")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert mlflow_settings(cfg, run)["tracking_uri"] == "http://tracking.example:5000"
    assert mlflow_settings(cfg, run)["artifact_location"] is None  # the server's own
    cfg = load_experiment(QUICKSTART, ["mlflow.tracking_uri='sqlite:///other.db'", "mlflow.experiment='lanes'"])
    assert (mlflow_settings(cfg, run)["tracking_uri"], mlflow_settings(cfg, run)["experiment_name"]) == \
        ("sqlite:///other.db", "lanes")


def test_loggers_are_checked_at_load():
    assert load_experiment(QUICKSTART).loggers == ["tensorboard"]
    assert load_experiment(QUICKSTART, ['loggers=["csv","mlflow"]']).loggers == ["csv", "mlflow"]
    with pytest.raises(ConfigError, match=r"^loggers\[1\] must be one of tensorboard, csv, mlflow, wandb, got "
                                          r"'mlfow'; closest: 'mlflow'$"):
        load_experiment(QUICKSTART, ['loggers=["csv","mlfow"]'])
    with pytest.raises(ConfigError, match=r"^loggers names a tracker twice: \['csv', 'csv'\]$"):
        load_experiment(QUICKSTART, ['loggers=["csv","csv"]'])


MISSING_MLFLOW = """
import runpy, sys
sys.modules["mlflow"] = None  # the package is not installed: its import fails
sys.argv = ["main.py", *sys.argv[1:]]
runpy.run_path("main.py", run_name="__main__")
"""


def test_a_missing_tracker_package_is_one_line_before_anything_is_built(tmp_path):
    work = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", MISSING_MLFLOW, str(QUICKSTART), "--work-dir", str(work), "--set",
                           "loggers=['tensorboard','mlflow']", "dataset.data_root='/nonexistent'"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: loggers: 'mlflow' needs the mlflow package, not usable here (ModuleNotFoundError: import of mlflow "
        "halted; None in sys.modules); pip install -r requirements-trackers.txt, or remove 'mlflow' from loggers"]
    assert not work.exists()  # no run folder, no network, no data preparation


def test_an_unreachable_tracking_server_is_one_line_before_training(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with pytest.raises(TrackerError) as err:
        make_runner(tmp_path, loggers=["mlflow"], mlflow={"tracking_uri": "http://127.0.0.1:9"})
    message = str(err.value)
    assert message.startswith("loggers: 'mlflow' cannot start: MlflowException: ") and "127.0.0.1:9" in message
    assert "\n" not in message
    assert not (tmp_path / "run" / "last.pth").exists()


def test_a_tracker_failing_mid_run_is_dropped_and_training_goes_on(tmp_path):
    runner = make_runner(tmp_path, loggers=["csv", "tensorboard"])
    guard = runner.fabric.loggers[0]
    real = guard.logger.log_metrics

    def failing(metrics, step=None):
        if step >= 3:
            raise OSError("the tracker's disk is gone")
        real(metrics, step)

    guard.logger.log_metrics = failing
    runner.train()
    run = tmp_path / "run"
    assert load_checkpoint(run / "last.pth")["step"] == 6
    log = (run / "log.txt").read_text()
    warning = ("warning: tracker csv failed (logging metrics: OSError: the tracker's disk is gone); dropped, "
               "training goes on")
    assert log.count("warning: tracker") == 1 and warning in log
    assert [step for step, _ in series(csv_rows(run), "train/loss")] == [1, 2]  # nothing after the failure
    assert "validation at step 6" in log and guard.logger is None
    tensorboard = [p for p in (run / "tensorboard").iterdir() if p.name.startswith("events.out.tfevents")]
    assert tensorboard and max(p.stat().st_size for p in tensorboard) > 0  # the other tracker went on


def test_wandb_offline_needs_no_account(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    runner = make_runner(tmp_path, loggers=["wandb"])
    runner.train()
    log = (tmp_path / "run" / "log.txt").read_text()
    found = re.search(r"wandb: offline run (\w+) in (\S+); upload it with: wandb sync (\S+)", log)
    run_id, folder, synced = found.groups()
    assert folder == synced and Path(folder).parent == tmp_path / "run" / "wandb"
    assert (Path(folder) / f"run-{run_id}.wandb").is_file()
