"""CULane / TuSimple readers and the annotation cache, on hand-written files; each benchmark's
prediction files read back as they were written."""
import json
import os

import cv2
import numpy as np
import pytest

from srlane.benchmarks import CULane, CurveLanes, TuSimple
from srlane.data import cache as cache_module
from srlane.benchmarks.culane import load_culane
from srlane.data.crop import Crop
from srlane.data.records import DataFormatError, LaneRecord
from srlane.benchmarks.tusimple import load_tusimple
from srlane.lanes import Lane, lanes_pixel_points


def write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_image(path, value=0, size=(8, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), value, np.uint8))


def culane_root(root, lines_text):
    """A CULane root with three training frames; frame 0's annotation is ``lines_text``."""
    names = [f"driver_1/clip.MP4/{i:05d}.jpg" for i in range(3)]
    for i, name in enumerate(names):
        write_image(root / name, value=40 * i)
        write(root / name.replace(".jpg", ".lines.txt"), lines_text if i == 0 else "")
    write(root / "list" / "train_gt.txt",
          "".join(f"/{n} /laneseg_label_w16/{n[:-3]}png 1 1 0 0 \n" for n in names))
    write(root / "list" / "test.txt", "".join(f"/{n}\n" for n in names))
    write(root / "list" / "test_split" / "test0_normal.txt", f"{names[0]}\n")
    write(root / "list" / "test_split" / "test8_night.txt", f"{names[2]}\n")
    return names


def test_culane_train_list_with_flags_negatives_short_lanes_and_trailing_spaces(tmp_path):
    text = ("10.5 100 -1 90 20.25 80 30 70 \n"   # negative point dropped
            "5 50 \n"                             # one point: lane dropped
            "-2 40 -3 30 7 20\n"                  # one real point left: dropped
            "1 2 3 4\n")
    names = culane_root(tmp_path / "CULane", text)
    records = load_culane(str(tmp_path / "CULane"), "train", cache_dir=str(tmp_path / "cache"))
    assert [r.img_name for r in records] == names
    first = records[0]
    assert first.img_path == os.path.join(str(tmp_path / "CULane"), names[0])
    assert first.mask_path.endswith("laneseg_label_w16/driver_1/clip.MP4/00000.png")
    assert first.lane_exist == (1, 1, 0, 0)
    assert len(first.lanes) == 2
    np.testing.assert_array_equal(first.lanes[0], np.array([[10.5, 100], [20.25, 80], [30, 70]], np.float32))
    np.testing.assert_array_equal(first.lanes[1], np.array([[1, 2], [3, 4]], np.float32))
    assert first.lanes[0].dtype == np.float32
    assert records[1].lanes == [] and records[0].category is None


def test_culane_test_split_categories(tmp_path):
    names = culane_root(tmp_path / "CULane", "1 2 3 4\n")
    records = load_culane(str(tmp_path / "CULane"), "test", cache_dir=str(tmp_path / "cache"))
    assert [r.category for r in records] == ["normal", None, "night"]
    assert records[0].mask_path is None and records[0].lane_exist is None
    assert records[2].img_name == names[2]


@pytest.mark.parametrize("text, message", [
    ("1 2 3 4\n1 2 3\n", "odd number of values"),
    ("1 2 3 4\n1 2 x 4\n", "non-numeric"),
])
def test_culane_malformed_annotation_names_file_and_line(tmp_path, text, message):
    culane_root(tmp_path / "CULane", text)
    with pytest.raises(DataFormatError, match=message) as info:
        CULane(str(tmp_path / "CULane"), Crop(0), cache_dir=str(tmp_path / "cache")).read_split("train", True)
    assert info.value.path.endswith("00000.lines.txt") and info.value.line == 2


def test_culane_missing_image_names_list_and_line(tmp_path):
    names = culane_root(tmp_path / "CULane", "")
    os.remove(tmp_path / "CULane" / names[1])
    with pytest.raises(DataFormatError, match="image not found") as info:
        load_culane(str(tmp_path / "CULane"), "test", cache_dir=str(tmp_path / "cache"))
    assert info.value.path.endswith(os.path.join("list", "test.txt")) and info.value.line == 2


def test_culane_bad_flags_and_unknown_split(tmp_path):
    root = tmp_path / "CULane"
    culane_root(root, "")
    write(root / "list" / "train_gt.txt", "/driver_1/clip.MP4/00000.jpg /m.png 1 2 0 0\n")
    with pytest.raises(DataFormatError, match="train_gt.txt:1: lane flags"):
        load_culane(str(root), "train", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="unknown CULane split 'bogus'"):
        load_culane(str(root), "bogus")


def test_duplicate_filter_drops_near_identical_frames(tmp_path):
    root = tmp_path / "CULane"
    names = [f"d/c/{i}.jpg" for i in range(4)]
    for name, value in zip(names, [0, 10, 200, 205]):   # diffs to previous: 10, 190, 5
        write_image(root / name, value=value)
        write(root / name.replace(".jpg", ".lines.txt"))
    write(root / "list" / "train_gt.txt", "".join(f"/{n}\n" for n in names))
    kept = load_culane(str(root), "train", cache_dir=str(tmp_path / "c"), filter_duplicates=True)
    assert [r.img_name for r in kept] == [names[0], names[2]]
    assert len(load_culane(str(root), "train", cache_dir=str(tmp_path / "c"))) == 4


def test_cache_is_reused_and_never_stale_across_roots(tmp_path, monkeypatch):
    culane_root(tmp_path / "a", "1 2 3 4\n")
    culane_root(tmp_path / "b", "5 6 7 8 9 10\n")
    cache_dir = str(tmp_path / "cache")
    a = load_culane(str(tmp_path / "a"), "train", cache_dir=cache_dir)
    b = load_culane(str(tmp_path / "b"), "train", cache_dir=cache_dir)
    assert len(os.listdir(cache_dir)) == 2
    assert a[0].img_path.startswith(str(tmp_path / "a")) and b[0].img_path.startswith(str(tmp_path / "b"))
    np.testing.assert_array_equal(b[0].lanes[0], [[5, 6], [7, 8], [9, 10]])

    calls = []
    monkeypatch.setattr("srlane.benchmarks.culane.parse_culane_list", lambda *a, **k: calls.append(1) or [])
    again = load_culane(str(tmp_path / "b"), "train", cache_dir=cache_dir)
    assert calls == [] and [r.img_name for r in again] == [r.img_name for r in b]
    np.testing.assert_array_equal(again[0].lanes[0], b[0].lanes[0])
    assert again[0].lane_exist == (1, 1, 0, 0)

    list_path = tmp_path / "b" / "list" / "train_gt.txt"
    list_path.write_text(list_path.read_text().splitlines()[0] + "\n")   # list edited: new key
    load_culane(str(tmp_path / "b"), "train", cache_dir=cache_dir)
    assert calls == [1]


def test_cache_default_dir_is_under_project_datasets():
    assert cache_module.DEFAULT_CACHE_DIR.endswith(os.path.join("datasets", ".cache"))
    assert os.path.isdir(os.path.join(cache_module.PROJECT_ROOT, "srlane"))


def tusimple_root(root, extra_line=None):
    lines = [
        {"lanes": [[-2, 10, 20, -2], [-2, -2, -2, 5], [1, 2, 3, 4]], "h_samples": [240, 250, 260, 270],
         "raw_file": "clips/0313-1/1/20.jpg"},
        {"lanes": [], "h_samples": [240, 250, 260, 270], "raw_file": "clips/0313-1/2/20.jpg"},
    ]
    for item in lines:
        write_image(root / item["raw_file"])
    text = "".join(json.dumps(item) + "\n" for item in lines) + (extra_line or "")
    write(root / "label_data_0313.json", text)
    write(root / "label_data_0601.json", "")
    write(root / "label_data_0531.json", json.dumps(lines[1]) + "\n")
    write(root / "test_label.json", json.dumps(lines[0]) + "\n")


def test_tusimple_splits_and_minus_two(tmp_path):
    root = tmp_path / "tusimple"
    tusimple_root(root)
    train = load_tusimple(str(root), "train", cache_dir=str(tmp_path / "c"))
    assert [r.img_name for r in train] == ["clips/0313-1/1/20.jpg", "clips/0313-1/2/20.jpg"]
    lanes = train[0].lanes
    assert len(lanes) == 2   # the lane with a single point is dropped
    np.testing.assert_array_equal(lanes[0], [[10, 250], [20, 260]])
    np.testing.assert_array_equal(lanes[1], [[1, 240], [2, 250], [3, 260], [4, 270]])
    assert train[0].h_samples == (240, 250, 260, 270)
    assert len(load_tusimple(str(root), "val", cache_dir=str(tmp_path / "c"))) == 1
    assert len(load_tusimple(str(root), "trainval", cache_dir=str(tmp_path / "c"))) == 3
    assert load_tusimple(str(root), "test", cache_dir=str(tmp_path / "c"))[0].img_path == str(root / "clips/0313-1/1/20.jpg")


@pytest.mark.parametrize("line, message", [
    ('{"lanes": [[1, 2]], "h_samples": [1, 2, 3], "raw_file": "clips/0313-1/1/20.jpg"}\n', "lane 0 has 2 values"),
    ('{"lanes": [["a", 2]], "h_samples": [1, 2], "raw_file": "clips/0313-1/1/20.jpg"}\n',
     "lane 0 value 0: 'a' is not a number; expected a list of finite numbers"),
    ('{"lanes": [], "h_samples": [], "raw_file": "clips/missing.jpg"}\n', "image not found"),
    ('{"lanes": [], "h_samples": []\n', "malformed json"),
    ('[1, 2]\n', "expected a json object, got list"),
])
def test_tusimple_malformed_names_file_and_line(tmp_path, line, message):
    root = tmp_path / "tusimple"
    tusimple_root(root, extra_line=line)
    with pytest.raises(DataFormatError, match=message) as info:
        TuSimple(str(root), Crop(0), (720, 1280), str(tmp_path / "c")).read_split("train", True)
    assert info.value.path.endswith("label_data_0313.json") and info.value.line == 3


# Prediction files: read back, each record gets exactly the points the evaluator scores
# (``prediction_points``: the writer's samples as the file holds them).
CURVED = [Lane(np.array([[0.40, 0.50], [0.35, 0.70], [0.22, 0.99]])), Lane(np.array([[0.55, 0.48], [0.7, 0.98]]))]
SHORT = Lane(np.array([[0.5, 0.995], [0.5, 0.999]]))  # one sampled row (582 of 590, 652 of 660): never written


def round_trip(benchmark, records, predictions, folder):
    benchmark.write_predictions(records, predictions, str(folder))
    read = benchmark.read_predictions(records, str(folder))
    assert len(read) == len(records)
    for record, lanes, found in zip(records, predictions, read):
        expected = benchmark.prediction_points(record, lanes)
        assert len(found) == len(expected)
        for a, b in zip(found, expected):
            np.testing.assert_array_equal(a, b)
    return read


def test_culane_predictions_read_back_as_written_and_scored(tmp_path):
    records = [LaneRecord(f"/r/d/{i}.jpg", f"d/{i}.jpg") for i in range(2)]
    benchmark = CULane(str(tmp_path), Crop(270))
    read = round_trip(benchmark, records, [CURVED + [SHORT], []], tmp_path / "out")
    assert [len(lanes) for lanes in read] == [2, 0] and read[0][0].dtype == np.float32
    sampled = lanes_pixel_points(CURVED, 1640, 590, 270)
    for found, points in zip(read[0], sampled):
        np.testing.assert_allclose(found, points, atol=1e-4)  # 5 decimals, float32
    assert set(read[0][0][:, 1]) == set(range(582, 269, -8)) - {270, 278, 286}  # y from 0.5 - 0.01 of the height


def random_lanes(rng, count):
    """Lanes of 3 to 8 points spread over the image, top first."""
    lanes = []
    for _ in range(count):
        ys = np.sort(rng.uniform(0.3, 1.0, int(rng.integers(3, 9))))
        lanes.append(Lane(np.stack([rng.uniform(0.1, 0.9) + rng.normal(0, 0.2) * (ys - ys[0]), ys], axis=1)))
    return lanes


def test_many_lanes_read_back_bit_for_bit(tmp_path):
    rng = np.random.default_rng(7)
    records = [LaneRecord(f"/r/d/{i}.jpg", f"d/{i}.jpg", img_size=(1440, 2560) if i % 2 else (720, 1280))
               for i in range(40)]
    predictions = [random_lanes(rng, 4) for _ in records]
    for benchmark in (CULane(str(tmp_path), Crop(270, {"2560x1440": 640})), CurveLanes(str(tmp_path), Crop(270), None)):
        read = round_trip(benchmark, records, predictions, tmp_path / benchmark.name)
        assert sum(map(len, read)) > 100


def test_culane_prediction_file_missing_or_malformed(tmp_path):
    records = [LaneRecord("/r/a.jpg", "a.jpg"), LaneRecord("/r/b.jpg", "b.jpg")]
    write(tmp_path / "a.lines.txt", "1 2 3 4\n\n")
    with pytest.warns(UserWarning, match=r"1 of 2 prediction files are missing \(counted as 0 lanes\), e\.g\. .*b\."):
        read = CULane.read_predictions(records, str(tmp_path))
    assert [[lane.tolist() for lane in lanes] for lanes in read] == [[[[1, 2], [3, 4]], []], []]
    for text, message in (("1 2 3 4\n5 6 abc 8\n", "non-numeric value 'abc'"),
                          ("1 2 3 4\n5 6 7\n", "odd number of values (3)"),
                          ("1 2\n3 1e999\n", "value '1e999' is not a finite number")):
        path = write(tmp_path / "b.lines.txt", text)
        with pytest.raises(DataFormatError) as info:
            CULane.read_predictions(records, str(tmp_path))
        assert str(info.value).startswith(f"{path}:2: {message}") and "\n" not in str(info.value)


def test_tusimple_predictions_read_back_as_written(tmp_path):
    h_samples = tuple(range(160, 720, 10))
    records = [LaneRecord(f"/r/clips/{i}/20.jpg", f"clips/{i}/20.jpg", h_samples=h_samples) for i in range(2)]
    benchmark = TuSimple(str(tmp_path), Crop(160), (720, 1280))
    read = round_trip(benchmark, records, [[], CURVED], tmp_path / "out")
    assert read[0] == [] and all(set(lane[:, 1]) <= set(h_samples) for lane in read[1])
    np.testing.assert_array_equal(read[1][0][0], [np.trunc(CURVED[0](np.array([360 / 720]))[0] * 1280), 360])
    from_file = benchmark.read_predictions(records, str(tmp_path / "out" / "predictions.json"))
    assert from_file[1][1].shape == read[1][1].shape
    write(tmp_path / "bad" / "predictions.json", json.dumps({"raw_file": "clips/0/20.jpg", "lanes": [], "run_time": 1})
          + "\n" + '{"raw_file": "clips/1/20.jpg", "lanes": [[1, 2]], "run_time": 1}\n')
    with pytest.raises(DataFormatError, match=r"predictions.json:2: image 'clips/1/20.jpg': predicted lane 0 has 2 "
                                              r"values, expected len\(h_samples\) = 56"):
        benchmark.read_predictions(records, str(tmp_path / "bad"))


def test_curvelanes_predictions_read_back_as_written(tmp_path):
    records = [LaneRecord("/r/valid/images/a.jpg", "valid/images/a.jpg", img_size=(1440, 2560)),
               LaneRecord("/r/valid/images/b.jpg", "valid/images/b.jpg", img_size=(660, 1570))]
    benchmark = CurveLanes(str(tmp_path), Crop(0, {"2560x1440": 640, "1570x660": 180}), None)
    read = round_trip(benchmark, records, [CURVED, CURVED[1:] + [SHORT]], tmp_path / "out")
    assert [len(lanes) for lanes in read] == [2, 1] and read[1][0].dtype == np.float64
    np.testing.assert_allclose(read[1][0], lanes_pixel_points(CURVED[1:], 1570, 660, 180)[0], atol=5e-4)
    assert read[0][0][:, 1].min() >= 640 and set(np.diff(read[0][0][:, 1])) == {-8.0}
    path = write(tmp_path / "out" / "valid" / "images" / "b.lines.json",
                 '{"Lines": [[{"x": "1", "y": "2"}, {"x": 3}]]}')
    with pytest.raises(DataFormatError) as info:
        benchmark.read_predictions(records, str(tmp_path / "out"))
    assert str(info.value) == f"{path}: lane 0 point 1: {{'x': 3}}, expected {{\"x\": ..., \"y\": ...}}"


def test_culane_category_sidecar_follows_the_lanes_kept(tmp_path):
    """Each line of ``.lines.categories.txt`` is the kind of the same line of ``.lines.txt``; a lane
    the reader drops takes its category with it; images without a sidecar have None."""
    text = ("10.5 100 -1 90 20.25 80 30 70\n"   # kept
            "5 50\n"                             # one point: dropped
            "1 2 3 4\n")                         # kept
    names = culane_root(tmp_path / "CULane", text)
    write(tmp_path / "CULane" / names[0].replace(".jpg", ".lines.categories.txt"), "10\n0\n21\n")
    write(tmp_path / "CULane" / names[1].replace(".jpg", ".lines.categories.txt"), "")
    records = load_culane(str(tmp_path / "CULane"), "train", cache_dir=str(tmp_path / "cache"))
    assert [r.lane_categories for r in records] == [(10, 21), (), None]
    assert len(records[0].lanes) == 2


@pytest.mark.parametrize("sidecar, line, message", [
    ("2\n13\n", 2, r"lane category '13' is not one of OpenLane's \[0, 1, 2, .* 12, 20, 21\]"),
    ("2\nyellow\n", 2, "lane category 'yellow' is not one of OpenLane's"),
    ("2\n", 2, "1 lane categories for the 2 lanes of its .lines.txt; expected one per lane"),
    ("2\n1\n8\n", 3, "3 lane categories for the 2 lanes of its .lines.txt"),
])
def test_culane_bad_category_sidecar_is_one_line_naming_file_and_line(tmp_path, sidecar, line, message):
    names = culane_root(tmp_path / "CULane", "1 2 3 4\n5 6 7 8\n")
    write(tmp_path / "CULane" / names[0].replace(".jpg", ".lines.categories.txt"), sidecar)
    with pytest.raises(DataFormatError, match=message) as info:
        CULane(str(tmp_path / "CULane"), Crop(0), cache_dir=str(tmp_path / "cache")).read_split("train", True)
    assert info.value.path.endswith("00000.lines.categories.txt") and info.value.line == line
    assert "\n" not in str(info.value)


def test_cache_key_follows_the_category_sidecars(tmp_path):
    """Adding, changing or removing a sidecar reads the split again (they are cache sources)."""
    names = culane_root(tmp_path / "CULane", "1 2 3 4\n")
    root, cache_dir = str(tmp_path / "CULane"), str(tmp_path / "cache")
    sidecar = tmp_path / "CULane" / names[0].replace(".jpg", ".lines.categories.txt")
    assert load_culane(root, "train", cache_dir=cache_dir)[0].lane_categories is None
    write(sidecar, "7\n")
    assert load_culane(root, "train", cache_dir=cache_dir)[0].lane_categories == (7,)
    write(sidecar, "20\n")
    os.utime(sidecar, ns=(1, 1))  # another size-and-time than the cached one even on a coarse clock
    assert load_culane(root, "train", cache_dir=cache_dir)[0].lane_categories == (20,)
    sidecar.unlink()
    assert load_culane(root, "train", cache_dir=cache_dir)[0].lane_categories is None
    assert load_culane(root, "train", cache_dir=cache_dir)[0].lane_categories is None  # from the cache
