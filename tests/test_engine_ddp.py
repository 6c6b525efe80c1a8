"""Two CPU processes (DDP over gloo) train the stand-in and score validation like one process."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lightning.fabric.plugins.environments import TorchElasticEnvironment
from lightning.fabric.strategies import DDPStrategy
from lightning.fabric.utilities.rank_zero import rank_zero_only

from srlane.config import ConfigError
from srlane.engine import runner as runner_module
from srlane.engine.checkpoint import load_checkpoint
from srlane.engine.runner import build_fabric

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    sys.path.insert(0, {tests!r})
    from test_engine_runner import ToyNet, make_cfg, toy_decoder, toy_loader
    from srlane.engine.runner import Runner

    mode, work = sys.argv[1], sys.argv[2]
    torch.manual_seed(123)
    cfg = make_cfg(total_iter=3, eval_ep=100, toy_size=10, batch_size=2)
    gpus = (0, 1) if mode == "ddp" else (0,)
    runner = Runner(cfg, work, gpus=gpus, net=ToyNet(), build_loader=toy_loader, decoder=toy_decoder)
    if mode == "ddp":
        runner.train()
    else:
        runner.load_weights(work + "/last.pth")
        print("METRICS " + json.dumps(runner.evaluate()))
""")


def test_two_process_ddp_matches_one_process_validation(tmp_path):
    script = tmp_path / "run_toy.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    work = str(tmp_path / "work")
    ddp = subprocess.run([sys.executable, str(script), "ddp", work], env=env, capture_output=True, text=True, timeout=240)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    last = load_checkpoint(tmp_path / "work" / "last.pth")
    assert last["step"] == 3 and last["metrics"]["count"] == 10  # each of the 10 images scored once
    log = (tmp_path / "work" / "log.txt").read_text()
    assert "2 process(es) on cpu, strategy DDPStrategy" in log and "validation at step 3" in log
    single = subprocess.run([sys.executable, str(script), "single", work], env=env, capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    line = next(l for l in single.stdout.splitlines() if l.startswith("METRICS "))
    assert json.loads(line[len("METRICS "):]) == last["metrics"]


TORCHRUN_NODE_1_PROCESS_1 = {"RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1", "WORLD_SIZE": "4",
                             "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555",
                             "TORCHELASTIC_RUN_ID": "test"}


def test_build_fabric_passes_num_nodes_on_cpu_and_cuda(monkeypatch):
    fabric = build_fabric("ddp", "32-true", [0, 1], print, num_nodes=2)
    assert isinstance(fabric.strategy, DDPStrategy)
    assert (fabric.strategy.num_nodes, fabric.strategy.num_processes) == (2, 2)
    calls = []
    monkeypatch.setattr(runner_module.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(runner_module, "Fabric", lambda **kwargs: calls.append(kwargs))
    build_fabric("ddp", "16-mixed", [0, 1, 2], print, num_nodes=4)
    assert calls == [dict(accelerator="cuda", devices=[0, 1, 2], num_nodes=4, strategy="ddp", precision="16-mixed")]


def test_build_fabric_under_torchrun_takes_ranks_from_its_environment(monkeypatch):
    # Fabric records the rank it finds in the process-global rank_zero_only.rank; put it back
    # afterwards, or every later rank-zero-only call in this pytest process (TensorBoard) is a no-op.
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    for name, value in TORCHRUN_NODE_1_PROCESS_1.items():
        monkeypatch.setenv(name, value)
    fabric = build_fabric("ddp", "32-true", [0, 1], print, num_nodes=2)
    assert isinstance(fabric.strategy.cluster_environment, TorchElasticEnvironment)
    assert (fabric.world_size, fabric.global_rank, fabric.node_rank, fabric.local_rank) == (4, 3, 1, 1)
    with pytest.raises(ConfigError, match=r"torchrun started 4 processes but --gpus lists 2 device\(s\) x num_nodes=1"):
        build_fabric("ddp", "32-true", [0, 1], print)


def test_num_nodes_needs_ddp():
    with pytest.raises(ConfigError, match="num_nodes=2 needs strategy='ddp', got 'dp'"):
        build_fabric("dp", "32-true", [0], print, num_nodes=2)
