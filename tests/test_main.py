"""main.py: argument parsing and the one-line errors for bad configs, data roots and checkpoints."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import main
from srlane.config import ConfigError
from srlane.engine.defaults import load_experiment
from srlane.models.weights import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT / "configs" / "srlane_r18_synthetic.py"


def experiment(tmp_path, text):
    path = tmp_path / "exp.py"
    path.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\naccelerator = 'cpu'\nimg_w = 256\nimg_h = 96\n" + text)
    return str(path)


def run_main(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """main.py in a fresh process (its exit status and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_release_flag_aliases():
    args = main.parse_args(["c.py", "--validate", "--load_from", "w.pth", "--work_dirs", "out", "--gpus", "0", "1",
                            "--set", "a=1", "b.c='x'", "--seed", "3"])
    assert args.validate_only and args.load_from == "w.pth" and args.work_dir == "out"
    assert args.gpus == [0, 1] and args.set == ["a=1", "b.c='x'"] and args.seed == 3
    assert main.parse_args(["c.py", "--resume"]).resume == "latest"
    assert main.parse_args(["c.py", "--resume", "r.pth"]).resume == "r.pth"
    assert main.parse_args(["c.py"]).resume is None


def test_mistyped_key_stops_with_one_line(tmp_path):
    cfg = experiment(tmp_path, "total_iters = 5\n")
    out = run_main(cfg, "--work-dir", str(tmp_path / "w"))
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: {cfg}: unknown config key 'total_iters'; did you mean 'total_iter'?"
    assert not (tmp_path / "w").exists()


def test_mistyped_override_and_wrong_type(tmp_path):
    cfg = experiment(tmp_path, "")
    with pytest.raises(ConfigError, match=r"--set: unknown config key 'optimiser'; did you mean 'optimizer'"):
        main.main([cfg, "--set", "optimiser.lr=0.1"])
    with pytest.raises(ConfigError, match=r"'batch_size' should be an int like 8, got str 'eight'"):
        main.main([cfg, "--set", "batch_size=eight"])


def test_missing_data_root(tmp_path):
    cfg = experiment(tmp_path, "dataset = dict(generate=None)\n")
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=f"dataset.data_root '{missing}' does not exist"):
        main.main([cfg, "--work-dir", str(tmp_path / "w"), "--set", f"dataset.data_root={missing}"])


def test_wrong_architecture_and_corrupt_checkpoints(tmp_path):
    cfg = experiment(tmp_path, "")
    torch.save({"net": torch.nn.Linear(2, 2).state_dict()}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other.pth does not fit this network .*missing keys \(\d+\): backbone"):
        main.main([cfg, "--validate-only", "--load-from", str(tmp_path / "other.pth"), "--work-dir", str(tmp_path / "w")])
    (tmp_path / "broken.pth").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=r"broken.pth: not a readable torch checkpoint"):
        main.main([cfg, "--resume", str(tmp_path / "broken.pth"), "--work-dir", str(tmp_path / "w")])


def test_resume_latest_needs_a_run(tmp_path):
    cfg = experiment(tmp_path, f"work_dirs = {str(tmp_path / 'runs')!r}\n")
    with pytest.raises(FileNotFoundError, match="--resume: no last.pth under"):
        main.main([cfg, "--resume"])
    run = tmp_path / "runs" / "exp" / "20250101_000000"
    run.mkdir(parents=True)
    (run / "last.pth").write_bytes(b"")
    assert main.latest_checkpoint(str(tmp_path / "runs"), cfg) == str(run / "last.pth")


def test_training_split_too_small_for_one_step_stops_with_one_line(tmp_path):
    root = tmp_path / "data"
    (root / "list").mkdir(parents=True)
    cv2.imwrite(str(root / "a.jpg"), np.full((590, 1640, 3), 80, np.uint8))
    (root / "a.lines.txt").write_text("")
    (root / "list" / "small.txt").write_text("a.jpg\n")
    cfg = experiment(tmp_path, f"dataset = dict(data_root={str(root)!r}, train_split='list/small.txt', generate=None, "
                               f"cache_dir={str(tmp_path / 'cache')!r})\nbatch_size = 2\nworkers = 0\n")
    out = run_main(cfg, "--work-dir", str(tmp_path / "w"), timeout=240)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        "error: the training split has 1 images, fewer than one step needs (batch_size 2 x accumulate 1 x 1 process(es)); "
        "lower batch_size or accumulate, or use a larger split")


def test_config_that_is_not_python_stops_with_one_line(tmp_path):
    cfg = experiment(tmp_path, "total_iter = (5\n")
    out = run_main(cfg, "--work-dir", str(tmp_path / "w"))
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: {cfg}:5: not valid Python: '(' was never closed"
    broken = experiment(tmp_path, "batch_size = workers * 2\n")
    with pytest.raises(ConfigError, match=rf"^{broken}:5: NameError: name 'workers' is not defined$"):
        main.main([broken])


def test_input_size_not_a_multiple_of_32_and_work_dir_below_a_file(tmp_path):
    cfg = experiment(tmp_path, "")
    with pytest.raises(ConfigError, match=r"^config img_h=80 must be a multiple of 32 \(strides 8, 16, 32\)$"):
        main.main([cfg, "--set", "img_h=80", "--work-dir", str(tmp_path / "w")])
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=rf"^--work-dir {tmp_path}/file/run: {tmp_path}/file is a file, not a folder$"):
        main.main([cfg, "--work-dir", str(tmp_path / "file" / "run")])


def test_accelerator_flag_overrides_the_config(tmp_path):
    cfg = experiment(tmp_path, "")
    with pytest.raises(ConfigError, match="accelerator 'cuda' asked for, but torch .* sees no CUDA device"):
        main.main([cfg, "--accelerator", "cuda", "--work-dir", str(tmp_path / "w")])
    assert main.parse_args([cfg, "--accelerator", "cpu"]).accelerator == "cpu"


def test_checkpoint_names_resolve_in_a_run_folder(tmp_path):
    from srlane.engine.checkpoint import resolve_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    for name in ("last.pth", "iter_10.pth", "iter_8.pth", "best.pth", "config.py"):
        (run / name).write_bytes(b"")
    assert resolve_checkpoint(str(run), "best.pth") == str(run / "best.pth")
    assert resolve_checkpoint(str(run), "last.pth") == str(run / "last.pth")
    for name in ("best", "last", "iter_8", "iter_10.pth"):
        assert resolve_checkpoint(str(run / name), "last.pth") == str(run / (name.removesuffix(".pth") + ".pth"))
    message = rf"^--resume {run}/iter_9: no iter_9.pth in {run}; it holds best.pth, last.pth, iter_8.pth, iter_10.pth$"
    with pytest.raises(CheckpointError, match=message):
        resolve_checkpoint(str(run / "iter_9"), "last.pth", "--resume")
    (run / "best.pth").unlink()
    with pytest.raises(CheckpointError, match=rf"^--load-from {run}: no best.pth in {run}; it holds last.pth, iter_8"):
        resolve_checkpoint(str(run), "best.pth", "--load-from")
    with pytest.raises(CheckpointError, match=rf"^--load-from {tmp_path}/nowhere/best: no such file or folder$"):
        resolve_checkpoint(str(tmp_path / "nowhere" / "best"), "best.pth", "--load-from")


def test_load_from_and_resume_take_a_run_folder(tmp_path, monkeypatch):
    calls = []

    class FakeRunner:
        def train(self):
            calls.append(("train",))

    def fake_build_runner(cfg, work_dir, **kwargs):
        calls.append(("build", work_dir, kwargs["load_from"], kwargs["resume"]))
        return FakeRunner()

    monkeypatch.setattr(main, "build_runner", fake_build_runner)
    cfg = experiment(tmp_path, "")
    run, other = tmp_path / "run", tmp_path / "other"
    for folder in (run, other):
        folder.mkdir()
        for name in ("best.pth", "last.pth", "iter_4.pth"):
            (folder / name).write_bytes(b"")
    main.main([cfg, "--resume", str(run), "--load-from", str(other)])
    assert calls == [("build", str(run), str(other / "best.pth"), str(run / "last.pth")), ("train",)]
    calls.clear()
    main.main([cfg, "--resume", str(run / "iter_4")])
    assert calls == [("build", str(run), None, str(run / "iter_4.pth")), ("train",)]


def test_checkpoint_of_another_geometry_stops_with_one_line(tmp_path):
    """--validate-only --load-from a checkpoint trained at another input width: one line naming
    both values, before any data is read or generated."""
    cfg = experiment(tmp_path, f"dataset = dict(data_root={str(tmp_path / 'data')!r})\n")
    trained = {**load_experiment(cfg).to_dict(), "img_w": 512}
    torch.save({"net": {}, "config": trained}, tmp_path / "wide.pth")
    out = run_main(cfg, "--validate-only", "--load-from", str(tmp_path / "wide.pth"), "--work-dir", str(tmp_path / "w"))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (f"error: {tmp_path / 'wide.pth'} was trained with another network geometry: img_w 512 "
                                  "in the checkpoint, 256 in this config; use the config it was trained with (its run "
                                  "folder's config.py)")
    assert not (tmp_path / "data").exists()


def test_unknown_checkpoint_name_stops_with_one_line(tmp_path):
    cfg = experiment(tmp_path, "")
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pth").write_bytes(b"")
    out = run_main(cfg, "--validate-only", "--load-from", str(run / "bset"))
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: --load-from {run}/bset: no bset.pth in {run}; it holds last.pth"
