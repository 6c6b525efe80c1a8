"""tools/benchmark.py runs and writes its JSON (figures are measured, never asserted as speeds)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_data_benchmark_times_the_item_and_its_stages(tmp_path):
    out = subprocess.run([sys.executable, "tools/benchmark.py", "data", "--items", "20", "--json",
                          str(tmp_path / "data.json")], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "data.json").read_text())
    stages = ("train_samples_per_s", "val_samples_per_s", "decode_per_s", "augment_per_s", "targets_per_s")
    assert all(result[key] > 0 for key in stages) and result["items"] == 20
    # a training item decodes, augments and encodes: slower than each of its stages alone
    assert result["train_samples_per_s"] < min(result[key] for key in stages[1:])
    for label in ("train (augment + targets)", "JPEG decode only", "augmentation only", "target encoding only"):
        assert label in out.stdout


def test_metric_benchmark_writes_its_figures(tmp_path):
    """The one-core part on 20 images: cached annotation rasters make the second pass cheaper."""
    out = subprocess.run([sys.executable, "tools/benchmark.py", "metric", "--images", "20", "--skip-full", "--json",
                          str(tmp_path / "metric.json")], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "metric.json").read_text())
    assert 0 < result["ms_per_image"] < result["ms_per_image_cold"] and result["ms_per_image_wall"] > 0
    assert "full_test_s" not in result and "ms/image CPU with cached annotations" in out.stdout


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


def test_train_benchmark_splits_the_iteration(tmp_path):
    """A tiny config (generated 8 + 4 scene set): the iteration is the data wait plus the step."""
    data = tmp_path / "data"
    out = subprocess.run([sys.executable, "tools/benchmark.py", "train", "--iters", "3", "--warmup", "1",
                          "--accelerator", "cpu", "--json", str(tmp_path / "train.json"), "--set", "img_w=256",
                          "img_h=96", "batch_size=2", "workers=0", f"dataset.data_root={str(data)!r}",
                          "dataset.generate.train=8", "dataset.generate.test=4", "dataset.generate.seed=0",
                          f"dataset.cache_dir={str(tmp_path / 'cache')!r}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "train.json").read_text())
    assert result["device"] == "cpu" and result["batch_size"] == 2 and result["device_step_ms"] is None
    assert abs(result["iteration_ms"] - (result["data_wait_ms"] + result["step_ms"])) < 1e-6
    assert result["step_ms"] > 0 and result["cached_batch_step_ms"] > 0 and 0 <= result["data_wait_share"] < 1
    assert (data / ".complete").exists() and "steady iteration ms" in out.stdout


def test_versus_benchmark_pairs_two_checkouts(tmp_path):
    """This checkout against itself at a tiny size: both figures from fresh processes, their ratio."""
    out = subprocess.run([sys.executable, "tools/benchmark.py", "versus", "--baseline", str(ROOT), "--pairs", "1",
                          "--items", "4", "--iters", "1", "--warmup", "0", "--set", "img_w=256", "img_h=96",
                          "--json", str(tmp_path / "versus.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "versus.json").read_text())
    for key in ("item_cpu_ms", "step_ms"):
        values = {name: [s[key] for s in result["samples"][name]] for name in ("baseline", "ours")}
        assert all(len(v) == 1 and v[0] > 0 for v in values.values())
        assert abs(result["ratios"][key] - values["ours"][0] / values["baseline"][0]) < 1e-9
    assert "training step" in out.stdout and "<= 0.80" in out.stdout
    bad = subprocess.run([sys.executable, "tools/benchmark.py", "versus", "--baseline", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "not a checkout of the project" in bad.stderr and "Traceback" not in bad.stderr
