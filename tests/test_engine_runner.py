"""The Runner on a stand-in network and dataset (tiny, CPU, seconds), built by build_runner."""
import collections
import os
import signal
import sys

import pytest
import torch
from lightning.fabric import Fabric
from lightning.fabric.plugins.precision import MixedPrecision

from helpers.engine import Interrupt, ToyNet, add_record, make_runner, weights
from srlane.config import Config, ConfigError
from srlane.data.loader import EpochSampler
from srlane.engine import build as build_module
from srlane.engine import runner as runner_module
from srlane.engine import validation as validation_module
from srlane.engine.hooks import Hook
from srlane.engine.state import TrainState
from srlane.models.weights import CheckpointError, inference_weights, load_checkpoint

CHECKPOINT_KEYS = {"net", "optimizer", "scheduler", "scaler", "step", "epoch", "batch_in_epoch", "best_metric", "metrics",
                   "nonfinite", "unreadable_images", "scaler_skips", "ema", "hooks", "rng", "config"}


def test_epoch_sampler_is_a_function_of_seed_and_epoch_and_shards():
    a = EpochSampler(10, True, seed=3)
    a.set_epoch(1)
    assert {epoch for epoch, _ in a} == {1}
    full = [index for _, index in a]
    assert sorted(full) == list(range(10))
    a.set_epoch(1, start=4)
    assert list(a) == [(1, index) for index in full[4:]] and len(a) == 6
    a.set_epoch(2)
    assert [index for _, index in a] != full
    shards = []
    for rank in range(3):
        s = EpochSampler(10, True, seed=3, rank=rank, world_size=3)
        s.set_epoch(1)
        shards.append([index for _, index in s])
    assert [len(s) for s in shards] == [4, 4, 4]
    assert sorted(i for s in shards for i in s) == sorted(full + full[:2])


def test_train_state_round_trip_and_checkpoints_without_the_newer_counters():
    state = TrainState(step=5, epoch=2, batch_in_epoch=1, best_metric=0.5, last_metrics={"metric": 0.5},
                       nonfinite_in_row=1, nonfinite_total=3, unreadable_images=2, scaler_skips=torch.tensor(4))
    state.request_stop("first")
    state.request_stop("second")
    saved = state.state_dict()
    assert saved == {"step": 5, "epoch": 2, "batch_in_epoch": 1, "best_metric": 0.5, "metrics": {"metric": 0.5},
                     "nonfinite": [1, 3], "unreadable_images": 2, "scaler_skips": torch.tensor(4)}
    assert state.stop_reason == "first" and state.counters() == {
        "skipped (non-finite loss)": 3, "unreadable images replaced": 2, "skipped by the grad scaler": 4}
    back = TrainState(scaler_skips=torch.zeros((), dtype=torch.int64))
    back.load_state_dict(saved)
    assert back.state_dict() == saved and back.stop_reason is None
    older = TrainState(scaler_skips=torch.zeros((), dtype=torch.int64))
    older.load_state_dict({k: v for k, v in saved.items() if k not in ("unreadable_images", "scaler_skips")})
    assert (older.step, older.unreadable_images, int(older.scaler_skips)) == (5, 0, 0)


def test_train_validates_on_schedule_and_writes_the_run(tmp_path):
    runner = make_runner(tmp_path)
    record = add_record(runner)
    runner.train()
    assert runner.state.step == 6
    # 8 images at batch 4: 2 steps per epoch; eval_ep=2 -> after epoch 2 (step 4) and at the end.
    assert [(s, e) for s, e, _, _ in record.validations] == [(4, 2), (6, 2)]
    lrs = [1e-2 * f for f in (0.0, 0.5, 1.0)] + [1e-2 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * k / 4)).item()) for k in (1, 2, 3)]
    assert record.lrs == pytest.approx(lrs, rel=1e-6, abs=1e-12)
    run = tmp_path / "run"
    last = load_checkpoint(run / "last.pth")
    assert last["step"] == 6 and last["config"]["total_iter"] == 6
    assert set(last) == CHECKPOINT_KEYS  # the keys of every checkpoint so far: older ones resume
    best = load_checkpoint(run / "best.pth")
    best_metric = max(m for _, _, m, _ in record.validations)
    assert best["best_metric"] == best_metric == best["metrics"]["metric"]
    log = (run / "log.txt").read_text()
    assert "epoch: 0 step: 1 lr: 0.005000 loss:" in log and "eta:" in log
    assert "validation at step 4" in log
    assert Config.fromfile(run / "config.py").total_iter == 6
    assert any(name.startswith("events.out.tfevents") for _, _, files in os.walk(run / "tensorboard") for name in files)


def test_load_weights_and_validate_reproduce_the_best_metric(tmp_path):
    make_runner(tmp_path).train()
    best = load_checkpoint(tmp_path / "run" / "best.pth")
    fresh = make_runner(tmp_path, name="eval", load_from=str(tmp_path / "run" / "best.pth"))
    assert fresh.validate()["metric"] == best["metrics"]["metric"]
    assert f"loaded weights from {tmp_path / 'run' / 'best.pth'}" in (tmp_path / "eval" / "log.txt").read_text()


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, "crash"])
def test_resume_after_interruption_is_bitwise_exact(tmp_path, how):
    workers = 2 if how == signal.SIGINT else 0  # loader workers must not die of the Ctrl-C
    handler = signal.getsignal(signal.SIGINT)  # the shell's: ignored in a background job
    make_runner(tmp_path, name="full", total_iter=7, save_interval=2).train()
    interrupted = make_runner(tmp_path, name="cut", hooks=[Interrupt(5, how)], total_iter=7, save_interval=2,
                              workers=workers)
    with pytest.raises(SystemExit if how != "crash" else RuntimeError) as info:
        interrupted.train()
    saved = load_checkpoint(tmp_path / "cut" / "last.pth")
    if how == "crash":
        assert saved["step"] == 4  # like kill -9: only the periodic save survives
    else:
        assert info.value.code == 128 + how and saved["step"] == 5
        assert f"stopped by {signal.Signals(how).name} after iteration 5" in (tmp_path / "cut" / "log.txt").read_text()
    assert signal.getsignal(signal.SIGINT) is handler  # the training put back the handler it found
    resumed = make_runner(tmp_path, name="cut", total_iter=7, save_interval=2, resume=str(tmp_path / "cut" / "last.pth"))
    assert resumed.state.step == saved["step"]
    assert resumed.optimizer.param_groups[0]["lr"] == saved["optimizer"]["param_groups"][0]["lr"]
    resumed.train()
    full, cut = weights(tmp_path / "full" / "last.pth"), weights(tmp_path / "cut" / "last.pth")
    assert all(torch.equal(full[k], cut[k]) for k in full)
    assert load_checkpoint(tmp_path / "full" / "best.pth")["best_metric"] == load_checkpoint(tmp_path / "cut" / "best.pth")["best_metric"]


def test_non_finite_loss_is_skipped_and_counted(tmp_path):
    net = ToyNet()
    net.nan_from_call = 3
    runner = make_runner(tmp_path, net=net, max_nonfinite=2)
    with pytest.raises(FloatingPointError, match=r"3 steps in a row up to iteration 3 \(max_nonfinite=2\)"):
        runner.train()
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "iteration 3: loss is nan, step skipped (1 in a row, 1 in all)" in log
    assert "iteration 3: loss is nan, step skipped (2 in a row, 2 in all)" in log
    assert runner.state.step == 2 and runner.scheduler.last_epoch == 2
    assert not (tmp_path / "run" / "last.pth").exists() or load_checkpoint(tmp_path / "run" / "last.pth")["step"] == 2


def test_isolated_non_finite_step_is_skipped_and_training_goes_on(tmp_path):
    class OneNan(ToyNet):
        def forward(self, batch):
            out = super().forward(batch)
            if self.training and self.calls == 2:
                out["loss"] = out["loss"] * float("inf")
            return out

    runner = make_runner(tmp_path, net=OneNan())
    record = add_record(runner)
    runner.train()
    assert runner.state.step == 6 and runner.state.nonfinite_total == 1
    assert record.lrs[1] == record.lrs[2]  # the skipped step did not advance the schedule
    assert "skipped (non-finite loss): 1" in (tmp_path / "run" / "log.txt").read_text()


def test_accumulation_matches_the_large_batch(tmp_path):
    big = make_runner(tmp_path, name="big", batch_size=4)
    big.train()
    small = make_runner(tmp_path, name="small", batch_size=2, accumulate=2)
    small.train()
    assert small.state.step == big.state.step == 6
    a, b = weights(tmp_path / "big" / "last.pth"), weights(tmp_path / "small" / "last.pth")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_grad_clip_and_ema_options(tmp_path):
    runner = make_runner(tmp_path, grad_clip=1e-3, ema_decay=0.5)
    start = {k: v.clone() for k, v in runner.net.state_dict().items()}
    runner.train()
    best = load_checkpoint(tmp_path / "run" / "best.pth")
    ema = best["ema"]
    assert any(not torch.equal(ema[k], best["net"][k]) for k in ema)
    fresh = make_runner(tmp_path, name="eval", load_from=str(tmp_path / "run" / "best.pth"))
    assert all(torch.equal(fresh.net.state_dict()[k], ema[k]) for k in ema)
    assert fresh.validate()["metric"] == best["metrics"]["metric"]
    # AdamW moves each weight by about lr per step whatever the clip; clipping keeps the run finite
    moved = max((best["net"][k] - start[k]).abs().max().item() for k in start if start[k].is_floating_point())
    assert 0 < moved <= 6 * 1e-2 * 1.01


def test_training_split_smaller_than_one_step_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"the training split has 3 images, fewer than one step needs \(batch_size 4 x accumulate 1 x 1 process\(es\)\)"):
        make_runner(tmp_path, toy_size=3).train()


def test_host_reads_one_per_step_and_one_per_log_line(tmp_path, monkeypatch):
    """Loss terms stay on the device: the engine reads a tensor on the host once per step (the
    finiteness check) and once per log line (all smoothed losses together)."""
    engine = os.path.dirname(os.path.abspath(runner_module.__file__))
    sampler_file = os.path.abspath(sys.modules[EpochSampler.__module__].__file__)  # the training sampler
    reads = collections.Counter()
    for method in ("__bool__", "__float__", "__int__", "item", "tolist"):
        def counting(self, *args, _original=getattr(torch.Tensor, method), **kwargs):
            caller = sys._getframe(1).f_code
            path = os.path.abspath(caller.co_filename)
            if os.path.dirname(path) == engine or path == sampler_file:
                reads[caller.co_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counting)
    runner = make_runner(tmp_path, total_iter=6, log_interval=4, eval_ep=100)
    runner.train()
    # 6 steps; log lines at steps 4 and 6; 3 epochs of 2 steps each list their sampler's indices
    assert dict(reads) == {"any_rank": 6, "window_means": 2, "__iter__": 3}
    assert isinstance(runner.state.step_losses["l2"], torch.Tensor) and runner.state.step_losses["l2"].dim() == 0
    assert "step: 4 lr:" in (tmp_path / "run" / "log.txt").read_text()


class Scales(Hook):
    """The grad scaler's scale after each step."""

    def __init__(self, scaler):
        self.scaler, self.scales = scaler, []

    def after_step(self, state):
        self.scales.append(self.scaler.get_scale())


def test_grad_scaler_skips_are_counted_and_resume_restores_the_scaler(tmp_path, monkeypatch, recwarn):
    """16-mixed on CPU: float16 autocast and a grad scaler whose first scale is so large that the
    first steps overflow and are skipped. The schedule still follows iterations (no torch warning
    about the scheduler stepping first), the log line counts the skips, and a run stopped at
    step 5 resumes with the scaler's scale and growth tracker and ends bit for bit as one that was
    not stopped."""
    fp32 = make_runner(tmp_path, name="fp32", total_iter=7)
    reference = add_record(fp32)
    fp32.train()
    init_scale = 2.0 ** 18
    monkeypatch.setattr(build_module, "build_fabric", lambda *args, **kwargs: Fabric(
        accelerator="cpu", devices=1,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=init_scale))]))
    full = make_runner(tmp_path, name="full", total_iter=7, save_interval=2)
    scales = Scales(full.scaler)
    full.hooks.append(scales)
    record = add_record(full)
    full.train()
    skipped = sum(after < before for before, after in zip([init_scale] + scales.scales, scales.scales))
    assert skipped >= 2 and int(full.state.scaler_skips) == skipped
    assert record.lrs == reference.lrs
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]
    last_line = [line for line in (tmp_path / "full" / "log.txt").read_text().splitlines() if "step: 7 " in line][0]
    assert last_line.endswith(f"skipped by the grad scaler: {skipped}")
    cut = make_runner(tmp_path, name="cut", hooks=[Interrupt(5, signal.SIGTERM)], total_iter=7, save_interval=2)
    with pytest.raises(SystemExit):
        cut.train()
    saved = load_checkpoint(tmp_path / "cut" / "last.pth")
    assert saved["step"] == 5 and saved["scaler"]["scale"] == scales.scales[4]
    resumed = make_runner(tmp_path, name="cut", total_iter=7, save_interval=2, resume=str(tmp_path / "cut" / "last.pth"))
    assert resumed.scaler.state_dict() == saved["scaler"]
    assert int(resumed.state.scaler_skips) == int(saved["scaler_skips"])
    resumed.train()
    full_weights, cut_weights = weights(tmp_path / "full" / "last.pth"), weights(tmp_path / "cut" / "last.pth")
    assert all(torch.equal(full_weights[k], cut_weights[k]) for k in full_weights)
    assert int(resumed.state.scaler_skips) == skipped


def test_moving_average_checkpoint_key_and_checkpoints_of_the_hook_layout(tmp_path):
    """The Runner keeps the average under the top-level "ema" key; a checkpoint that keeps it
    where the EMA hook did (hooks.ema.ema) still evaluates and resumes with it."""
    make_runner(tmp_path, total_iter=4, ema_decay=0.5).train()
    state = load_checkpoint(tmp_path / "run" / "last.pth")
    assert set(state["ema"]) == set(state["net"]) and "ema" not in state["hooks"]
    old = dict(state, hooks={**state["hooks"], "ema": {"ema": state.pop("ema")}})
    torch.save(old, tmp_path / "old.pth")
    legacy = inference_weights(load_checkpoint(tmp_path / "old.pth"))
    assert all(torch.equal(legacy[k], v) for k, v in old["hooks"]["ema"]["ema"].items())
    resumed = make_runner(tmp_path, name="resumed", total_iter=4, ema_decay=0.5, resume=str(tmp_path / "old.pth"))
    assert all(torch.equal(v, old["hooks"]["ema"]["ema"][k]) for k, v in resumed.ema.state_dict().items())
    without = make_runner(tmp_path, name="plain", total_iter=4)
    without.train()
    with pytest.raises(CheckpointError, match="ema_decay is set but the checkpoint has no moving average"):
        make_runner(tmp_path, name="x", total_iter=4, ema_decay=0.5, resume=str(tmp_path / "plain" / "last.pth"))


class StopAt(Hook):
    def __init__(self, at_step):
        self.at_step = at_step

    def after_step(self, state):
        if state.step == self.at_step:
            state.request_stop("enough for now")


def test_request_stop_ends_the_run_cleanly_after_the_step(tmp_path):
    runner = make_runner(tmp_path, hooks=[StopAt(3)], total_iter=7, eval_ep=1)
    record = add_record(runner)
    runner.train()  # returns normally
    assert runner.state.step == 3 and [s for s, _, _, _ in record.validations] == [2]  # no validation after the stop
    assert load_checkpoint(tmp_path / "run" / "last.pth")["step"] == 3
    assert "enough for now; stopped after iteration 3, saved last.pth" in (tmp_path / "run" / "log.txt").read_text()


def test_channels_last_changes_the_memory_format_not_the_training(tmp_path):
    """``channels_last`` (the default) holds the 4-d weights in NHWC memory; the run trains to the
    same weights as NCHW up to float rounding."""
    nhwc, nchw = make_runner(tmp_path, "nhwc", channels_last=True), make_runner(tmp_path, "nchw", channels_last=False)
    assert nhwc.net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not nchw.net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    nhwc.train()
    nchw.train()
    for a, b in zip(nhwc.net.parameters(), nchw.net.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-5)
    assert nhwc.net.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_validation_prepares_the_network_once_and_refreshes_its_weights(tmp_path, monkeypatch):
    """Three validations, one prepared copy (a CUDA graph would be captured once): at each
    validation its tensors are the same memory and hold the weights validation must use (the
    moving average here), not the first validation's."""
    prepared = []
    real = validation_module.prepare_for_inference
    monkeypatch.setattr(validation_module, "prepare_for_inference", lambda *a: prepared.append(a[1]) or real(*a))
    seen = []

    class CompareWeights(Hook):
        def __init__(self, validator):
            self.validator = validator

        def after_validation(self, state, metrics, is_best):
            copy_state = self.validator.prepared.net.state_dict()
            current = self.validator.net.state_dict()
            assert copy_state.keys() == current.keys()
            assert all(torch.equal(copy_state[k], current[k]) for k in current)
            seen.append((copy_state["conv.weight"].data_ptr(), copy_state["conv.weight"].clone()))

    runner = make_runner(tmp_path, eval_ep=1, ema_decay=0.5)
    assert runner.validate.net is runner.ema.module  # validation uses the moving average
    runner.hooks.append(CompareWeights(runner.validate))
    runner.train()
    assert len(prepared) == 1 and len(seen) == 3
    assert len({ptr for ptr, _ in seen}) == 1
    assert not torch.equal(seen[0][1], seen[2][1])
