"""Two CPU processes (DDP over gloo) train the stand-in and score validation like one process."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from srlane.engine.checkpoint import load_checkpoint

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
