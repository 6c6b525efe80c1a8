"""Several processes on CPU (DDP over gloo): two processes on one node and two single-process
"nodes" started by torchrun train the stand-in alike and score validation like one process; the
device, strategy and launcher checks of ``srlane.engine.fabric``."""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.fabric.strategies import SingleDeviceStrategy
from lightning.fabric.utilities.rank_zero import rank_zero_only

from srlane.config import ConfigError
from srlane.engine import fabric as fabric_module
from srlane.models.weights import load_checkpoint
from srlane.engine.fabric import DefaultStreamDDPStrategy, build_fabric, resolve_accelerator

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    sys.path.insert(0, {tests!r})
    from helpers.engine import make_cfg, toy_parts
    from srlane.engine.build import build_runner

    if __name__ == "__main__":
        mode, work = sys.argv[1], sys.argv[2]
        torch.manual_seed(123)
        nodes = 2 if mode == "two-nodes" else 1
        strategy = sys.argv[3] if len(sys.argv) > 3 else "ddp"  # a ddp variant's run also writes a CSV (rank 0)
        cfg = make_cfg(total_iter=3, eval_ep=100, toy_size=10, batch_size=2, num_nodes=nodes, strategy=strategy,
                       loggers=["tensorboard"] if strategy == "ddp" else ["tensorboard", "csv"])
        gpus = {{"ddp": (0, 1), "two-nodes": (0,), "single": (0,)}}[mode]
        load_from = work + "/last.pth" if mode == "single" else None
        runner = build_runner(cfg, work, gpus=gpus, load_from=load_from, **toy_parts(cfg))
        if mode == "single":
            print("METRICS " + json.dumps(runner.validate()))
        else:
            runner.train()
""")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _single_process_metrics(script: Path, work: Path) -> dict:
    single = subprocess.run([sys.executable, str(script), "single", str(work)], env=_env(), capture_output=True,
                            text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    line = next(l for l in single.stdout.splitlines() if l.startswith("METRICS "))
    return json.loads(line[len("METRICS "):])


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "run_toy.py"
    path.write_text(SCRIPT.format(tests=str(TESTS)))
    return path


@pytest.fixture(scope="module")
def one_node_two_processes(script) -> Path:
    """``--gpus 0 1`` on CPU: Fabric starts the second process itself."""
    work = script.parent / "ddp"
    ddp = subprocess.run([sys.executable, str(script), "ddp", str(work)], env=_env(), capture_output=True, text=True,
                         timeout=240)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    return work


def test_two_process_ddp_matches_one_process_validation(script, one_node_two_processes):
    work = one_node_two_processes
    last = load_checkpoint(work / "last.pth")
    assert last["step"] == 3 and last["metrics"]["count"] == 10  # each of the 10 images scored once
    log = (work / "log.txt").read_text()
    assert "2 process(es) on cpu, strategy DefaultStreamDDPStrategy" in log and "validation at step 3" in log
    assert _single_process_metrics(script, work) == last["metrics"]


def test_ddp_spawn_trains_as_ddp_on_cpu(script, one_node_two_processes):
    """Fabric's ``ddp_spawn`` on two CPU processes: the weights of the ``ddp`` run, bit for bit;
    the trackers write on rank 0 only (one CSV row per step). The other DDP names build the same
    strategy (test_engine_settings)."""
    strategy = "ddp_spawn"
    work = script.parent / strategy
    done = subprocess.run([sys.executable, str(script), "ddp", str(work), strategy], env=_env(), capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    reference, last = load_checkpoint(one_node_two_processes / "last.pth"), load_checkpoint(work / "last.pth")
    assert all(torch.equal(last["net"][k], v) for k, v in reference["net"].items())
    log = (work / "log.txt").read_text()
    assert "2 process(es) on cpu, strategy DefaultStreamDDPStrategy" in log
    assert "strategy ddp_spawn runs as ddp: main.py starts one process per device" in log
    rows = (work / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:4]] == ["1", "2", "3"] and len(rows) == 5  # steps 1-3, validation


def test_two_nodes_under_torchrun_train_like_two_processes_on_one_node(script, one_node_two_processes, tmp_path):
    """``torchrun --nnodes 2 --node-rank 0|1 --nproc-per-node 1`` on one machine (gloo): the same
    weights, bit for bit, as two processes of one node, and the same metric as one process."""
    work, port = tmp_path / "nodes", _free_port()
    nodes = [
        subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank),
                          "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
                          str(script), "two-nodes", str(work)],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(
        f"--- node {rank} (exit {node.returncode}):\n{output[-4000:]}" for rank, (node, output) in enumerate(zip(nodes, outputs)))
    last = load_checkpoint(work / "last.pth")
    reference = load_checkpoint(one_node_two_processes / "last.pth")
    assert last["step"] == 3 and last["metrics"]["count"] == 10
    assert all(torch.equal(last["net"][k], reference["net"][k]) for k in reference["net"])
    assert "2 process(es) on cpu" in (work / "log.txt").read_text()
    assert _single_process_metrics(script, work) == last["metrics"] == reference["metrics"]


def test_accelerator_choice(monkeypatch):
    assert resolve_accelerator("auto") == "cpu" == resolve_accelerator("cpu")  # CUDA hidden by conftest
    with pytest.raises(ConfigError, match="accelerator 'cuda' asked for, but torch .* sees no CUDA device"):
        resolve_accelerator("cuda")
    with pytest.raises(ConfigError, match="accelerator must be one of auto, cpu, cuda, mps, got 'gpu'"):
        resolve_accelerator("gpu")
    monkeypatch.setattr(fabric_module.torch.cuda, "is_available", lambda: True)
    assert resolve_accelerator("auto") == "cuda" == resolve_accelerator("cuda")
    assert resolve_accelerator("cpu") == "cpu"
    fabric = build_fabric("cpu", "dp", "16-mixed", [0], print)  # a GPU machine, CPU on purpose
    assert fabric.device.type == "cpu" and isinstance(fabric.strategy, SingleDeviceStrategy)


def test_build_fabric_strategies_and_nodes(monkeypatch):
    notes = []
    fabric = build_fabric("cpu", "ddp", "32-true", [0, 1], notes.append, num_nodes=2)
    assert isinstance(fabric.strategy, DefaultStreamDDPStrategy)
    assert (fabric.strategy.num_nodes, fabric.strategy.num_processes) == (2, 2)
    build_fabric("cpu", "dp", "16-mixed", [0, 1], notes.append)
    assert notes == ["on CPU: strategy dp runs as ddp over 2 process(es) per node",
                     "on CPU: precision 16-mixed runs as 32-true"]
    calls, precision = [], []
    monkeypatch.setattr(fabric_module.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(fabric_module.torch, "set_float32_matmul_precision", precision.append)
    monkeypatch.setattr(fabric_module, "Fabric", lambda **kwargs: calls.append(kwargs))
    build_fabric("cuda", "ddp", "16-mixed", [0, 1, 2], print, num_nodes=4, matmul_precision="medium")
    strategy, (plugin,) = calls[0].pop("strategy"), calls[0].pop("plugins")
    assert isinstance(strategy, DefaultStreamDDPStrategy) and precision == ["medium"]
    assert plugin.precision == "16-mixed" and plugin.scaler is not None
    assert calls[0] == dict(accelerator="cuda", devices=[0, 1, 2], num_nodes=4, loggers=[])
    notes.clear()
    build_fabric("cuda", "dp", "bf16-mixed", [1], notes.append)
    (plugin,) = calls[1].pop("plugins")
    assert plugin.precision == "bf16-mixed" and plugin.scaler is None
    assert calls[1] == dict(accelerator="cuda", devices=[1], num_nodes=1, strategy="auto", loggers=[])
    assert notes == ["one device: strategy dp runs without a wrapper", "float32 matmul precision 'high' (TF32 on)"]
    with pytest.raises(ConfigError, match="matmul_precision must be one of highest, high, medium, got 'tf32'"):
        build_fabric("cuda", "dp", "32-true", [0], print, matmul_precision="tf32")


TORCHRUN_NODE_1_PROCESS_1 = {"RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1", "WORLD_SIZE": "4",
                             "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555",
                             "TORCHELASTIC_RUN_ID": "test"}
SRUN_NODE_1_TASK_1 = {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
                      "SLURM_NODEID": "1", "SLURM_JOB_NAME": "train", "SLURM_JOB_ID": "77",
                      "SLURM_NODELIST": "127.0.0.1", "MASTER_PORT": "29556"}


@pytest.mark.parametrize("launcher, variables, environment", [
    ("torchrun", TORCHRUN_NODE_1_PROCESS_1, TorchElasticEnvironment),
    ("srun", SRUN_NODE_1_TASK_1, SLURMEnvironment),
])
def test_build_fabric_under_a_launcher_takes_ranks_from_its_environment(monkeypatch, launcher, variables, environment):
    # Fabric records the rank it finds in the process-global rank_zero_only.rank; put it back
    # afterwards, or every later rank-zero-only call in this pytest process (TensorBoard) is a no-op.
    monkeypatch.setattr(rank_zero_only, "rank", rank_zero_only.rank)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    fabric = build_fabric("cpu", "ddp", "32-true", [0, 1], print, num_nodes=2)
    assert isinstance(fabric.strategy.cluster_environment, environment)
    assert (fabric.world_size, fabric.global_rank, fabric.node_rank, fabric.local_rank) == (4, 3, 1, 1)
    message = rf"{launcher} started 4 processes but --gpus lists 2 device\(s\) x num_nodes=1"
    with pytest.raises(ConfigError, match=message):
        build_fabric("cpu", "ddp", "32-true", [0, 1], print)


def test_num_nodes_needs_ddp_and_strategy_names_are_checked():
    with pytest.raises(ConfigError, match="num_nodes=2 needs strategy='ddp', got 'dp'"):
        build_fabric("cpu", "dp", "32-true", [0], print, num_nodes=2)
    with pytest.raises(ConfigError, match=r"strategy must be one of auto, dp, ddp, .*, got 'fdsp'; closest: 'fsdp'"):
        build_fabric("cpu", "fdsp", "32-true", [0], print)
