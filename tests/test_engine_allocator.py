"""The host allocator of CPU training keeps freed memory: re-allocating a large block after
freeing it touches no new pages (counted as minor page faults in a fresh process)."""
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.engine import make_runner

ROOT = Path(__file__).resolve().parents[1]
PAGES = (64 << 20) // 4096  # one 64 MiB block in 4 KiB pages

CHILD = """
import resource, sys, torch
from srlane.engine.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
def touch():
    block = torch.empty(64 << 20, dtype=torch.uint8)
    block.fill_(1)
# Steady state first: torch's blocks are 64-byte aligned, and glibc puts the small rest of each
# aligned allocation in its per-thread cache (7 chunks a size), not back beside the freed block;
# until that cache is full (it depends on what the imports allocated), a rest can sit between a
# freed block and the free top of the heap, so the next block comes from fresh pages.
for _ in range(8):
    touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    kept, count = out.stdout.split()
    return kept, int(count)


def test_freed_blocks_are_reused_without_page_faults():
    kept, with_keep = faults("keep")
    if kept != "True":
        pytest.skip("the C library is not glibc")
    _, plain = faults("plain")
    assert plain >= 4 * PAGES  # glibc's default: each 64 MiB block is a fresh mmap, faulted in again
    assert with_keep <= 1.5 * PAGES  # kept: at most the first block's pages


def test_cpu_runner_says_so_in_its_log(tmp_path):
    from srlane.engine.allocator import keep_freed_memory

    if not keep_freed_memory():
        pytest.skip("the C library is not glibc")
    make_runner(tmp_path, "run")
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "host allocator keeps freed memory" in log
