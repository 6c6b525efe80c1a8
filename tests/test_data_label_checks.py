"""Labels that cannot be true, in each benchmark's format: one line naming the file, the line or
lane, the value and what was expected; dataset.on_bad_label="skip" leaves training images out
(counted, logged, summarised); a cache cannot hide a bad label; main.py stops with one line."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import main
from srlane import synthetic
from srlane.benchmarks import CULane, CurveLanes, TuSimple, culane, curvelanes, tusimple
from srlane.data.crop import Crop
from srlane.data.label_checks import SkippedLabels, check_lane, clean_lane, records_pass
from srlane.data.records import DataFormatError, LaneRecord, read_list
from srlane.engine.hooks import SkippedLabelsHook
from srlane.engine.state import TrainState

ROOT = Path(__file__).resolve().parents[1]
ERROR_HINT = " (dataset.on_bad_label='skip' leaves such training images out)"
NAMES = ("d/c/0.jpg", "d/c/1.jpg")


def image(path, width=16, height=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))


def culane_set(root, first_label):
    """Two training images in the CULane layout; the first one's label is ``first_label``."""
    for name, text in zip(NAMES, (first_label, "10 300 20 290\n")):
        image(root / name)
        (root / name).with_suffix(".lines.txt").write_text(text)
    (root / "list").mkdir()
    (root / "list" / "train.txt").write_text("".join(f"/{name}\n" for name in NAMES))
    return root / NAMES[0].replace(".jpg", ".lines.txt")


def culane_benchmark(tmp_path, on_bad_label="error"):
    return CULane(str(tmp_path / "CULane"), Crop(270), (590, 1640), str(tmp_path / "cache"), on_bad_label)


CULANE_CASES = [
    ("1 2 3 4\n5 nan 7 8\n", 2, "value 'nan' is not a finite number; expected x y pairs of finite numbers"),
    ("1 2 3 1e999\n", 1, "value '1e999' is not a finite number; expected x y pairs of finite numbers"),
    ("1 2 3 4\n\n1 2 3\n", 3, "odd number of values (3); expected x y pairs"),
    ("1 2 x 4\n", 1, "non-numeric value 'x'; expected x y pairs of numbers"),
    ("10 100 30 100 20 90\n", 1, "points (10, 100) and (30, 100) lie in one row; expected one point per row"),
    ("10 100 20 100 30 100\n", 1, "points (10, 100) and (20, 100) lie in one row; expected one point per row"),
    ("1 2 3 4\n5 50 -1 40 5 50\n", 2, "2 points, all at (5, 50); expected at least two distinct points"),
    ("10 100 4000 90\n", 1, "point (4000, 90) is outside the 1640x590 image by more than the margin; "
                            "expected x in [-1640, 3280], y in [-590, 1180]"),
]


@pytest.mark.parametrize("text, line, message", CULANE_CASES)
def test_culane_bad_label_is_one_line_naming_file_line_and_value(tmp_path, text, line, message):
    path = culane_set(tmp_path / "CULane", text)
    with pytest.raises(DataFormatError) as info:
        culane_benchmark(tmp_path).read_split("list/train.txt", True)
    assert str(info.value) == f"{path}:{line}: {message}{ERROR_HINT}"


def test_culane_same_point_twice_is_kept_once_and_negative_points_stay_absent(tmp_path):
    culane_set(tmp_path / "CULane", "10 100 10 100 20 90 -2 80\n-5 60 7 50\n")
    records = culane_benchmark(tmp_path).read_split("list/train.txt", True)
    assert [lane.tolist() for lane in records[0].lanes] == [[[10, 100], [20, 90]]]


def tusimple_set(root, first_line):
    """A TuSimple root whose train split is ``first_line`` (a json text line) and one good label."""
    good = {"lanes": [[-2, 10, 20]], "h_samples": [240, 250, 260], "raw_file": "clips/b/20.jpg"}
    for name in ("clips/a/20.jpg", "clips/b/20.jpg"):
        image(root / name)
    (root / "label_data_0313.json").write_text(first_line + "\n" + json.dumps(good) + "\n")
    (root / "label_data_0601.json").write_text("")
    return root / "label_data_0313.json"


def tusimple_line(lanes, h_samples):
    return f'{{"lanes": {lanes}, "h_samples": {h_samples}, "raw_file": "clips/a/20.jpg"}}'


TUSIMPLE_CASES = [
    ("[[1, NaN]]", "[240, 250]", "lane 0 value 1: nan is not a finite number; expected a list of finite numbers"),
    ("[[1, 2]]", "[240, Infinity]", "h_samples value 1: inf is not a finite number; expected a list of finite numbers"),
    ("[[-2, 5], [1]]", "[240, 250]", "lane 1 has 1 values for 2 h_samples; expected one x per h_sample"),
    ('[[-2, "12"]]', "[240, 250]", "lane 0 value 1: '12' is not a number; expected a list of finite numbers"),
    ("[[10, 20, 30]]", "[240, 240, 250]",
     "lane 0: points (10, 240) and (20, 240) lie in one row; expected one point per row"),
    ("[[-2, 7, 7]]", "[240, 250, 250]", "lane 0: 2 points, all at (7, 250); expected at least two distinct points"),
    ("[[1, 2], [3000, 10]]", "[240, 250]", "lane 1: point (3000, 240) is outside the 1280x720 image by more than "
                                           "the margin; expected x in [-1280, 2560], y in [-720, 1440]"),
]


@pytest.mark.parametrize("lanes, h_samples, message", TUSIMPLE_CASES)
def test_tusimple_bad_label_is_one_line_naming_file_line_lane_and_value(tmp_path, lanes, h_samples, message):
    path = tusimple_set(tmp_path / "tusimple", tusimple_line(lanes, h_samples))
    benchmark = TuSimple(str(tmp_path / "tusimple"), Crop(160), (720, 1280), str(tmp_path / "cache"))
    with pytest.raises(DataFormatError) as info:
        benchmark.read_split("train", True)
    assert str(info.value) == f"{path}:1: {message}{ERROR_HINT}"


def curvelanes_set(root, first_lines):
    """A CurveLanes train split of two 64x32 images; the first label's "Lines" is ``first_lines``."""
    names = ("train/images/a.jpg", "train/images/b.jpg")
    for name, lines in zip(names, (first_lines, [[{"x": "1", "y": "30"}, {"x": "2", "y": "20"}]])):
        image(root / name, 64, 32)
        label = root / name.replace("images", "labels").replace(".jpg", ".lines.json")
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(json.dumps({"Lines": lines}))
    (root / "train" / "train.txt").write_text("".join(name + "\n" for name in names))
    return root / "train" / "train.txt", root / "train" / "labels" / "a.lines.json"


def points(*xy):
    return [{"x": x, "y": y} for x, y in xy]


GOOD = points(("1", "30"), ("2", "20"))
CURVELANES_CASES = [
    ([GOOD, points(("1", "30"), ("nan", "20"))], "lane 1 point 1: x 'nan' is not a finite number"),
    ([points(("1", "30"), ("abc", "20"))], "lane 0 point 1: x 'abc' is not a number"),
    ([[{"x": "1", "y": "30"}, {"x": "3"}]], "lane 0 point 1: {'x': '3'}, expected {\"x\": ..., \"y\": ...}"),
    ([GOOD, points(("5", "10"), ("9", "10"))], "lane 1: points (5, 10) and (9, 10) lie in one row; expected one "
                                               "point per row"),
    ([points(("5", "10"), ("5", "10"))], "lane 0: 2 points, all at (5, 10); expected at least two distinct points"),
    ([points(("1", "30"), ("-70", "20"))], "lane 0: point (-70, 20) is outside the 64x32 image by more than the "
                                           "margin; expected x in [-64, 128], y in [-32, 64]"),
]


@pytest.mark.parametrize("lines, message", CURVELANES_CASES)
def test_curvelanes_bad_label_is_one_line_naming_file_lane_and_value(tmp_path, lines, message):
    list_path, label = curvelanes_set(tmp_path / "cl", lines)
    benchmark = CurveLanes(str(tmp_path / "cl"), Crop(0), None, str(tmp_path / "cache"))
    with pytest.raises(DataFormatError) as info:
        benchmark.read_split("train", True)
    assert str(info.value) == f"{list_path}:1: malformed label: {label}: {message}{ERROR_HINT}"


def test_curvelanes_keeps_one_point_lanes_and_negative_points_within_the_margin(tmp_path):
    curvelanes_set(tmp_path / "cl", [points(("3", "5")), points(("-10", "12"), ("4", "31"), ("4", "31"))])
    records = CurveLanes(str(tmp_path / "cl"), Crop(0), None, str(tmp_path / "cache")).read_split("train", True)
    assert [lane.tolist() for lane in records[0].lanes] == [[[3, 5]], [[4, 31], [-10, 12]]]  # bottom first


def test_skip_leaves_training_images_out_one_line_each_and_refuses_for_validation(tmp_path):
    path = culane_set(tmp_path / "CULane", "1 2 3 4\n5 nan 7 8\n")
    lines = []
    records = culane_benchmark(tmp_path, "skip").read_split("list/train.txt", True, lines.append)
    assert [r.img_name for r in records] == [NAMES[1]]
    assert lines == [f"skipped {NAMES[0]}: {path}:2: value 'nan' is not a finite number; expected x y pairs of "
                     "finite numbers"]
    with pytest.warns(UserWarning, match=rf"skipped {NAMES[0]}: .*0\.lines\.txt:2: value 'nan'"):
        assert len(culane_benchmark(tmp_path, "skip").read_split("list/train.txt", True)) == 1
    for on_bad_label in ("skip", "error"):
        with pytest.raises(DataFormatError) as info:
            culane_benchmark(tmp_path, on_bad_label).read_split("list/train.txt", False)
        assert str(info.value) == (f"{path}:2: value 'nan' is not a finite number; expected x y pairs of finite "
                                   "numbers (dataset.on_bad_label='skip' leaves out training images only: a split "
                                   "that is validated or scored keeps every image)")


def test_on_bad_label_must_be_error_or_skip():
    from srlane.benchmarks import build_benchmark
    from srlane.config import Config, ConfigError

    cfg = Config(dataset=dict(type="culane", data_root="x", on_bad_label="skpi"), ori_img_w=1640, ori_img_h=590,
                 cut_height=270)
    with pytest.raises(ConfigError, match=r"^dataset.on_bad_label must be one of error, skip, got 'skpi'; "
                                          r"closest: 'skip'$"):
        build_benchmark(cfg)
    cfg.dataset.on_bad_label = "skip"
    assert build_benchmark(cfg).on_bad_label == "skip"


def test_a_bad_label_is_cached_as_bad(tmp_path, monkeypatch):
    path = culane_set(tmp_path / "CULane", "10 100 4000 90\n")
    with pytest.raises(DataFormatError, match="outside the 1640x590 image"):
        culane_benchmark(tmp_path).read_split("list/train.txt", True)
    monkeypatch.setattr(culane, "parse_culane_list", lambda *a, **k: pytest.fail("the cache was not used"))
    lines = []
    assert len(culane_benchmark(tmp_path, "skip").read_split("list/train.txt", True, lines.append)) == 1
    assert lines[0].startswith(f"skipped {NAMES[0]}: {path}:1: point (4000, 90) is outside")


def test_a_cache_holding_a_bad_lane_is_read_again_and_names_the_line(tmp_path):
    """A cache made before the checks (here: one whose lane is made non-finite, as an unchecked
    reader cached a ``nan`` line) does not hide the label: the split is read again."""
    from srlane.data import cache

    path = culane_set(tmp_path / "CULane", "1 2 3 4\n")
    culane_benchmark(tmp_path).read_split("list/train.txt", True)
    (cache_file,) = (tmp_path / "cache").iterdir()
    with np.load(cache_file) as data:
        key = json.loads(data["meta"].tobytes().decode())["key"]
    records = cache.load_records(str(cache_file), key)
    records[0].lanes = [np.array([[1, 2], [np.nan, 4]], np.float32)]
    cache.save_records(str(cache_file), records, key)
    path.write_text("1 2 nan 4\n")  # per-image files are not part of the key: the cache alone would hide it
    with pytest.raises(DataFormatError) as info:
        culane_benchmark(tmp_path).read_split("list/train.txt", True)
    assert str(info.value) == f"{path}:1: value 'nan' is not a finite number; expected x y pairs of finite numbers" \
                              f"{ERROR_HINT}"


def test_records_pass_agrees_with_check_lane_on_random_lanes():
    rng = np.random.default_rng(0)
    size = (590, 1640)
    values = (np.array([1.0, 2.0, 3.0, 4000.0, -2000.0, np.nan]), np.array([1.0, 2.0, 3.0, 5.0, 1300.0]))
    outcomes = set()
    for _ in range(2000):
        lanes = [np.stack([rng.choice(values[0], n), rng.choice(values[1], n)], axis=1).astype(np.float32)
                 for n in rng.integers(1, 6, rng.integers(1, 4))]

        def kept(lane):
            try:
                return len(check_lane(lane, size)) == len(lane)
            except ValueError:
                return False

        expected = all(map(kept, lanes))
        assert records_pass([LaneRecord("a", "a", lanes[:1]), LaneRecord("b", "b", lanes[1:])], size) == expected
        outcomes.add(expected)
    assert outcomes == {True, False}


def test_check_lane_and_clean_lane_values():
    np.testing.assert_array_equal(check_lane([[5, 10], [6, 20], [5, 10]]), [[5, 10], [6, 20]])
    assert check_lane([[5, 10]]).tolist() == [[5, 10]]  # one point: kept (CurveLanes scores it)
    assert clean_lane([[5, 10], [-2, 20]]) is None and clean_lane([[5, 10], [-1, -1], [-3, 4]]) is None
    with pytest.raises(ValueError, match=r"^2 points, all at \(5, 10\); expected at least two distinct points$"):
        clean_lane([[5, 10], [5, 10], [-1, -1]])
    assert check_lane([[3280, 1180], [-1640, -590]], (590, 1640)).shape == (2, 2)  # the margin's edges
    with pytest.raises(ValueError, match=r"^point \(3280\.5, 1180\) is outside"):
        check_lane([[3280.5, 1180], [0, 0]], (590, 1640))


def test_scoring_ground_truth_and_predictions_that_are_not_finite_are_one_line(tmp_path):
    (tmp_path / "list.txt").write_text("a.jpg\n")
    (tmp_path / "a.lines.txt").write_text("1 2 3 4\n1 2 inf 4\n")
    with pytest.raises(DataFormatError, match=r"a\.lines\.txt:2: value 'inf' is not a finite number"):
        culane.scoring_records(str(tmp_path / "list.txt"), str(tmp_path))
    gt = tmp_path / "gt.json"
    gt.write_text(tusimple_line("[[1, NaN]]", "[240, 250]") + "\n")
    with pytest.raises(DataFormatError, match=r"gt\.json:1: lane 0 value 1: nan is not a finite number"):
        tusimple.scoring_records(str(gt))
    record = LaneRecord("/r/clips/a/20.jpg", "clips/a/20.jpg", h_samples=(240, 250))
    pred = tmp_path / "predictions.json"
    pred.write_text('{"raw_file": "clips/a/20.jpg", "lanes": [[NaN, 5000]], "run_time": 1}\n')
    with pytest.raises(DataFormatError, match=r"predictions\.json:1: image 'clips/a/20\.jpg': predicted lane 0 "
                                              r"value 0: nan is not a finite number"):
        tusimple.read_predictions([record], str(pred))
    pred.write_text('{"raw_file": "clips/a/20.jpg", "lanes": [[-2, 5000]], "run_time": 1}\n')
    assert tusimple.read_predictions([record], str(pred))[0][0].tolist() == [[5000, 250]]  # no margin on predictions
    list_path, label = curvelanes_set(tmp_path / "cl", [points(("5", "10"), ("9", "10"))])
    assert len(curvelanes.scoring_records(str(tmp_path / "cl"), str(list_path))[0].lanes[0]) == 2  # as official


def test_the_summary_comes_once_at_the_end_of_the_first_epoch():
    lines = []
    skipped = SkippedLabels(lines.append)
    hook, state = SkippedLabelsHook(skipped, lines.append), TrainState(epoch=2)  # a run resumed in epoch 2
    hook.before_train(state)
    skipped("skipped a.jpg: a.lines.txt:1: x")
    skipped("skipped b.jpg: b.lines.txt:3: y")
    hook.before_step(state)
    assert len(lines) == 2
    state.epoch = 3
    hook.after_validation(state, {"metric": 0.0}, False)
    hook.before_step(state)
    hook.after_train(state)
    assert lines[2:] == ["2 training images skipped for bad labels (dataset.on_bad_label='skip'), each logged when "
                         "the split was read; the first: skipped a.jpg: a.lines.txt:1: x"]
    quiet = []
    empty = SkippedLabelsHook(SkippedLabels(quiet.append), quiet.append)
    empty.before_train(state)
    empty.after_train(state)
    assert quiet == []


@pytest.fixture(scope="module")
def bad_set(tmp_path_factory):
    """4 training and 2 test scenes of the synthetic CULane set, the second training label with a
    ``nan``; the experiment config trains 2 steps of 2 images at 256x96 on CPU."""
    folder = tmp_path_factory.mktemp("labels")
    synthetic.generate(folder / "data", "culane", 4, 2, seed=0, progress=False)
    names = [entry.name for entry in read_list(folder / "data" / "list" / "train_gt.txt")]
    label = folder / "data" / culane.lines_file_name(names[1])
    label.write_text(label.read_text() + "100 300 nan 290\n")
    line = len(label.read_text().splitlines())
    cfg = folder / "exp.py"
    cfg.write_text(
        f"_base_ = [{str(ROOT / 'configs' / 'srlane_r18_synthetic.py')!r}]\n"
        "accelerator = 'cpu'\nimg_w = 256\nimg_h = 96\n"
        f"dataset = dict(data_root={str(folder / 'data')!r}, generate=dict(train=4, test=2, seed=0), "
        f"cache_dir={str(folder / 'cache')!r})\n"
        "batch_size = 2\nworkers = 0\ntotal_iter = 2\neval_ep = 100\nsave_interval = 100\nlog_interval = 1\n"
        "scheduler = dict(type='warmup_cosine', warmup_iter=1)\nmodel = dict(backbone=dict(pretrained=False))\n")
    return folder, names[1], f"{label}:{line}: value 'nan' is not a finite number; expected x y pairs of finite numbers"


def test_main_stops_at_a_bad_label_with_one_line(bad_set):
    folder, _, message = bad_set
    out = subprocess.run([sys.executable, "main.py", str(folder / "exp.py"), "--work-dir", str(folder / "stopped")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"error: {message}{ERROR_HINT}"


def test_main_with_skip_trains_on_and_counts_the_skipped_image(bad_set):
    folder, name, message = bad_set
    main.main([str(folder / "exp.py"), "--work-dir", str(folder / "skipped"), "--set", "dataset.on_bad_label='skip'"])
    log = (folder / "skipped" / "log.txt").read_text()
    assert f"skipped {name}: {message}\n" in log
    assert (f"1 training images skipped for bad labels (dataset.on_bad_label='skip'), each logged when the split "
            f"was read; the first: skipped {name}: {message}\n") in log
    assert (folder / "skipped" / "last.pth").is_file()
