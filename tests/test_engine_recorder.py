import contextlib
import shutil

import pytest
import torch
from helpers.disk import small_disk

from srlane.config import Config
from srlane.engine.trackers import build_trackers
from srlane.fileio import DiskFullError
from srlane.engine.recorder import Recorder, SmoothedValue, flat_metrics, format_metrics, window_means


def counts(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = 2 * p * r / (p + r) if p and r else None
    return {"0.5": {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f1}}


def test_culane_table_has_f1_per_category_and_cross_as_fp():
    metrics = {**counts(6, 2, 2), "metric": 0.75,
               "categories": {"normal": counts(6, 1, 2), "cross": counts(0, 1, 0)}}
    lines = format_metrics(metrics).splitlines()
    assert lines[0].split() == ["category", "F1", "(%)", "precision", "recall", "TP", "FP", "FN"]
    assert lines[1].split() == ["normal", "80.00", "0.8571", "0.7500", "6", "1", "2"]
    assert lines[2].split() == ["cross", "FP:", "1", "-", "-", "0", "1", "0"]
    assert lines[3].split() == ["total", "75.00", "0.7500", "0.7500", "6", "2", "2"]
    assert lines[4] == "  metric: 0.75"
    assert len({len(line) for line in lines[:4]}) == 1  # aligned columns


def test_flat_table_for_tusimple_and_tensorboard_names():
    metrics = {"accuracy": 0.9512, "fp": 0.05, "fn": 0.02, "f1": None, "metric": 0.9512}
    assert format_metrics(metrics).splitlines() == [
        "  accuracy      0.9512", "  fp            0.0500", "  fn            0.0200", "  metric        0.9512"]
    assert flat_metrics({"a": {"b": 1, "c": None}, "d": 2.5}) == {"a/b": 1, "d": 2.5}


def test_smoothed_value_window():
    meter = SmoothedValue(window=2)
    for v in (1.0, 2.0, 4.0):
        meter.update(v)
    assert meter.avg == 3.0


def test_tensor_losses_are_averaged_over_the_window_in_the_log_line(tmp_path):
    recorder = Recorder(str(tmp_path), True, total_iter=10)
    for a, b in [(1.0, 10.0), (2.0, 20.0), (4.0, 60.0)]:
        recorder.update({"loss": torch.tensor(a), "cls": torch.tensor(b)}, 0.5, 1.0)
    assert window_means(recorder.losses) == {"loss": 7 / 3, "cls": 30.0}
    recorder.log_train(epoch=0, step=3, lr=0.001, counts={"skipped (non-finite loss)": 0})
    recorder.close()
    line = (tmp_path / "log.txt").read_text()
    assert "step: 3 lr: 0.001000 loss: 2.3333 cls: 30.0000 data: 0.5000s batch: 1.0000s eta: 0:00:07" in line


def _fill(folder):
    """Take every byte left on ``folder``'s disk."""
    with open(folder / "filler", "wb") as handle:
        with contextlib.suppress(OSError):
            handle.write(b"x" * shutil.disk_usage(folder).free)
            handle.flush()


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # no thread's traceback either
def test_a_full_disk_under_log_txt_and_tensorboard_is_one_line_each(tmp_path):
    disk = tmp_path / "disk"
    with small_disk(disk, 128 * 1024):
        recorder = Recorder(str(disk / "run"), True, 10)
        (tensorboard,) = build_trackers(Config({"loggers": ["tensorboard"]}))
        tensorboard.start(str(disk / "run"), recorder.info)
        recorder.info("before the disk is full")
        tensorboard.log_metrics({"train/loss": 1.0}, 0)
        _fill(disk)
        with pytest.raises(DiskFullError, match=r"^cannot write .*run/log\.txt: no space left on device \(0 bytes "
                                                r"free in .*\); the log lines before this one are in it$"):
            recorder.info("x" * 8192)
        with pytest.raises(DiskFullError, match=r"^cannot write .*run/tensorboard: no space left on device .*; "
                                                r"tracker tensorboard was (logging metrics|finishing); what it wrote "
                                                r"before is in it$"):
            for step in range(1, 2000):  # TensorBoard's writer thread meets the full disk at a flush
                tensorboard.log_metrics({"train/loss": float(step)}, step)
            tensorboard.finalize("success")
        assert (disk / "run" / "log.txt").read_text().count("before the disk is full") == 1
