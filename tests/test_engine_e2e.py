"""End to end with the real network, data pipeline and metric on a tiny synthetic CULane set."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import main
from helpers.engine import N_TEST, experiment  # noqa: F401 (the fixture: a tiny synthetic set, trained 4 steps on CPU)
from helpers.disk import small_disk
from srlane.data.records import DataFormatError
from srlane.fileio import DiskFullError
from srlane.models.weights import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_validate_only_reproduces_the_logged_metric_and_views_every_image(experiment):
    best = load_checkpoint(experiment / "full" / "best.pth")
    assert best["step"] == 4
    metrics = main.main([str(experiment / "exp.py"), "--validate-only", "--view", "--load-from",
                         str(experiment / "full" / "best.pth"), "--work-dir", str(experiment / "eval")])
    assert metrics == best["metrics"]
    assert best["metrics"]["0.5"]["tp"] + best["metrics"]["0.5"]["fp"] > 0  # lanes were predicted and scored
    logged = (experiment / "full" / "log.txt").read_text().split("validation at step 4:\n")[1]
    table = (experiment / "eval" / "log.txt").read_text().split("best.pth:\n")[1]
    assert table.strip().splitlines() == logged.strip().splitlines()[: len(table.strip().splitlines())]
    pictures = list((experiment / "eval" / "visualization").rglob("*.jpg"))
    assert len(pictures) == N_TEST
    assert f"wrote {N_TEST} pictures to" in (experiment / "eval" / "log.txt").read_text()


HANG_AFTER_STEP_3 = """
import pathlib, sys, time
import main
from srlane.engine.build import build_runner
from srlane.engine.hooks import Hook

class HangAfterStep3(Hook):
    def after_step(self, state):
        if state.step == 3:
            pathlib.Path(sys.argv[1]).write_text("step 3 done")
            time.sleep(600)

if __name__ == "__main__":
    main.build_runner = lambda *args, **kwargs: build_runner(*args, hooks=[HangAfterStep3()], **kwargs)
    main.main(sys.argv[2:])
"""


def test_validation_runs_the_network_as_the_inference_options_say(experiment, tmp_path, monkeypatch):
    """``inference`` reaches validation: BatchNorm folded into NHWC convolutions scores exactly as
    the plain network; a bad value is one line before anything runs."""
    import srlane.engine.validation as validation_module

    prepared = []
    real = validation_module.prepare_for_inference
    monkeypatch.setattr(validation_module, "prepare_for_inference", lambda *a: prepared.append(a[1]) or real(*a))
    common = [str(experiment / "exp.py"), "--validate-only", "--load-from", str(experiment / "full" / "best.pth")]
    plain = main.main(common + ["--work-dir", str(tmp_path / "plain"), "--set", "inference.fold_bn=False",
                                "inference.channels_last=False"])
    folded = main.main(common + ["--work-dir", str(tmp_path / "folded"), "--set", "inference.fold_bn=True",
                                 "inference.channels_last=True"])
    measured = main.main(common + ["--work-dir", str(tmp_path / "measured")])  # the default: "auto", measured
    assert folded == plain == measured
    assert [(o.fold_bn, o.channels_last) for o in prepared] == [(False, False), (True, True), ("auto", "auto")]
    assert "autotune inference: chose " in (tmp_path / "measured" / "log.txt").read_text()
    done = subprocess.run([sys.executable, "main.py", *common, "--work-dir", str(tmp_path / "bad"), "--set",
                           "inference.precision='fp64'"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr
    assert "inference.precision must be one of fp32, fp16, bf16, got 'fp64'; closest: 'fp16'" in done.stderr


def test_kill9_between_checkpoints_then_resume_is_bitwise_exact(experiment, tmp_path):
    """main.py killed with SIGKILL after step 3 (last.pth holds step 2): --resume ends with the
    weights and metric of the uninterrupted run. The run waits at step 3 to be killed, so the
    kill lands there on any machine, however fast."""
    work, marker, script = experiment / "killed", tmp_path / "at_step_3", tmp_path / "hang.py"
    script.write_text(HANG_AFTER_STEP_3)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(marker), str(experiment / "exp.py"), "--work-dir", str(work)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before step 3"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(work / "last.pth")["step"] == 2
    main.main([str(experiment / "exp.py"), "--resume", str(work / "last.pth")])
    full, resumed = load_checkpoint(experiment / "full" / "last.pth"), load_checkpoint(work / "last.pth")
    assert resumed["step"] == 4
    assert all(torch.equal(full["net"][k], resumed["net"][k]) for k in full["net"])
    assert resumed["metrics"] == full["metrics"]


def test_a_full_disk_at_a_checkpoint_is_one_line_and_resume_continues(experiment, tmp_path):
    """The run folder on a disk with room for one checkpoint: the step-4 save finds it full, the
    run stops with one line naming last.pth, and last.pth of step 2 stays; once there is room,
    --resume ends with the uninterrupted run's weights."""
    size = os.path.getsize(experiment / "full" / "last.pth")
    disk = tmp_path / "disk"
    with small_disk(disk, int(size * 1.6)) as resize:
        work = disk / "run"
        with pytest.raises(DiskFullError) as err:
            main.main([str(experiment / "exp.py"), "--work-dir", str(work)])
        assert str(err.value).startswith(f"cannot write {work / 'last.pth'}: no space left on device (")
        assert "\n" not in str(err.value) and load_checkpoint(work / "last.pth")["step"] == 2
        resize(size * 5)
        main.main([str(experiment / "exp.py"), "--resume", str(work / "last.pth")])
        full, resumed = load_checkpoint(experiment / "full" / "last.pth"), load_checkpoint(work / "last.pth")
    assert resumed["step"] == 4 and all(torch.equal(full["net"][k], resumed["net"][k]) for k in full["net"])


@pytest.fixture
def damaged(experiment, tmp_path):
    """A copy of the set whose first training image is not a JPEG and whose second is 640x360
    (its lanes file empty); returns (config, data root)."""
    root = tmp_path / "data"
    shutil.copytree(experiment / "data", root)
    train = root / "driver_synth_train" / "clip_0000.MP4"
    (train / "00000.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    cv2.imwrite(str(train / "00030.jpg"), np.full((360, 640, 3), 90, np.uint8))
    (train / "00030.lines.txt").write_text("")
    (train / "00030.lines.categories.txt").unlink()  # its lanes' kinds went with them
    cfg = tmp_path / "damaged.py"
    cfg.write_text(f"_base_ = [{str(experiment / 'exp.py')!r}]\n"
                   f"dataset = dict(data_root={str(root)!r}, generate=None, cache_dir={str(tmp_path / 'cache')!r})\n")
    return cfg, root


def test_unreadable_training_image_is_replaced_counted_and_limited(damaged, tmp_path):
    cfg, root = damaged
    bad = root / "driver_synth_train" / "clip_0000.MP4" / "00000.jpg"
    main.main([str(cfg), "--work-dir", str(tmp_path / "run")])  # 4 steps of 2: each training image once
    assert load_checkpoint(tmp_path / "run" / "last.pth")["step"] == 4
    log = (tmp_path / "run" / "log.txt").read_text()
    assert log.count(f"cannot read training image {bad}: replaced by the next image in the list (1 so far, at most 10)") == 1
    assert "step: 4 " in log and log.rstrip().count("unreadable images replaced: 1") >= 1
    assert log.count("warning: ") == 1 and "00030.jpg is 640x360, the config expects 1640x590" in log
    out = subprocess.run([sys.executable, "main.py", str(cfg), "--work-dir", str(tmp_path / "strict"),
                          "--set", "max_unreadable_images=0"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: cannot read this training image, unreadable image number 1 of the run "
        "(max_unreadable_images=0); repair or remove such images, or raise max_unreadable_images")


def test_unreadable_validation_image_stops_with_one_line(damaged, tmp_path):
    cfg, root = damaged
    bad = root / "driver_synth_test" / "clip_0000.MP4" / "00060.jpg"
    bad.write_bytes(b"")
    with pytest.raises(DataFormatError) as info:
        main.main([str(cfg), "--validate-only", "--work-dir", str(tmp_path / "eval")])
    assert str(info.value) == (f"{bad}: cannot read this validation image (validation scores every image of the "
                               "split); repair it or remove it from the list")


def test_curvelanes_recipe_trains_and_validates_on_the_synthetic_curvelanes_set(tmp_path):
    """configs/srlane_r18_curvelanes.py with --set, as the README runs it, on 6 + 3 generated
    scenes of the three sizes: 4 iterations, then validation with the CurveLanes F1."""
    root = tmp_path / "curvelanes"
    out = main.main([str(ROOT / "configs" / "srlane_r18_curvelanes.py"), "--work-dir", str(tmp_path / "run"), "--set",
                     f"dataset.data_root={str(root)!r}", "dataset.generate.train=6", "dataset.generate.test=3",
                     "dataset.generate.seed=0", f"dataset.cache_dir={str(tmp_path / 'cache')!r}", "accelerator='cpu'",
                     "img_w=256", "img_h=96", "batch_size=2", "workers=0", "total_iter=4", "scheduler.warmup_iter=2", "optimizer.lr=1e-3", "eval_ep=100",
                     "log_interval=1", "precision='32-true'", "model.backbone.pretrained=False",
                     "test_parameters.conf_threshold=0.0"])
    assert out is None
    assert sorted(p.name for p in (root / "valid" / "images").iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg"]
    last = load_checkpoint(tmp_path / "run" / "last.pth")
    assert last["step"] == 4
    metrics = last["metrics"]
    assert set(metrics) >= {"tp", "fp", "fn", "precision", "recall", "f1", "metric"}
    assert metrics["tp"] + metrics["fn"] == sum(1 for _ in _valid_lanes(root)) and metrics["tp"] + metrics["fp"] > 0
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "validation at step 4:" in log and "generating the synthetic curvelanes set (6 train, 3 test)" in log


def _valid_lanes(root):
    """Every labelled lane of the synthetic valid split (each counts for the CurveLanes metric)."""
    from srlane.benchmarks.curvelanes import read_lines_json

    for label in sorted((root / "valid" / "labels").iterdir()):
        yield from read_lines_json(label)
