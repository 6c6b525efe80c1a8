"""The standard hooks: each one alone on fakes (a recorder that keeps what it is told, a source of
checkpoints, a TrainState), then in runs of the stand-in network: early stopping (a metric
scripted per step), numbered checkpoints, and stop requests agreed by all processes under DDP."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from helpers.engine import PLATEAU, Interrupt, add_record, make_runner, scripted_runner, weights
from srlane.config import ConfigError
from srlane.engine.checkpointer import Checkpointer
from srlane.engine.defaults import load_experiment
from srlane.engine.hooks import CheckpointHook, EarlyStopHook, LoggerHook
from srlane.engine.state import TrainState
from srlane.models.weights import CheckpointError, load_checkpoint

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


class FakeRecorder:
    """Keeps what the logger hook tells it, as (method, arguments)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, method):
        return lambda *args: self.calls.append((method, *args))


class FakeSource:
    """What checkpoints are taken from: its ``step``, a weight holding the step."""

    def __init__(self):
        self.step, self.loaded = 0, None

    def state_dict(self):
        return {"net": {"w": torch.tensor(float(self.step))}, "step": self.step, "epoch": 0, "optimizer": {}}

    def load_state_dict(self, state, origin):
        self.loaded = (state["step"], origin)


def checkpointer_of(folder, is_main=True, keep_iter=0, config=None, log=None):
    checkpointer = Checkpointer(str(folder), is_main, config or {"img_w": 256}, log or (lambda line: None), keep_iter)
    source = FakeSource()
    checkpointer.attach(source)
    return checkpointer, source


def test_logger_hook_logs_every_interval_and_at_the_end():
    recorder = FakeRecorder()
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.25)
    hook = LoggerHook(recorder, optimizer, interval=2, total_iter=5)
    state = TrainState(step=2, epoch=1, nonfinite_total=1)
    hook.before_train(state)
    assert recorder.calls == [("start_bar", 2)]
    for step in (3, 4, 5):
        state.step, state.step_losses = step, {"loss": float(step)}
        hook.before_step(state)
        hook.after_step(state)
    updates = [call[1] for call in recorder.calls if call[0] == "update"]
    logged = [call[1:] for call in recorder.calls if call[0] == "log_train"]
    counts = {"skipped (non-finite loss)": 1, "unreadable images replaced": 0}
    assert updates == [{"loss": 3.0}, {"loss": 4.0}, {"loss": 5.0}]
    assert logged == [(1, 4, 0.25, counts), (1, 5, 0.25, counts)]  # the interval, and the last step
    recorder.calls.clear()
    hook.after_validation(state, {"metric": 0.5}, True)
    hook.after_validation(state, {"metric": 0.4}, False)
    assert recorder.calls == [("log_validation", {"metric": 0.5}, 5), ("info", "new best metric 0.5000 at step 5"),
                              ("log_validation", {"metric": 0.4}, 5)]


def test_checkpoint_hook_writes_last_best_and_numbered_files(tmp_path):
    checkpointer, source = checkpointer_of(tmp_path, keep_iter=2)
    hook = CheckpointHook(checkpointer, interval=2)
    state = TrainState()
    for step in range(1, 9):
        source.step = state.step = step
        hook.after_step(state)
        if step == 3:
            hook.after_validation(state, {"metric": 0.1}, True)
        if step == 5:
            hook.after_validation(state, {"metric": 0.0}, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pth", "iter_6.pth", "iter_8.pth", "last.pth"]
    assert [load_checkpoint(tmp_path / name)["step"] for name in ("best.pth", "iter_6.pth", "last.pth")] == [3, 6, 8]
    assert load_checkpoint(tmp_path / "last.pth")["config"] == {"img_w": 256}
    source.step = state.step = 9
    state.failed = True
    hook.after_train(state)  # a crash: last.pth stays the last good one
    assert load_checkpoint(tmp_path / "last.pth")["step"] == 8
    state.failed = False
    hook.after_train(state)
    assert load_checkpoint(tmp_path / "last.pth")["step"] == 9


def test_only_the_main_process_writes_checkpoints(tmp_path):
    checkpointer, source = checkpointer_of(tmp_path, is_main=False, keep_iter=1)
    hook = CheckpointHook(checkpointer, interval=1)
    state = TrainState(step=1)
    hook.after_step(state)
    hook.after_validation(state, {"metric": 1.0}, True)
    hook.after_train(state)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=r"keep_iter_checkpoints should be a whole number >= 0 \(0: off\), got -1"):
        Checkpointer(str(tmp_path), True, {}, print, -1)


def test_checkpointer_resumes_its_source_and_loads_weights_of_the_same_geometry(tmp_path):
    lines = []
    checkpointer, source = checkpointer_of(tmp_path, log=lines.append)
    source.step = 4
    checkpointer.save("last.pth")
    checkpointer.resume(str(tmp_path / "last.pth"))
    assert source.loaded == (4, str(tmp_path / "last.pth"))
    assert lines == [f"resumed from {tmp_path / 'last.pth'} at step 4 (epoch 0)"]
    net = torch.nn.Linear(1, 1, bias=False)
    torch.save({"net": {"weight": torch.full((1, 1), 3.0)}}, tmp_path / "released.pth")
    with pytest.raises(CheckpointError, match="released.pth: holds only weights; use --load-from, not --resume"):
        checkpointer.resume(str(tmp_path / "released.pth"))
    checkpointer.load_weights(net, str(tmp_path / "released.pth"))
    assert net.weight.item() == 3.0 and "holds no config (a released checkpoint?)" in lines[-2]
    assert lines[-1] == f"loaded weights from {tmp_path / 'released.pth'}"
    torch.save({"net": {"weight": torch.zeros(1, 1)}, "config": {"img_w": 512}}, tmp_path / "wide.pth")
    with pytest.raises(ConfigError, match="img_w 512 in the checkpoint, 256 in this config"):
        checkpointer.load_weights(net, str(tmp_path / "wide.pth"))
    assert net.weight.item() == 3.0


def test_resuming_a_run_of_another_geometry_is_one_line(tmp_path):
    wide, _ = checkpointer_of(tmp_path, config={"img_w": 512})
    wide.save("last.pth")
    checkpointer, source = checkpointer_of(tmp_path)
    with pytest.raises(ConfigError, match="img_w 512 in the checkpoint, 256 in this config"):
        checkpointer.resume(str(tmp_path / "last.pth"))
    assert source.loaded is None


def test_early_stop_hook_counts_validations_without_improvement():
    hook = EarlyStopHook(patience=2, total_iter=10, min_delta=0.05)
    state = TrainState()
    for step, metric in ((2, 0.1), (4, 0.14), (6, 0.2), (8, 0.24)):
        state.step = step
        hook.after_validation(state, {"metric": metric}, False)
        assert state.stop_reason is None
    state.step = 9
    hook.after_validation(state, {"metric": 0.25}, False)
    assert state.stop_reason == ("early stop: no improvement of the metric by more than 0.05 in 2 validations "
                                 "(best 0.2000 at step 6)")
    assert hook.state_dict() == {"best": 0.2, "best_step": 6, "bad": 2}
    at_the_end = EarlyStopHook(patience=1, total_iter=10)
    at_the_end.load_state_dict({"best": 0.3, "best_step": 4, "bad": 0})
    last = TrainState(step=10)
    at_the_end.after_validation(last, {"metric": 0.3}, False)
    assert at_the_end.bad == 1 and last.stop_reason is None  # training ends there anyway
    resumed = TrainState()
    at_the_end.before_train(resumed)
    assert resumed.stop_reason.endswith("; resumed a run that had stopped early (raise early_stop.patience to go on)")


def validated_steps(record):
    return [step for step, _, _, _ in record.validations]


def test_early_stop_after_patience_validations_without_improvement(tmp_path):
    runner = scripted_runner(tmp_path, PLATEAU, early_stop=dict(patience=3, min_delta=0.0))
    record = add_record(runner)
    runner.train()  # returns: no SystemExit
    assert runner.state.step == 10 and runner.state.stop_reason.startswith("early stop")
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
    runner = scripted_runner(tmp_path, rising, early_stop=dict(patience=2, min_delta=0.05))
    record = add_record(runner)
    runner.train()
    # 0.14 is not above 0.1 + 0.05 (1), 0.2 is (best, 0), 0.24 and 0.25 are not above 0.25 (1, 2): stop
    assert runner.state.step == 10 and validated_steps(record) == [2, 4, 6, 8, 10]
    assert "more than 0.05 in 2 validations (best 0.2000 at step 6)" in (tmp_path / "run" / "log.txt").read_text()
    every_rise_counts = scripted_runner(tmp_path, rising, name="no_delta", early_stop=dict(patience=2))
    every_rise_counts.train()
    assert every_rise_counts.state.step == 20 and every_rise_counts.state.stop_reason is None


def test_no_stop_asked_at_the_last_validation(tmp_path):
    runner = scripted_runner(tmp_path, PLATEAU, total_iter=10, early_stop=dict(patience=3))
    record = add_record(runner)
    runner.train()
    assert runner.state.step == 10 and validated_steps(record) == [2, 4, 6, 8, 10] and runner.state.stop_reason is None
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
    resumed = scripted_runner(tmp_path, PLATEAU, name="cut", early_stop=dict(patience=3),
                              resume=str(tmp_path / "cut" / "last.pth"))
    record = add_record(resumed)
    resumed.train()
    assert resumed.state.step == 10 and validated_steps(record) == [8, 10]
    full, cut_last = load_checkpoint(tmp_path / "full" / "last.pth"), load_checkpoint(tmp_path / "cut" / "last.pth")
    assert cut_last["step"] == full["step"] == 10 and cut_last["hooks"]["early_stop"] == full["hooks"]["early_stop"]
    assert all(torch.equal(full["net"][k], cut_last["net"][k]) for k in full["net"])


def test_resuming_a_run_that_stopped_early(tmp_path):
    scripted_runner(tmp_path, PLATEAU, early_stop=dict(patience=3)).train()
    stopped = weights(tmp_path / "run" / "last.pth")
    again = scripted_runner(tmp_path, PLATEAU, early_stop=dict(patience=3), resume=str(tmp_path / "run" / "last.pth"))
    record = add_record(again)
    again.train()  # stops at once: no step, no validation
    assert again.state.step == 10 and record.validations == []
    assert all(torch.equal(v, stopped[k]) for k, v in weights(tmp_path / "run" / "last.pth").items())
    assert "resumed a run that had stopped early (raise early_stop.patience to go on)" in \
        (tmp_path / "run" / "log.txt").read_text()
    patient = scripted_runner(tmp_path, PLATEAU, early_stop=dict(patience=5), resume=str(tmp_path / "run" / "last.pth"))
    record = add_record(patient)
    patient.train()  # 0.2 at step 12 and 0.1 at step 14 make five
    assert patient.state.step == 14 and validated_steps(record) == [12, 14]


def test_early_stop_config_is_checked():
    assert EarlyStopHook.from_config({"patience": 2}, total_iter=10).min_delta == 0.0
    for spec, message in [({"patience": 0}, "patience should be a whole number >= 1, got 0"),
                          ({"patience": 2.5}, "patience should be a whole number >= 1, got 2.5"),
                          ({"patience": 2, "min_delta": -0.1}, "min_delta should be a number >= 0, got -0.1"),
                          ({"patiance": 2}, r"early_stop should be dict\(patience=N, min_delta=d\)"),
                          (3, r"early_stop should be dict\(patience=N, min_delta=d\) \(min_delta optional\), got 3")]:
        with pytest.raises(ConfigError, match=message):
            EarlyStopHook.from_config(spec, total_iter=10)
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
    resumed = make_runner(tmp_path, name="from8", total_iter=10, save_interval=2, resume=str(run / "iter_8.pth"))
    resumed.train()
    assert all(torch.equal(v, weights(run / "last.pth")[k]) for k, v in weights(tmp_path / "from8" / "last.pth").items())
    assert not list((tmp_path / "from8").glob("iter_*.pth"))  # off by default
    with pytest.raises(ConfigError, match="keep_iter_checkpoints should be a whole number >= 0"):
        make_runner(tmp_path, name="bad", keep_iter_checkpoints=-1)


DDP_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    sys.path.insert(0, {tests!r})
    from helpers.engine import PLATEAU, scripted_runner
    from srlane.engine.hooks import Hook
    from pathlib import Path

    class StopOnRankOne(Hook):
        def __init__(self, rank):
            self.rank = rank

        def after_step(self, state):
            if state.step == 3 and self.rank == 1:
                state.request_stop("rank 1 asks")

    if __name__ == "__main__":
        mode, work = sys.argv[1], Path(sys.argv[2])
        extra = dict(early_stop=dict(patience=3)) if mode == "early" else {{}}
        # 16 images: 8 per process at batch 4, 2 steps per epoch as in one process with 8
        runner = scripted_runner(work.parent, PLATEAU, name=work.name, gpus=(0, 1), toy_size=16, **extra)
        rank = runner.fabric.global_rank
        if mode == "one_rank":
            runner.hooks.append(StopOnRankOne(rank))
        runner.train()
        # one file per rank: the processes share stdout, where lines can interleave
        (work / f"rank{{rank}}.txt").write_text(f"RANK {{rank}} STEP {{runner.state.step}} REASON {{runner.state.stop_reason}}")
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
