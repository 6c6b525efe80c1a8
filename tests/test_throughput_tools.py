"""tools/benchmark.py runs and writes its JSON (figures are measured, never asserted as speeds)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_loader_benchmark_writes_one_row_per_worker_count(tmp_path):
    out = subprocess.run([sys.executable, "tools/benchmark.py", "loader", "--workers", "0", "2", "--images", "8",
                          "--batch-size", "4", "--epochs", "1", "--json", str(tmp_path / "loader.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "loader.json").read_text())
    assert [row["workers"] for row in result["rows"]] == [0, 2]
    assert all(row["samples_per_s"] > 0 and row["first_batch_s"] > 0 and row["efficiency"] > 0 for row in result["rows"])
    assert result["one_process_items_per_s"] > 0 and result["batch_size"] == 4
    assert "samples/s" in out.stdout and "efficiency" in out.stdout
