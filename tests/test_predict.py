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

from helpers.disk import small_disk  # noqa: E402
from helpers.inference import (GEOMETRY_CHANGES, SYNTHETIC, assert_geometry_refused,  # noqa: E402
                               checkpoint_of_other_geometry, exit_status, lane_emitting_net)
from srlane.config import ConfigError  # noqa: E402
from srlane.data.records import DataFormatError  # noqa: E402
from srlane.engine.defaults import load_experiment  # noqa: E402
from srlane.benchmarks.culane import read_lines_file  # noqa: E402
from srlane.benchmarks.curvelanes import read_lines_json  # noqa: E402
from srlane.inference.inputs import InputError, collect_inputs  # noqa: E402
from srlane.inference.model import load_network  # noqa: E402
from srlane.lane_kinds import KNOWN_CATEGORIES  # noqa: E402
from srlane.lanes import culane_lines  # noqa: E402
from srlane.models import backbone, build_net  # noqa: E402
from srlane.models.decode import build_decoder  # noqa: E402
from srlane.models.weights import CheckpointError  # noqa: E402
from tools import predict  # noqa: E402

SIZES = {"a.jpg": (590, 1640), "b.png": (590, 1640), "sub/c.jpg": (720, 1280)}  # name: (height, width)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 256x96 config for CULane's 1640x590 images, a random-init checkpoint and three images
    (one 1280x720)."""
    tmp = tmp_path_factory.mktemp("predict")
    config = tmp / "tiny.py"
    config.write_text(f"_base_ = [{str(SYNTHETIC)!r}]\nimg_w = 256\nimg_h = 96\n")
    cfg = load_experiment(config)
    net = lane_emitting_net(cfg)
    torch.save({"net": net.state_dict()}, tmp / "net.pth")  # as a released checkpoint: no config
    rng = np.random.default_rng(0)
    for name, (h, w) in SIZES.items():
        (tmp / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp / "images" / name), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return tmp, cfg, net


def expected_lines(cfg, net, paths):
    """Independent reference: crop, resize, RGB, /255 by hand; one forward pass over ``paths``."""
    return expected_lines_of(cfg, net, [cv2.imread(str(path)) for path in paths])


def expected_lines_of(cfg, net, images):
    """``expected_lines`` of BGR images in memory (one forward pass over them)."""
    imgs, sizes = [], []
    for img in images:
        sizes.append(img.shape[:2])
        img = cv2.resize(img[cfg.cut_height:], (cfg.img_w, cfg.img_h), interpolation=cv2.INTER_CUBIC)
        imgs.append(torch.from_numpy(cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1).copy()).float() / 255)
    with torch.no_grad():
        output = net(torch.stack(imgs))
    out = []
    for i, (h, w) in enumerate(sizes):
        lanes = build_decoder({**cfg, "ori_img_h": h}, conf_threshold=0.0)(output[i:i + 1])[0]
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
        collect_inputs([str(tmp / "broken.txt")], str(tmp / "images"))
    with pytest.raises(InputError, match=r"nowhere.jpg: no such image, video, folder or list file"):
        collect_inputs([str(tmp / "nowhere.jpg")], None)
    with pytest.raises(InputError, match=r"would both be written as a"):
        collect_inputs([str(tmp / "images" / "a.jpg"), str(tmp / "images")], None)
    for folder in ("one", "two"):
        os.makedirs(tmp / folder, exist_ok=True)
        (tmp / folder / "clip.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"one/clip.mp4 and .*two/clip.mp4 would both be written as clip"):
        collect_inputs([str(tmp / "one" / "clip.mp4"), str(tmp / "two" / "clip.mp4")], None)
    records, videos = collect_inputs([str(tmp / "images" / "a.jpg"), str(tmp / "one" / "clip.mp4")], None)
    assert [r.img_name for r in records] == ["a.jpg"] and videos == [str(tmp / "one" / "clip.mp4")]
    os.makedirs(tmp / "empty", exist_ok=True)
    with pytest.raises(InputError, match=r"empty: no \*.jpg or \*.png files"):
        collect_inputs([str(tmp / "empty")], None)


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


# ---------------------------------------------------------------------------------------------
# Videos, raw outputs, ONNX


def write_video(path, frames, fps):
    """An MJPG .avi (the codec every opencv-python-headless build writes and reads back)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


def road_frames(n, h, w, seed):
    """Smooth frames (a moving gradient and a little noise): small MJPG files, distinct frames."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        base = (xs * 0.1 + ys * 0.3 + 20 * i) % 256
        img = np.stack([base, (base + 80) % 256, (base * 0.5 + 40 * i) % 256], -1)
        frames.append(np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8))
    return frames


def read_frames(path):
    """Every frame OpenCV decodes from ``path``, stopping at the first that fails, and the fps."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def videos(setup):
    tmp, _, _ = setup
    folder = tmp / "videos"
    folder.mkdir(exist_ok=True)
    write_video(folder / "clip.avi", road_frames(7, 590, 1640, 0), 10)  # the config's size
    write_video(folder / "other.avi", road_frames(3, 720, 1280, 1), 5)  # another size: one warning
    return folder


def test_video_frames_give_one_json_line_each_an_annotated_video_and_raw_outputs(setup, videos, capsys):
    tmp, cfg, net = setup
    out = tmp / "out_video"
    summary = predict.main([str(tmp / "tiny.py"), str(videos / "clip.avi"), str(videos / "other.avi"),
                            str(tmp / "images" / "a.jpg"), "--load-from", str(tmp / "net.pth"), "--out", str(out),
                            "--conf-threshold", "0", "--batch", "3", "--workers", "0", "--device", "cpu", "--view",
                            "--save-raw"])
    assert summary["videos"] == 2 and summary["frames"] == 10 and summary["video_errors"] == 0
    assert summary["images"] == 1 and summary["frames_per_s"] > 0
    rows = read_jsonl(out / "clip.lanes.jsonl")
    assert [r["frame"] for r in rows] == list(range(7))
    assert np.allclose([r["time"] for r in rows], np.arange(7) / 10, atol=1e-6)
    # lanes as the hand-made pipeline finds them on the decoded frames, in the tool's batches of 3
    frames, _ = read_frames(videos / "clip.avi")
    expected = sum((expected_lines_of(cfg, net, frames[i:i + 3]) for i in range(0, 7, 3)), [])
    total = 0
    for row, lines in zip(rows, expected):
        reference = [np.array(line.split(), dtype=np.float64).reshape(-1, 2) for line in lines]
        lanes = [np.array(lane, dtype=np.float64) for lane in row["lanes"]]
        assert len(lanes) == len(reference)
        assert all(a.shape == b.shape and np.allclose(a, b, atol=2e-3) for a, b in zip(lanes, reference))
        total += len(lanes)
    assert total > 0
    assert [r["frame"] for r in read_jsonl(out / "other.lanes.jsonl")] == [0, 1, 2]
    assert np.allclose([r["time"] for r in read_jsonl(out / "other.lanes.jsonl")], [0, 0.2, 0.4], atol=1e-6)
    # annotated videos: every frame, the source's frame rate and size
    for name, count, fps, (h, w) in (("clip", 7, 10, (590, 1640)), ("other", 3, 5, (720, 1280))):
        drawn, drawn_fps = read_frames(out / "visualization" / f"{name}.mp4")
        assert len(drawn) == count and drawn_fps == pytest.approx(fps) and drawn[0].shape == (h, w, 3)
    assert not list(out.rglob(".*tmp*"))
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "other.avi is 1280x720, the config expects 1640x590" in err
    # raw outputs: one row per image and frame, in the order predicted, with its geometry
    raw = np.load(out / "raw" / "outputs.npy")
    index = json.loads((out / "raw" / "index.json").read_text())
    assert raw.dtype == np.float32 and raw.shape == (11, 40, 76)
    assert (index["img_w"], index["img_h"], index["num_points"], index["shape"]) == (256, 96, 72, [40, 76])
    assert index["config"] == str(tmp / "tiny.py")
    assert [(r["name"], r.get("frame")) for r in index["rows"]] == (
        [("a.jpg", None)] + [("clip.avi", i) for i in range(7)] + [("other.avi", i) for i in range(3)])
    assert [tuple(r["size"]) for r in index["rows"]] == [(590, 1640)] * 8 + [(720, 1280)] * 3
    assert {r["crop"] for r in index["rows"]} == {270}
    with torch.no_grad():  # frames 3..5 of clip.avi: the tool's second batch
        img = [cv2.cvtColor(cv2.resize(f[270:], (256, 96), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
               for f in frames[3:6]]
        direct = net(torch.from_numpy(np.stack(img).transpose(0, 3, 1, 2).copy()).float() / 255)
    assert np.allclose(raw[4:7], direct.numpy(), atol=1e-5)
    # re-decoded with the same threshold, the raw outputs give the same files
    from tools import redecode

    redecode.main([str(out / "raw"), "--out", str(tmp / "out_redecoded"), "--conf-threshold", "0"])
    for name in ("clip.lanes.jsonl", "other.lanes.jsonl", "a.lines.txt"):
        assert (tmp / "out_redecoded" / name).read_text() == (out / name).read_text()


def test_frames_are_prepared_exactly_as_dataset_items(setup, videos):
    """The video path's preprocessing is the dataset's: the same tensor for the same pixels."""
    tmp, cfg, _ = setup
    from srlane.data.crop import build_crop
    from srlane.data.dataset import build_dataset
    from srlane.data.records import LaneRecord
    from srlane.data.video import prepare_image

    frame = read_frames(videos / "other.avi")[0][1]
    cv2.imwrite(str(tmp / "frame.png"), frame)
    item = build_dataset(cfg, [LaneRecord(str(tmp / "frame.png"), "frame.png")], training=False)[0]
    tensor, cut = prepare_image(frame, cfg.img_w, cfg.img_h, build_crop(cfg))
    assert cut == item["meta"]["cut_height"] and torch.equal(tensor, item["img"])


def test_bad_videos_one_line_each_earlier_frames_kept(setup, tmp_path):
    tmp, _, _ = setup
    (tmp_path / "bad.mp4").write_bytes(b"this is not a video")
    write_video(tmp_path / "full.avi", road_frames(8, 590, 1640, 2), 10)
    data = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "truncated.avi").write_bytes(data[:len(data) // 2])
    kept = len(read_frames(tmp_path / "truncated.avi")[0])
    assert 0 < kept < 8  # OpenCV decodes the frames before the cut and then fails
    write_video(tmp_path / "tiny.avi", road_frames(2, 120, 160, 3), 10)  # the 270-row crop does not fit
    out = tmp_path / "out"
    inputs = [str(tmp_path / n) for n in ("bad.mp4", "truncated.avi", "tiny.avi")] + [str(tmp / "images" / "a.jpg")]
    result = subprocess.run([sys.executable, "tools/predict.py", str(tmp / "tiny.py"), *inputs, "--load-from",
                             str(tmp / "net.pth"), "--out", str(out), "--workers", "0", "--accelerator", "cpu",
                             "--batch", "3", "--view"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert f"error: cannot open video {tmp_path / 'bad.mp4'}; nothing written for it" in lines
    assert (f"error: {tmp_path / 'truncated.avi'}: frame {kept} could not be decoded; kept frames 0..{kept - 1}"
            in lines)
    assert (f"error: {tmp_path / 'tiny.avi'}: cut_height 270 does not fit a 160x120 image; nothing written for it"
            in lines)
    assert [r["frame"] for r in read_jsonl(out / "truncated.lanes.jsonl")] == list(range(kept))
    assert len(read_frames(out / "visualization" / "truncated.mp4")[0]) == kept
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.lines.txt", "truncated.lanes.jsonl", "visualization/a.jpg", "visualization/truncated.mp4"]
    assert "1 images, " in result.stdout and f"1 video(s), {kept} frames" in result.stdout
    assert "3 video(s) with errors" in result.stdout


class StandInOnnxModel:
    """The API of srlane.models.export.OnnxModel (``input_size``, ``check_input_size``,
    ``model(img) -> (B, 40, 76)``, ``decoder``: None, the network alone), here running the
    checkpoint named in a json file: checks predict's wiring without onnxruntime."""

    decoder = None

    def __init__(self, path, threads=None, providers=None):
        spec = json.loads(Path(path).read_text())
        self.input_size = tuple(spec["input_size"])
        self.net = load_network(load_experiment(spec["config"]), spec["checkpoint"], "cpu", note=lambda line: None)

    def check_input_size(self, img_h, img_w):
        if self.input_size != (img_h, img_w):
            raise ValueError(f"stand-in takes {self.input_size[1]}x{self.input_size[0]} images, not {img_w}x{img_h}")

    def __call__(self, img):
        assert img.device.type == "cpu" and img.dtype == torch.uint8  # as the loaders deliver it
        return self.net(img)


def test_onnx_wiring_with_a_stand_in_module(setup, tmp_path, monkeypatch):
    tmp, _, _ = setup
    module = type(sys)("srlane.models.export")
    module.OnnxModel = StandInOnnxModel
    monkeypatch.setitem(sys.modules, "srlane.models.export", module)
    spec = {"config": str(tmp / "tiny.py"), "checkpoint": str(tmp / "net.pth"), "input_size": [96, 256]}
    (tmp_path / "model.onnx").write_text(json.dumps(spec))
    common = [str(tmp / "tiny.py"), str(tmp / "images"), "--conf-threshold", "0", "--workers", "0", "--batch", "2"]
    # the eager network (the stand-in runs it), not the measured fastest path: the same text to the last digit
    predict.main(common + ["--load-from", str(tmp / "net.pth"), "--device", "cpu", "--no-fold-bn", "--no-channels-last",
                           "--out", str(tmp_path / "ckpt")])
    summary = predict.main(common + ["--onnx", str(tmp_path / "model.onnx"), "--out", str(tmp_path / "onnx")])
    assert summary["images"] == 3 and summary["lanes"] > 0
    for path in (tmp_path / "ckpt").rglob("*.lines.txt"):
        assert (tmp_path / "onnx" / path.relative_to(tmp_path / "ckpt")).read_text() == path.read_text()
    (tmp_path / "other.onnx").write_text(json.dumps({**spec, "input_size": [160, 384]}))
    with pytest.raises(ConfigError, match=r"^stand-in takes 384x160 images, not 256x96$"):
        predict.main(common + ["--onnx", str(tmp_path / "other.onnx"), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit):  # --load-from or --onnx, not both
        predict.main([str(tmp / "tiny.py"), "x.jpg", "--out", "o", "--onnx", "m.onnx", "--load-from", "c.pth"])


def test_fold_bn_and_channels_last_write_the_same_lines_files(setup, tmp_path):
    """The shared inference flags on the checkpoint: outputs within 1e-5 of the plain run's
    (measured 1.2e-7), the same lanes with the same rows, x within 0.01 px (measured 1.2e-3 px:
    the files print 5 decimals, so the float rounding shows in the last ones and the bytes
    differ); with --onnx a flag asking for anything but the defaults is one line."""
    tmp, _, _ = setup
    common = [str(tmp / "tiny.py"), str(tmp / "images"), "--conf-threshold", "0", "--workers", "0", "--batch", "2",
              "--load-from", str(tmp / "net.pth"), "--device", "cpu", "--save-raw"]
    predict.main(common + ["--out", str(tmp_path / "plain")])
    summary = predict.main(common + ["--out", str(tmp_path / "fast"), "--fold-bn", "--channels-last"])
    assert summary["images"] == 3 and summary["lanes"] > 0
    assert_same_predictions(tmp_path / "plain", tmp_path / "fast", raw_tolerance=1e-5)
    with pytest.raises(InputError) as err:
        predict.main([str(tmp / "tiny.py"), str(tmp / "images"), "--onnx", str(tmp_path / "m.onnx"), "--fold-bn",
                      "--out", str(tmp_path / "x")])
    assert str(err.value) == ("--onnx runs the exported model as it is; --precision, --fold-bn, --channels-last "
                              "and --compile apply to --load-from checkpoints")


def assert_same_predictions(first, second, raw_tolerance):
    """Two predict.py --save-raw runs over the 3 test images: raw outputs within ``raw_tolerance``
    and the same .lines.txt files up to rounding (the same lanes and rows, x within 0.01 px)."""
    a_raw, b_raw = (np.load(folder / "raw" / "outputs.npy") for folder in (first, second))
    assert a_raw.shape == b_raw.shape == (3, 40, 76) and np.abs(a_raw - b_raw).max() <= raw_tolerance
    files = sorted(first.rglob("*.lines.txt"))
    assert len(files) == 3
    for path in files:
        ours, theirs = read_lines_file(path), read_lines_file(second / path.relative_to(first))
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert a.shape == b.shape and np.array_equal(a[:, 1], b[:, 1]) and np.abs(a - b).max() <= 1e-2


def export_onnx(cfg, net, path):
    """The network as ONNX through the project's exporter (dynamic batch)."""
    from srlane.models.export import export_onnx as export

    export(net, path, cfg.img_h, cfg.img_w)


def test_onnx_model_writes_the_checkpoints_lines_files(setup, tmp_path):
    """With srlane.models.export (and onnxruntime): the network outputs within 1e-4 of the
    checkpoint's and the same .lines.txt files up to rounding: the same lanes with the same rows,
    x within 0.01 px (onnxruntime's float arithmetic differs from PyTorch's by ~1e-6; through the
    spline that is ~1e-3 px at 1640 px); an ONNX file of another input size is one line."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("srlane.models.export")
    tmp, cfg, net = setup
    export_onnx(cfg, net, tmp_path / "model.onnx")
    common = [str(tmp / "tiny.py"), str(tmp / "images"), "--conf-threshold", "0", "--workers", "0", "--batch", "2"]
    predict.main(common + ["--load-from", str(tmp / "net.pth"), "--device", "cpu", "--out", str(tmp_path / "ckpt"),
                           "--save-raw"])
    summary = predict.main(common + ["--onnx", str(tmp_path / "model.onnx"), "--out", str(tmp_path / "onnx"),
                                     "--save-raw"])
    assert summary["images"] == 3 and summary["lanes"] > 0
    assert_same_predictions(tmp_path / "ckpt", tmp_path / "onnx", raw_tolerance=1e-4)
    (tmp_path / "small.py").write_text(f"_base_ = [{str(SYNTHETIC)!r}]\nimg_w = 128\nimg_h = 64\n")
    small_cfg = load_experiment(tmp_path / "small.py")
    export_onnx(small_cfg, build_net(small_cfg, pretrained=False).eval(), tmp_path / "other.onnx")
    result = subprocess.run([sys.executable, "tools/predict.py", *common, "--onnx", str(tmp_path / "other.onnx"),
                             "--out", str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    assert "takes 128x64 images (width x height) but the config expects 256x96" in result.stderr
    (tmp_path / "broken.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(CheckpointError) as err:
        predict.main(common + ["--onnx", str(tmp_path / "broken.onnx"), "--out", str(tmp_path / "y")])
    assert "\n" not in str(err.value) and "broken.onnx" in str(err.value)


def test_onnx_model_with_the_decoder_writes_the_checkpoints_files_without_python_decoding(setup, tmp_path,
                                                                                         monkeypatch, capsys):
    """A file of export --with-decoder: predict's --conf-threshold is fed to its graph and the
    lanes it returns are written as they are (no score, threshold, NMS or point rule in Python:
    those raise here); the files are --load-from's up to rounding (the same lanes and rows, x
    within 0.01 px) at two thresholds that keep different lanes. A file decoding another number
    of lanes than the config's is one line."""
    pytest.importorskip("onnxruntime")
    from srlane.models import decode
    from srlane.models.export import export_onnx as export

    tmp, cfg, net = setup
    export(net, tmp_path / "lanes.onnx", cfg.img_h, cfg.img_w, decoder=build_decoder(cfg))

    def refuse(*args, **kwargs):
        raise AssertionError("decoded in Python")

    lanes = {}
    for conf in ("0", "0.4985"):  # scores here are 0.4979-0.4986: 0.4985 keeps two images' lanes
        common = [str(tmp / "tiny.py"), str(tmp / "images"), "--conf-threshold", conf, "--workers", "0", "--batch", "2",
                  "--save-raw"]
        want = predict.main(common + ["--load-from", str(tmp / "net.pth"), "--device", "cpu",
                                      "--out", str(tmp_path / f"ckpt{conf}")])
        with monkeypatch.context() as patch:
            for name in ("_host", "_keep", "_keep_on_device", "point_mask"):
                patch.setattr(decode.LaneDecoder, name, refuse)
            patch.setattr(decode, "lane_nms", refuse)
            got = predict.main(common + ["--onnx", str(tmp_path / "lanes.onnx"),
                                         "--out", str(tmp_path / f"onnx{conf}")])
        assert "onnxruntime, decoder in the graph" in capsys.readouterr().out
        assert got["images"] == 3 and got["lanes"] == want["lanes"]
        assert_same_predictions(tmp_path / f"ckpt{conf}", tmp_path / f"onnx{conf}", raw_tolerance=1e-4)
        lanes[conf] = got["lanes"]
    assert lanes["0"] > lanes["0.4985"] > 0, lanes
    with pytest.raises(ConfigError) as err:
        predict.main(common + ["--onnx", str(tmp_path / "lanes.onnx"), "--out", str(tmp_path / "x"),
                               "--set", "test_parameters.nms_topk=2"])
    assert str(err.value) == (f"ONNX model {tmp_path / 'lanes.onnx'} decodes with another geometry: top_k 4 in the "
                              "file, 2 here; export it again from this config")


# ---------------------------------------------------------------------------------------------
# The checkpoint against the config, --set


@pytest.mark.parametrize("change", GEOMETRY_CHANGES)
def test_a_checkpoint_of_another_geometry_is_one_line_naming_both_values(setup, tmp_path, capsys, change):
    tmp, cfg, net = setup
    checkpoint, named = checkpoint_of_other_geometry(tmp_path, net, cfg, change)
    argv = [str(tmp / "tiny.py"), str(tmp / "images"), "--load-from", str(checkpoint), "--out", str(tmp_path / "out"),
            "--workers", "0", "--device", "cpu"]
    assert exit_status(predict.main, argv, InputError) == 1
    assert_geometry_refused(capsys.readouterr().err, checkpoint, named)
    assert not (tmp_path / "out").exists()


def test_set_overrides_the_config_and_the_imagenet_weights_are_never_looked_for(setup, tmp_path, monkeypatch,
                                                                               capsys):
    """``--set model.backbone.pretrained=True`` (how the R18 configs train) with the ImageNet
    loader made to fail: the checkpoint gives every weight, so predict never calls it; ``--set
    test_parameters.conf_threshold=0`` writes the files of ``--conf-threshold 0``."""
    tmp, _, _ = setup

    def refuse(depth, pretrained=None):
        if pretrained is not False:  # what a backbone without ImageNet weights passes
            raise AssertionError("the ImageNet weights were looked for")

    common = [str(tmp / "tiny.py"), str(tmp / "images"), "--load-from", str(tmp / "net.pth"), "--workers", "0",
              "--batch", "2", "--device", "cpu"]
    predict.main(common + ["--out", str(tmp_path / "flag"), "--conf-threshold", "0"])
    monkeypatch.setattr(backbone, "find_pretrained", refuse)
    monkeypatch.setattr(backbone, "load_torchvision_weights", refuse)
    summary = predict.main(common + ["--out", str(tmp_path / "set"), "--set", "model.backbone.pretrained=True",
                                     "test_parameters.conf_threshold=0.0"])
    files = sorted(p.relative_to(tmp_path / "flag") for p in (tmp_path / "flag").rglob("*.lines.txt"))
    assert len(files) == 3 and summary["lanes"] > 0
    assert all((tmp_path / "set" / name).read_text() == (tmp_path / "flag" / name).read_text() for name in files)
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {tmp / 'net.pth'} holds no config (a released checkpoint?): its input size, points and "
                     "crop are taken to be this config's"] * 2


def test_a_full_disk_is_one_line_for_the_prediction_files_and_the_raw_outputs(setup, tmp_path, capsys):
    """--out on a small disk: the prediction file that does not fit, then (with room for the
    files) the raw outputs, each stop with one line naming it and exit 1."""
    tmp, _, _ = setup
    disk = tmp_path / "disk"
    argv = [str(tmp / "tiny.py"), str(tmp / "images"), "--load-from", str(tmp / "net.pth"), "--out", str(disk),
            "--conf-threshold", "0", "--accelerator", "cpu", "--workers", "0"]
    with small_disk(disk, 4096) as resize:  # one page: the first .lines.txt file, not the second
        assert exit_status(predict.main, argv, InputError) == 1
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"error: cannot write {disk}") and ".lines.txt: no space left on device (" in line
        resize(5 * 4096)  # the three files, not the 36 KB of raw outputs
        assert exit_status(predict.main, argv + ["--save-raw"], InputError) == 1
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"error: cannot write {disk / 'raw' / 'outputs.npy'}: no space left on device (")
        assert sorted(p.name for p in disk.rglob("*.lines.txt")) == ["a.lines.txt", "b.lines.txt", "c.lines.txt"]
        assert not (disk / "raw" / "outputs.npy").exists()


@pytest.fixture(scope="module")
def kinds_checkpoint(setup):
    """The tiny config with a category head of all 14 kinds and its random-init checkpoint."""
    tmp, _, _ = setup
    config = tmp / "kinds.py"
    config.write_text(f"_base_ = [{str(tmp / 'tiny.py')!r}]\nmodel = dict(num_lane_categories=14)\n")
    torch.save({"net": lane_emitting_net(load_experiment(config)).state_dict()}, tmp / "kinds.pth")
    return config, tmp / "kinds.pth"


@pytest.mark.parametrize("fmt", ["culane", "tusimple", "curvelanes", "openlane"])
def test_a_category_checkpoint_writes_each_lanes_kind_in_every_format(setup, kinds_checkpoint, videos, tmp_path,
                                                                       fmt):
    tmp, _, _ = setup
    config, checkpoint = kinds_checkpoint
    out = tmp_path / "out"
    summary = predict.main([str(config), str(tmp / "images" / "a.jpg"), str(tmp / "images" / "sub" / "c.jpg"),
                            str(videos / "other.avi"), "--load-from", str(checkpoint), "--out", str(out), "--format",
                            fmt, "--conf-threshold", "0", "--workers", "0", "--device", "cpu"])
    assert summary["lanes"] > 0
    per_file = []  # (lanes, kinds) of each written file
    if fmt == "culane":
        for path in out.rglob("*.lines.txt"):
            kinds = path.with_name(path.name.replace(".lines.txt", ".lines.categories.txt")).read_text().split()
            per_file.append((len(read_lines_file(path)), [int(k) for k in kinds]))
    elif fmt == "tusimple":
        for row in map(json.loads, (out / "predictions.json").read_text().splitlines()):
            per_file.append((len(row["lanes"]), row["categories"]))
    elif fmt == "curvelanes":
        for path in out.rglob("*.lines.json"):
            data = json.loads(path.read_text())
            per_file.append((len(data["Lines"]), data["Categories"]))
    else:
        for path in out.rglob("*.json"):
            entries = json.loads(path.read_text())["lane_lines"]
            per_file.append((len(entries), [entry["category"] for entry in entries]))
    for row in read_jsonl(out / "other.lanes.jsonl"):  # the video's lines, whatever the format
        per_file.append((len(row["lanes"]), row.get("categories", [])))
        assert all(0 < score <= 1 for score in row.get("category_scores", []))
    assert len(per_file) == 2 + 3 and sum(lanes for lanes, _ in per_file) > 0
    for lanes, kinds in per_file:
        assert len(kinds) == lanes and all(kind in KNOWN_CATEGORIES for kind in kinds)
