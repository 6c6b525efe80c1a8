"""Device settings and inference options are checked on every machine, before anything is built;
mixed precision leaves the batch's float tensors (the targets) as they are."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.fabric import Fabric
from lightning.fabric.strategies import DataParallelStrategy

from srlane.config import ConfigError, check_choice
from srlane.engine import fabric as fabric_module
from srlane.engine.defaults import load_experiment
from srlane.engine.fabric import (STRATEGIES, SETTINGS, DefaultStreamDDPStrategy, MixedPrecisionKeepingInputs,
                                  build_fabric, precision_arguments)

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "srlane_r18_synthetic.py"


def test_check_choice_names_the_allowed_values_and_the_closest():
    check_choice("precision", "16-mixed", ("32-true", "16-mixed"))
    with pytest.raises(ConfigError) as err:
        check_choice("precision", "64-mixed", ("32-true", "16-mixed", "bf16-mixed"))
    assert str(err.value) == "precision must be one of 32-true, 16-mixed, bf16-mixed, got '64-mixed'; closest: '16-mixed'"
    with pytest.raises(ConfigError, match="fold_bn must be one of False, True, got 1"):
        check_choice("fold_bn", 1, (False, True))  # 1 == True, but not a bool


@pytest.mark.parametrize("key, value, closest", [
    ("precision", "64-mixed", "16-mixed"), ("precision", "bf16", "bf16-mixed"), ("strategy", "ddp_spwn", "ddp_spawn"),
    ("accelerator", "gpu", "cpu"), ("matmul_precision", "tf32", "highest"),
    ("inference.precision", "fp64", "fp16"), ("inference.compile", "cudagraphs", "cudagraph"),
    ("dataset.on_bad_label", "skipp", "skip"),
])
def test_an_unknown_setting_fails_at_load_on_a_cpu_machine(key, value, closest):
    with pytest.raises(ConfigError) as err:
        load_experiment(QUICKSTART, [f"{key}={value!r}"])
    message = str(err.value)
    allowed = SETTINGS.get(key) or {"inference.precision": ("fp32", "fp16", "bf16"),
                                    "inference.compile": ("none", "compile", "cudagraph"),
                                    "dataset.on_bad_label": ("error", "skip")}[key]
    assert message.startswith(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    assert message.endswith(f"closest: {closest!r}")


def test_main_stops_with_one_line_before_building_anything(tmp_path):
    work = tmp_path / "run"
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), str(QUICKSTART), "--work-dir", str(work),
                           "--set", "precision='64-mixed'", "dataset.data_root='/nonexistent'"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: precision must be one of 32-true, 16-mixed, bf16-mixed, got '64-mixed'; closest: '16-mixed'"]
    assert not work.exists()  # no run folder, no model, no data preparation


class TargetsSeen(torch.nn.Module):
    """Returns what the training criterion would read of the batch, under the model's autocast."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def forward(self, batch):
        self.compute_dtype = self.conv(batch["img"].float() / 255).dtype  # the autocast type
        return batch["gt_lane"]


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_keeps_the_training_targets_float32(precision):
    """Fabric's own mixed precision casts every float tensor of the batch (bf16 snaps 700.3 to 700.0,
    fp16 turns the -1e5 "invalid" marker into -inf); the targets must reach the loss unchanged."""
    fabric = Fabric(accelerator="cpu", devices=1, **precision_arguments(precision, "cpu"))
    seen = TargetsSeen()
    model = fabric.setup_module(seen)
    gt_lane = torch.tensor([[700.3, -1e5, 0.1234567]], dtype=torch.float32)
    batch = {"img": torch.randint(0, 256, (1, 3, 4, 4), dtype=torch.uint8), "gt_lane": gt_lane.clone()}
    targets = model(batch)
    assert seen.compute_dtype == (torch.bfloat16 if precision == "bf16-mixed" else torch.float16)
    assert targets.dtype == torch.float32 and torch.equal(targets, gt_lane)


def test_build_fabric_gives_cuda_runs_the_input_keeping_precision(monkeypatch):
    calls = []
    monkeypatch.setattr(fabric_module.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(fabric_module.torch, "set_float32_matmul_precision", lambda value: None)
    monkeypatch.setattr(fabric_module, "Fabric", lambda **kwargs: calls.append(kwargs))
    build_fabric("cuda", "dp", "bf16-mixed", [0], print)
    build_fabric("cuda", "dp", "32-true", [0], print)
    (plugin,) = calls[0]["plugins"]
    assert isinstance(plugin, MixedPrecisionKeepingInputs) and plugin.precision == "bf16-mixed"
    assert "precision" not in calls[0] and calls[1]["precision"] == "32-true" and "plugins" not in calls[1]


def test_bf16_with_data_parallel_on_several_gpus_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(fabric_module.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(fabric_module.torch, "set_float32_matmul_precision", lambda value: None)
    monkeypatch.setattr(fabric_module, "Fabric", lambda **kwargs: kwargs)
    with pytest.raises(ConfigError, match=r"precision 'bf16-mixed' with strategy 'dp' on 2 GPUs would compute in "
                                          r"float16 .*; use strategy='ddp'"):
        build_fabric("cuda", "dp", "bf16-mixed", [0, 1], print)
    assert build_fabric("cuda", "ddp", "bf16-mixed", [0, 1], print)["strategy"] is not None
    assert isinstance(build_fabric("cuda", "dp", "16-mixed", [0, 1], print)["strategy"], DataParallelStrategy)
    assert build_fabric("cuda", "dp", "bf16-mixed", [0], print)["strategy"] == "auto"  # one GPU: no DataParallel


@pytest.mark.parametrize("deterministic", [True, False])
def test_determinism_is_a_switch(monkeypatch, deterministic):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", torch.backends.cudnn.deterministic)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    notes = []
    try:
        fabric_module.set_determinism(deterministic, "cuda", notes.append)
        assert torch.are_deterministic_algorithms_enabled() is deterministic
        assert torch.backends.cudnn.deterministic is deterministic and torch.backends.cudnn.benchmark is not deterministic
        assert (os.environ.get("CUBLAS_WORKSPACE_CONFIG") == ":4096:8") is deterministic
        assert len(notes) == int(deterministic) and (not notes or "not bitwise repeatable" in notes[0])
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_every_strategy_name_of_fabric_is_checked_for_what_it_needs(monkeypatch):
    """On this CPU machine: each name either builds (one device: no wrapper; two processes: this
    trainer's DDP, find_unused_parameters as the name says) or stops with one line naming what is
    missing (CUDA for fsdp and deepspeed, deepspeed's package)."""
    for strategy, needs in STRATEGIES.items():
        if needs.cuda:
            with pytest.raises(ConfigError, match=rf"^strategy '{strategy}' needs CUDA devices \(Lightning runs it on "
                                                  r"GPUs only\), this run is on cpu; use strategy 'ddp'"):
                build_fabric("cpu", strategy, "32-true", [0], print)
            continue
        notes = []
        assert build_fabric("cpu", strategy, "32-true", [0], notes.append).world_size == 1
        assert notes == ([] if strategy == "auto" else [f"one device: strategy {strategy} runs without a wrapper"])
        chosen = build_fabric("cpu", strategy, "32-true", [0, 1], print).strategy
        assert isinstance(chosen, DefaultStreamDDPStrategy)
        assert chosen._ddp_kwargs.get("find_unused_parameters", False) == ("find_unused" in strategy)
    calls = []
    monkeypatch.setattr(fabric_module.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(fabric_module.torch, "set_float32_matmul_precision", lambda value: None)
    monkeypatch.setattr(fabric_module, "Fabric", lambda **kwargs: calls.append(kwargs))
    build_fabric("cuda", "fsdp", "bf16-mixed", [0, 1], print)  # Lightning's FSDP plugin for the precision
    assert calls[0]["strategy"] == "fsdp" and calls[0]["precision"] == "bf16-mixed" and "plugins" not in calls[0]
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match=r"^strategy 'deepspeed_stage_2' needs the deepspeed package, not "
                                              r"installed here \(pip install deepspeed\); or use strategy 'ddp'$"):
            build_fabric("cuda", "deepspeed_stage_2", "16-mixed", [0, 1], print)


def test_mps_is_checked_like_cuda(monkeypatch):
    monkeypatch.setattr(fabric_module.torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^accelerator 'mps' asked for, but torch .* sees no MPS device"):
        build_fabric("mps", "auto", "32-true", [0], print)
    calls = []
    monkeypatch.setattr(fabric_module.torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(fabric_module, "Fabric", lambda **kwargs: calls.append(kwargs))
    build_fabric("mps", "dp", "16-mixed", [0], print)
    assert (calls[0]["accelerator"], calls[0]["devices"], calls[0]["strategy"]) == ("mps", 1, "auto")
    with pytest.raises(ConfigError, match=r"^accelerator 'mps' has one device, --gpus lists 2 x num_nodes=1$"):
        build_fabric("mps", "ddp", "32-true", [0, 1], print)
    assert fabric_module.resolve_accelerator("auto") == "cpu"  # auto never picks MPS
