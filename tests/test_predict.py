"""tools/predict.py on a random-init network and small generated images (CPU, seconds)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srlane.data.records import DataFormatError  # noqa: E402
from srlane.engine.defaults import load_experiment  # noqa: E402
from srlane.evaluation.culane import read_lines_file  # noqa: E402
from srlane.evaluation.curvelanes import read_lines_json  # noqa: E402
from srlane.lanes import culane_lines  # noqa: E402
from srlane.models import build_net  # noqa: E402
from srlane.models.decode import LaneDecoder  # noqa: E402
from tools import predict  # noqa: E402

SYNTHETIC = ROOT / "configs" / "srlane_r18_synthetic.py"
SIZES = {"a.jpg": (590, 1640), "b.png": (590, 1640), "sub/c.jpg": (720, 1280)}  # name: (height, width)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 256x96 config for CULane's 1640x590 images, a random-init checkpoint and three images
    (one 1280x720)."""
    tmp = tmp_path_factory.mktemp("predict")
    config = tmp / "tiny.py"
    config.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\nimg_w = 256\nimg_h = 96\n")
    cfg = load_experiment(config)
    torch.manual_seed(0)
    net = build_net(cfg).eval()
    with torch.no_grad():  # random proposals have length ~0; give them the full height so lanes come out
        for name, param in net.named_parameters():
            if name.endswith("reg_layers.bias"):
                param[1] = 1.0
    torch.save({"net": net.state_dict()}, tmp / "net.pth")
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        (tmp / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp / "images" / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return tmp, cfg, net


def expected_lines(cfg, net, paths):
    """Independent reference: crop, resize, RGB, /255 by hand; one forward pass over ``paths``."""
    imgs, sizes = [], []
    for path in paths:
        img = cv2.imread(str(path))
        sizes.append(img.shape[:2])
        img = cv2.resize(img[cfg.cut_height:], (cfg.img_w, cfg.img_h), interpolation=cv2.INTER_CUBIC)
        imgs.append(torch.from_numpy(cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).copy()).float() / 255)
    with torch.no_grad():
        output = net(torch.stack(imgs))
    out = []
    for i, (h, w) in enumerate(sizes):
        lanes = LaneDecoder({**cfg, "ori_img_h": h}, conf_threshold=0.0)(output[i:i + 1])[0]
        out.append(culane_lines(lanes, w, h, cfg.cut_height))
    return out


def test_culane_files_match_a_hand_made_pipeline_one_per_image(setup, capsys):
    tmp, cfg, net = setup
    out = tmp / "out_culane"
    summary = predict.main([str(tmp / "tiny.py"), str(tmp / "images"), "--load-from", str(tmp / "net.pth"),
                            "--out", str(out), "--conf-threshold", "0", "--batch", "2", "--workers", "0",
                            "--device", "cpu", "--view"])
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.lines.txt"))
    assert written == ["a.lines.txt", "b.lines.txt", "sub/c.lines.txt"]
    # batches as the tool forms them: sorted names, two per batch
    paths = [tmp / "images" / n for n in ("a.jpg", "b.png", "sub/c.jpg")]
    expected = expected_lines(cfg, net, paths[:2]) + expected_lines(cfg, net, paths[2:])
    total = 0
    for name, lines in zip(written, expected):
        lanes = read_lines_file(out / name)
        reference = [np.array(line.split(), dtype=np.float32).reshape(-1, 2) for line in lines]
        assert len(lanes) == len(reference)
        assert all(a.shape == b.shape and np.allclose(a, b, atol=1e-4) for a, b in zip(lanes, reference))
        h, w = SIZES[name.replace(".lines.txt", ".png" if name.startswith("b") else ".jpg")]
        assert all((lane[:, 0] >= 0).all() and (lane[:, 0] < w).all() and (lane[:, 1] < h).all() for lane in lanes)
        total += len(lanes)
    assert total > 0 and summary["images"] == 3 and summary["ms_per_image"] > 0
    captured = capsys.readouterr()
    assert "3 images, " in captured.out and " ms per image (network + decoding, batch 2, cpu)" in captured.out
    assert captured.err.count("warning:") == 1 and "c.jpg is 1280x720, the config expects 1640x590" in captured.err
    picture = cv2.imread(str(out / "visualization" / "sub" / "c.jpg"))
    assert picture.shape == (720, 1280, 3)


def test_tusimple_json_lines_from_a_list_file(setup):
    tmp, cfg, net = setup
    (tmp / "list.txt").write_text("/a.jpg mask.png 1 0 1 0\n\nsub/c.jpg\n")
    out = tmp / "out_tusimple"
    summary = predict.main([str(tmp / "tiny.py"), str(tmp / "list.txt"), "--root", str(tmp / "images"),
                            "--load-from", str(tmp / "net.pth"), "--out", str(out), "--format", "tusimple",
                            "--conf-threshold", "0", "--batch", "1", "--workers", "0", "--device", "cpu"])
    rows = [json.loads(line) for line in (out / "predictions.json").read_text().splitlines()]
    assert [r["raw_file"] for r in rows] == ["a.jpg", "sub/c.jpg"]
    # rows from cut_height 270 in steps of 10 below the image height: 32 at 590, 45 at 720
    assert [{len(lane) for lane in r["lanes"]} for r in rows] == [{32}, {45}]
    assert summary["lanes"] == sum(len(r["lanes"]) for r in rows) > 0
    assert all(r["run_time"] > 0 for r in rows)


def test_bad_inputs_name_the_file(setup):
    tmp, _, _ = setup
    (tmp / "broken.txt").write_text("a.jpg\nmissing.jpg\n")
    with pytest.raises(DataFormatError, match=r"broken.txt:2: image not found: .*missing.jpg"):
        predict.collect_images([str(tmp / "broken.txt")], str(tmp / "images"))
    with pytest.raises(predict.InputError, match=r"nowhere.jpg: no such image, folder or list file"):
        predict.collect_images([str(tmp / "nowhere.jpg")], None)
    with pytest.raises(predict.InputError, match=r"would both be written as a"):
        predict.collect_images([str(tmp / "images" / "a.jpg"), str(tmp / "images")], None)
    os.makedirs(tmp / "empty", exist_ok=True)
    with pytest.raises(predict.InputError, match=r"empty: no \*.jpg or \*.png files"):
        predict.collect_images([str(tmp / "empty")], None)


def test_unreadable_image_is_reported_and_the_others_are_predicted(setup, tmp_path):
    tmp, _, _ = setup
    folder = tmp_path / "images"
    shutil.copytree(tmp / "images", folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = subprocess.run([sys.executable, "tools/predict.py", str(tmp / "tiny.py"), str(folder), "--load-from",
                          str(tmp / "net.pth"), "--out", str(tmp_path / "out"), "--workers", "0", "--accelerator", "cpu"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"error: cannot read image {folder / 'broken.jpg'}; nothing written for it" in out.stderr.splitlines()
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.lines.txt"))
    assert written == ["a.lines.txt", "b.lines.txt", "sub/c.lines.txt"]
    assert "3 images, " in out.stdout and "1 unreadable image(s) skipped" in out.stdout


def test_curvelanes_files_for_images_of_the_three_sizes(setup, tmp_path):
    """Each image is cropped by its size's cut_heights entry and its lanes are written in its own
    pixels, every 8 rows from that crop down."""
    tmp, _, _ = setup
    config = tmp_path / "curve.py"
    config.write_text(f"_base_ = [{str(ROOT / 'configs' / 'srlane_r18_curvelanes.py')!r}]\n"
                      "img_w = 256\nimg_h = 96\nmodel = dict(backbone=dict(pretrained=False))\n")
    sizes = {"valid/images/big.jpg": (1440, 2560), "valid/images/wide.jpg": (660, 1570),
             "valid/images/small.jpg": (720, 1280)}
    rng = np.random.default_rng(1)
    for name, (h, w) in sizes.items():
        (tmp_path / "root" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "root" / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (tmp_path / "list.txt").write_text("".join(f"{name}\n" for name in sizes))
    summary = predict.main([str(config), str(tmp_path / "list.txt"), "--root", str(tmp_path / "root"), "--load-from",
                            str(tmp / "net.pth"), "--out", str(tmp_path / "out"), "--format", "curvelanes",
                            "--conf-threshold", "0", "--workers", "0", "--accelerator", "cpu"])
    crops = {"big": 640, "wide": 180, "small": 368}
    total = 0
    for name, (h, w) in sizes.items():
        path = tmp_path / "out" / name.replace(".jpg", ".lines.json")
        lanes = read_lines_json(path)
        for lane in lanes:
            ys = lane[:, 1]
            assert (ys >= crops[path.stem.split(".")[0]]).all() and (ys < h).all()
            assert (lane[:, 0] >= 0).all() and (lane[:, 0] < w).all()
            assert set(np.diff(ys)) <= {-8.0}  # bottom first, every 8 rows
        total += len(lanes)
    assert total > 0 and summary["images"] == 3 and summary["lanes"] == total
