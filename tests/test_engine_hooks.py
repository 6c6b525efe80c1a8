"""The standard hooks on the stand-in of test_engine_runner: early stopping (a metric scripted per
step), numbered checkpoints, and stop requests agreed by all processes under DDP."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from srlane.config import ConfigError
from srlane.models.weights import load_checkpoint
from srlane.engine.defaults import load_experiment
from srlane.engine.hooks import EarlyStopHook
from srlane.engine.runner import Runner
from test_engine_runner import Interrupt, Record, make_cfg, make_runner, toy_parts, weights

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# 8 images at batch 4: 2 steps per epoch; eval_ep=1 validates at steps 2, 4, 6, ... and at the end.
SCHEDULE = dict(total_iter=20, eval_ep=1, save_interval=2)
# best 0.3 at step 4; then 0.2, 0.3 (not higher), 0.25: the third validation without improvement is at step 10.
# A run that forgot the count on resume would take 0.3 at step 8 as its first best and stop at step 14.
PLATEAU = {2: 0.1, 4: 0.3, 6: 0.2, 8: 0.3, 10: 0.25, 12: 0.2, 14: 0.1, 16: 0.1, 18: 0.1, 20: 0.1}


class ScriptedBenchmark:
    """The metric of a validation is ``by_step[step]`` (the runner's step when it validates)."""

    def __init__(self, by_step):
        self.by_step, self.runner = by_step, None

    def evaluator(self, records):
        return lambda predictions: {"metric": self.by_step[self.runner.step], "count": len(predictions)}


def scripted_runner(tmp_path, by_step, name="run", hooks=(), gpus=(0,), **overrides):
    torch.manual_seed(123)
    cfg = make_cfg(**{**SCHEDULE, **overrides})
    benchmark = ScriptedBenchmark(by_step)
    runner = Runner(cfg, str(tmp_path / name), gpus=gpus, hooks=hooks, **{**toy_parts(cfg), "benchmark": benchmark})
    benchmark.runner = runner
    return runner


def validated_steps(record):
    return [step for step, _, _, _ in record.validations]


def test_early_stop_after_patience_validations_without_improvement(tmp_path):
    record = Record()
    runner = scripted_runner(tmp_path, PLATEAU, hooks=[record], early_stop=dict(patience=3, min_delta=0.0))
    runner.train()  # returns: no SystemExit
    assert runner.step == 10 and runner.stop_reason.startswith("early stop")
    assert validated_steps(record) == [2, 4, 6, 8, 10]  # step 10 validated once, not again at the end
    last = load_checkpoint(tmp_path / "run" / "last.pth")
    assert last["step"] == 10 and last["hooks"]["early_stop"] == {"best": 0.3, "best_step": 4, "bad": 3}
    best = load_checkpoint(tmp_path / "run" / "best.pth")
    assert best["step"] == 4 and best["hooks"]["early_stop"] == {"best": 0.3, "best_step": 4, "bad": 0}
    log = (tmp_path / "run" / "log.txt").read_text()
    assert ("early stop: no improvement of the metric by more than 0 in 3 validations (best 0.3000 at step 4); "
            "stopped after iteration 10, saved last.pth") in log
    assert log.count("early stop") == 1 and "stopped by" not in log


def test_min_delta_is_the_improvement_that_counts(tmp_path):
    rising = {2: 0.1, 4: 0.14, 6: 0.2, 8: 0.24, 10: 0.25, **{s: 0.3 + s / 100 for s in range(12, 21, 2)}}
    record = Record()
    runner = scripted_runner(tmp_path, rising, hooks=[record], early_stop=dict(patience=2, min_delta=0.05))
    runner.train()
    # 0.14 is not above 0.1 + 0.05 (1), 0.2 is (best, 0), 0.24 and 0.25 are not above 0.25 (1, 2): stop
    assert runner.step == 10 and validated_steps(record) == [2, 4, 6, 8, 10]
    assert "more than 0.05 in 2 validations (best 0.2000 at step 6)" in (tmp_path / "run" / "log.txt").read_text()
    every_rise_counts = scripted_runner(tmp_path, rising, name="no_delta", early_stop=dict(patience=2))
    every_rise_counts.train()
    assert every_rise_counts.step == 20 and every_rise_counts.stop_reason is None


def test_no_stop_asked_at_the_last_validation(tmp_path):
    record = Record()
    runner = scripted_runner(tmp_path, PLATEAU, hooks=[record], total_iter=10, early_stop=dict(patience=3))
    runner.train()
    assert runner.step == 10 and validated_steps(record) == [2, 4, 6, 8, 10] and runner.stop_reason is None
    assert "early stop" not in (tmp_path / "run" / "log.txt").read_text()
    assert load_checkpoint(tmp_path / "run" / "last.pth")["hooks"]["early_stop"]["bad"] == 3


def test_resumed_run_counts_on_and_stops_where_an_uninterrupted_one_does(tmp_path):
    scripted_runner(tmp_path, PLATEAU, name="full", early_stop=dict(patience=3)).train()
    cut = scripted_runner(tmp_path, PLATEAU, name="cut", hooks=[Interrupt(7, signal.SIGTERM)],
                          early_stop=dict(patience=3))
    with pytest.raises(SystemExit):
        cut.train()
    saved = load_checkpoint(tmp_path / "cut" / "last.pth")
    assert saved["step"] == 7 and saved["hooks"]["early_stop"] == {"best": 0.3, "best_step": 4, "bad": 1}
    record = Record()
    resumed = scripted_runner(tmp_path, PLATEAU, name="cut", hooks=[record], early_stop=dict(patience=3))
    resumed.resume(str(tmp_path / "cut" / "last.pth"))
    resumed.train()
    assert resumed.step == 10 and validated_steps(record) == [8, 10]
    full, cut_last = load_checkpoint(tmp_path / "full" / "last.pth"), load_checkpoint(tmp_path / "cut" / "last.pth")
    assert cut_last["step"] == full["step"] == 10 and cut_last["hooks"]["early_stop"] == full["hooks"]["early_stop"]
    assert all(torch.equal(full["net"][k], cut_last["net"][k]) for k in full["net"])


def test_resuming_a_run_that_stopped_early(tmp_path):
    scripted_runner(tmp_path, PLATEAU, early_stop=dict(patience=3)).train()
    stopped = weights(tmp_path / "run" / "last.pth")
    record = Record()
    again = scripted_runner(tmp_path, PLATEAU, hooks=[record], early_stop=dict(patience=3))
    again.resume(str(tmp_path / "run" / "last.pth"))
    again.train()  # stops at once: no step, no validation
    assert again.step == 10 and record.validations == []
    assert all(torch.equal(v, stopped[k]) for k, v in weights(tmp_path / "run" / "last.pth").items())
    assert "resumed a run that had stopped early (raise early_stop.patience to go on)" in \
        (tmp_path / "run" / "log.txt").read_text()
    patient = scripted_runner(tmp_path, PLATEAU, hooks=[record], early_stop=dict(patience=5))
    patient.resume(str(tmp_path / "run" / "last.pth"))
    patient.train()  # 0.2 at step 12 and 0.1 at step 14 make five
    assert patient.step == 14 and validated_steps(record) == [12, 14]


def test_early_stop_config_is_checked():
    assert EarlyStopHook.from_config({"patience": 2}).min_delta == 0.0
    for spec, message in [({"patience": 0}, "patience should be a whole number >= 1, got 0"),
                          ({"patience": 2.5}, "patience should be a whole number >= 1, got 2.5"),
                          ({"patience": 2, "min_delta": -0.1}, "min_delta should be a number >= 0, got -0.1"),
                          ({"patiance": 2}, r"early_stop should be dict\(patience=N, min_delta=d\)"),
                          (3, r"early_stop should be dict\(patience=N, min_delta=d\) \(min_delta optional\), got 3")]:
        with pytest.raises(ConfigError, match=message):
            EarlyStopHook.from_config(spec)
    cfg = load_experiment(ROOT / "configs" / "srlane_r18_synthetic.py",
                          ["early_stop.patience=4", "early_stop.min_delta=0.01", "keep_iter_checkpoints=3"])
    assert cfg.early_stop == {"patience": 4, "min_delta": 0.01} and cfg.keep_iter_checkpoints == 3
    assert load_experiment(ROOT / "configs" / "srlane_r18_synthetic.py").early_stop is None
    with pytest.raises(ConfigError, match="'keep_iter_checkpoints' should be an int"):
        load_experiment(ROOT / "configs" / "srlane_r18_synthetic.py", ["keep_iter_checkpoints='all'"])


def test_iter_checkpoints_keep_the_newest(tmp_path):
    runner = make_runner(tmp_path, total_iter=10, save_interval=2, keep_iter_checkpoints=2)
    (tmp_path / "run" / "iter_x.pth").write_bytes(b"")  # not a numbered checkpoint: left alone
    runner.train()
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("*.pth")) == ["best.pth", "iter_10.pth", "iter_8.pth", "iter_x.pth",
                                                         "last.pth"]
    assert load_checkpoint(run / "iter_8.pth")["step"] == 8 and load_checkpoint(run / "iter_10.pth")["step"] == 10
    assert all(torch.equal(v, weights(run / "last.pth")[k]) for k, v in weights(run / "iter_10.pth").items())
    resumed = make_runner(tmp_path, name="from8", total_iter=10, save_interval=2)
    resumed.resume(str(run / "iter_8.pth"))
    resumed.train()
    assert all(torch.equal(v, weights(run / "last.pth")[k]) for k, v in weights(tmp_path / "from8" / "last.pth").items())
    assert not list((tmp_path / "from8").glob("iter_*.pth"))  # off by default
    with pytest.raises(ConfigError, match="keep_iter_checkpoints should be a whole number >= 0"):
        make_runner(tmp_path, name="bad", keep_iter_checkpoints=-1)


DDP_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_engine_hooks import PLATEAU, scripted_runner
    from srlane.engine.hooks import Hook
    from pathlib import Path

    class StopOnRankOne(Hook):
        def after_step(self, runner):
            if runner.step == 3 and runner.fabric.global_rank == 1:
                runner.request_stop("rank 1 asks")

    if __name__ == "__main__":
        mode, work = sys.argv[1], Path(sys.argv[2])
        extra = dict(early_stop=dict(patience=3)) if mode == "early" else dict(hooks=[StopOnRankOne()])
        # 16 images: 8 per process at batch 4, 2 steps per epoch as in one process with 8
        runner = scripted_runner(work.parent, PLATEAU, name=work.name, gpus=(0, 1), toy_size=16, **extra)
        runner.train()
        # one file per rank: the processes share stdout, where lines can interleave
        (work / f"rank{{runner.fabric.global_rank}}.txt").write_text(
            f"RANK {{runner.fabric.global_rank}} STEP {{runner.step}} REASON {{runner.stop_reason}}")
""")


def test_stop_requests_are_agreed_by_all_processes(tmp_path):
    """Two CPU processes (DDP over gloo): an early stop ends both at the same validation and skips
    the final one; a stop asked on one rank only ends both after the same step."""
    script = tmp_path / "run_ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(TESTS)))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}", "OMP_NUM_THREADS": "1"}
    results = {}
    for mode in ("early", "one_rank"):
        out = subprocess.run([sys.executable, str(script), mode, str(tmp_path / mode)], env=env, capture_output=True,
                             text=True, timeout=240)
        assert out.returncode == 0, out.stderr[-3000:]
        results[mode] = [(tmp_path / mode / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert results["early"] == [f"RANK {r} STEP 10 REASON early stop: no improvement of the metric by more than 0 "
                                f"in 3 validations (best 0.3000 at step 4)" for r in (0, 1)]
    assert results["one_rank"] == ["RANK 0 STEP 3 REASON stop requested on another process",
                                   "RANK 1 STEP 3 REASON rank 1 asks"]
    assert load_checkpoint(tmp_path / "early" / "last.pth")["step"] == 10
    log = (tmp_path / "one_rank" / "log.txt").read_text()
    assert "stop requested on another process; stopped after iteration 3, saved last.pth" in log
