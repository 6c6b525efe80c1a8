"""The suite runs on CPU wherever it runs: a test not marked ``cuda`` sees a machine without CUDA,
so nothing picks a GPU by accident; tests marked ``cuda`` run only where a GPU is at hand
(``python -m pytest -m cuda``) and are skipped elsewhere.

Subprocesses (main.py, the tools, torchrun) do not inherit the patch; they get
``CUDA_VISIBLE_DEVICES=""`` instead (no device visible), whatever their configs or flags say. This
process keeps seeing its devices: ``HAS_CUDA`` below initialises CUDA at import, before any test
changes the variable, and CUDA reads it once.
A launcher's variables (torchrun's, SLURM's) are removed for each test, so a suite started under
``srun`` or ``torchrun`` is not taken for a launched job, and a port that Lightning put into
``MASTER_PORT`` during one test does not reach the next test's subprocesses.
The measured choices (srlane.autotune) are cached in a folder of this session's own,
``SRLANE_CACHE_DIR`` set at import for this process and its subprocesses: nothing from the
user's cache reaches a test, and no test writes there.
"""
import atexit
import os
import shutil
import tempfile

import cv2
import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
os.environ["SRLANE_CACHE_DIR"] = tempfile.mkdtemp(prefix="srlane-test-cache-")
atexit.register(shutil.rmtree, os.environ["SRLANE_CACHE_DIR"], True)
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "GROUP_RANK", "NODE_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                      "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_JOB_NAME",
                      "SLURM_NTASKS_PER_NODE", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _thread_counts_restored():
    """Tools called in-process (speed.py --threads, the benchmarks) set global thread counts; a
    later in-process training run must not inherit them (its float results would differ from the
    same run in a fresh process)."""
    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(torch_threads)
    cv2.setNumThreads(cv2_threads)


@pytest.fixture(autouse=True)
def _cpu_unless_marked_cuda(request, monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if "cuda" not in request.keywords:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(scope="session")
def road(tmp_path_factory):
    """``helpers.road.make_road``, once per session: a checkpoint trained 4 steps, the prediction
    files and raw outputs of the 6 test scenes (the end-to-end tests of test_one_road and
    test_report share it)."""
    from helpers.road import make_road

    return make_road(tmp_path_factory.mktemp("road"))
