"""End to end with the real network, data pipeline and metric on a tiny synthetic CULane set."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import main
from srlane.data import synthetic
from srlane.engine.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, N_TEST = 8, 4


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A 256x96 experiment config over a generated set of 8 train and 4 test scenes."""
    folder = tmp_path_factory.mktemp("e2e")
    synthetic.generate(folder / "data", "culane", N_TRAIN, N_TEST, seed=0, progress=False)
    cfg = folder / "exp.py"
    cfg.write_text(
        f"_base_ = [{str(ROOT / 'configs' / 'srlane_r18_synthetic.py')!r}]\n"
        "img_w = 256\nimg_h = 96\n"
        f"dataset = dict(data_root={str(folder / 'data')!r}, generate=dict(train={N_TRAIN}, test={N_TEST}, seed=0))\n"
        "batch_size = 2\nworkers = 0\ntotal_iter = 4\neval_ep = 100\nsave_interval = 2\nlog_interval = 1\n"
        "scheduler = dict(type='warmup_cosine', warmup_iter=2)\n"
        "test_parameters = dict(conf_threshold=0.0)  # an untrained net still predicts lanes to score\n"
    )
    main.main([str(cfg), "--work-dir", str(folder / "full")])
    return folder


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


def test_kill9_between_checkpoints_then_resume_is_bitwise_exact(experiment):
    work = experiment / "killed"
    proc = subprocess.Popen([sys.executable, "main.py", str(experiment / "exp.py"), "--work-dir", str(work)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while "step: 3 " not in (work / "log.txt").read_text() if (work / "log.txt").exists() else True:
        assert proc.poll() is None and time.time() < deadline, "training ended before step 3"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(work / "last.pth")["step"] == 2
    main.main([str(experiment / "exp.py"), "--resume", str(work / "last.pth")])
    full, resumed = load_checkpoint(experiment / "full" / "last.pth"), load_checkpoint(work / "last.pth")
    assert resumed["step"] == 4
    assert all(torch.equal(full["net"][k], resumed["net"][k]) for k in full["net"])
    assert resumed["metrics"] == full["metrics"]
