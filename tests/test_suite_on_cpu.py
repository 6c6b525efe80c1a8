"""The suite's guard (conftest.py): a test not marked ``cuda`` runs on CPU, and so do the
processes it starts (main.py, the tools, torchrun), on a machine with a GPU as on one without."""
import subprocess
import sys

import torch


def test_a_test_and_its_subprocesses_see_no_cuda_device():
    assert not torch.cuda.is_available()
    child = subprocess.run([sys.executable, "-c", "import os, torch; "
                            "print(repr(os.environ['CUDA_VISIBLE_DEVICES']), torch.cuda.is_available())"],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["''", "False"]
