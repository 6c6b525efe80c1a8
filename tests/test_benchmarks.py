"""The benchmarks: CULane F1, TuSimple accuracy and CurveLanes F1 of known predictions through
each benchmark's reader, evaluator and prediction writer; tools/evaluate.py scoring the written
files exactly as the evaluator scores the lanes in memory; the table of benchmarks."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from srlane.benchmarks import BENCHMARKS, build_benchmark  # noqa: E402
from srlane.benchmarks.culane import read_lines_file  # noqa: E402
from srlane.config import Config, ConfigError  # noqa: E402
from srlane.data.records import DataFormatError  # noqa: E402
from srlane.lanes import Lane  # noqa: E402
from tools import evaluate as evaluate_tool  # noqa: E402


def write_image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((8, 16, 3), np.uint8))


def cfg_for(experiment, root, cache):
    cfg = Config.fromfile(os.path.join(ROOT, "configs", experiment))
    cfg.dataset.data_root, cfg.dataset.cache_dir = str(root), str(cache)
    return cfg


def culane_lane(x_bottom, slope):
    ys = np.arange(580.0, 290.0, -10.0)
    return np.stack([x_bottom + slope * (580 - ys), ys], 1)


@pytest.fixture()
def culane_test(tmp_path):
    root = tmp_path / "CULane"
    annotations = {
        "d/c/00000.jpg": [culane_lane(300, 1.2), culane_lane(1300, -1.2)],
        "d/c/00001.jpg": [culane_lane(600, 0.5)],
        "d/c/00002.jpg": [],
    }
    for name, lanes in annotations.items():
        write_image(root / name)
        (root / name).with_suffix(".lines.txt").write_text(
            "".join(" ".join(f"{x} {y}" for x, y in lane) + "\n" for lane in lanes))
    (root / "list" / "test_split").mkdir(parents=True)
    (root / "list" / "test.txt").write_text("".join(f"/{n}\n" for n in annotations))
    (root / "list" / "test_split" / "test0_normal.txt").write_text("d/c/00000.jpg\nd/c/00001.jpg\n")
    (root / "list" / "test_split" / "test7_cross.txt").write_text("d/c/00002.jpg\n")
    benchmark = build_benchmark(cfg_for("srlane_r18_culane.py", root, tmp_path / "cache"))
    return benchmark, benchmark.read_split("test", training=False), list(annotations.values())


def as_lanes(lanes, w, h):
    return [Lane(lane[::-1] / [w, h]) for lane in lanes]


def test_culane_perfect_and_partial_predictions(culane_test, tmp_path):
    benchmark, records, annotations = culane_test
    evaluate = benchmark.evaluator(records)
    perfect = [as_lanes(lanes, 1640, 590) for lanes in annotations]
    result = evaluate(perfect)
    assert result["metric"] == 1.0
    assert (result["0.5"]["tp"], result["0.5"]["fp"], result["0.5"]["fn"]) == (3, 0, 0)
    assert result["categories"]["normal"]["0.5"]["tp"] == 3

    partial = [perfect[0][:1], [], as_lanes([culane_lane(900, 0.0)], 1640, 590)]
    result = evaluate(partial)
    benchmark.write_predictions(records, partial, str(tmp_path / "out"))
    assert (result["0.5"]["tp"], result["0.5"]["fp"], result["0.5"]["fn"]) == (1, 1, 2)
    assert result["metric"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert result["categories"]["cross"]["0.5"]["fp"] == 1
    assert evaluate(perfect)["metric"] == 1.0  # the kept annotation rasters serve every call

    written = read_lines_file(tmp_path / "out" / "d" / "c" / "00000.lines.txt")
    assert len(written) == 1
    np.testing.assert_allclose(written[0], partial[0][0].pixel_points(1640, 590, 270), atol=1e-5)
    assert (tmp_path / "out" / "d" / "c" / "00001.lines.txt").read_text() == ""


def test_culane_tool_scores_the_written_files_as_the_evaluator_scores_the_lanes(culane_test, tmp_path):
    benchmark, records, annotations = culane_test
    root = tmp_path / "CULane"
    evaluate = benchmark.evaluator(records)
    perfect = [as_lanes(lanes, 1640, 590) for lanes in annotations]
    # image 1: 6 px off (a hit), image 2: a lane where there is none; then 12 px off (a miss)
    for shift in (6, 12):
        lanes = [perfect[0], as_lanes([culane_lane(600 + shift, 0.5)], 1640, 590),
                 as_lanes([culane_lane(900, 0.0)], 1640, 590)]
        out = tmp_path / f"pred_{shift}"
        benchmark.write_predictions(records, lanes, str(out))
        scored = evaluate_tool.main(["culane", "--anno-dir", str(root), "--pred-dir", str(out), "--list",
                                     str(root / "list" / "test.txt"), "--categories", str(root / "list" / "test_split"),
                                     "--workers", "0", "--json", str(out / "result.json")])
        expected = evaluate(lanes)
        assert scored == expected and json.loads((out / "result.json").read_text())["metric"] == expected["metric"]
        assert expected["0.5"]["tp"] == (3 if shift == 6 else 2) and list(expected["categories"]) == ["normal", "cross"]


def test_culane_prediction_count_must_match(culane_test):
    benchmark, records, _ = culane_test
    with pytest.raises(ValueError, match="2 predictions for 3 images"):
        benchmark.evaluator(records)([[], []])


@pytest.fixture()
def tusimple_test(tmp_path):
    root = tmp_path / "tusimple"
    h = list(range(240, 720, 10))
    lanes = [[-2 if y < 300 else 400 + (y - 300) * 0.8 for y in h], [-2 if y < 280 else 900 - (y - 280) * 0.9 for y in h]]
    labels = [{"lanes": lanes, "h_samples": h, "raw_file": f"clips/0530/{i}/20.jpg"} for i in range(2)]
    for item in labels:
        write_image(root / item["raw_file"])
    (root / "test_label.json").write_text("".join(json.dumps(item) + "\n" for item in labels))
    benchmark = build_benchmark(cfg_for("srlane_r18_tusimple.py", root, tmp_path / "cache"))
    return root, benchmark, benchmark.read_split("test", training=False), h


def test_tusimple_accuracy_and_prediction_file(tusimple_test, tmp_path):
    _, benchmark, records, h = tusimple_test
    evaluate = benchmark.evaluator(records)
    preds = [as_lanes(r.lanes, 1280, 720) for r in records]
    result = evaluate(preds)
    benchmark.write_predictions(records, preds, str(tmp_path / "out"))
    assert result["metric"] == pytest.approx(1.0) and result["fp"] == 0 and result["fn"] == 0
    result = evaluate([preds[0], []])
    assert result["metric"] == pytest.approx(0.5) and result["fn"] == pytest.approx(0.5)
    lines = (tmp_path / "out" / "predictions.json").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["raw_file"] == "clips/0530/0/20.jpg" and len(first["lanes"]) == 2
    assert len(first["lanes"][0]) == len(h) and first["lanes"][0][0] == -2


def test_tusimple_tool_scores_the_written_file_as_the_evaluator_scores_the_lanes(tusimple_test, tmp_path):
    root, benchmark, records, _ = tusimple_test
    evaluate = benchmark.evaluator(records)
    first, second = (as_lanes(r.lanes, 1280, 720) for r in records)
    shifted = [Lane(lane.points + [25 / 1280, 0.0]) for lane in second]  # 25 px: both lanes missed
    for lanes in ([first, second], [first[:1], shifted], [[], first + second]):
        benchmark.write_predictions(records, lanes, str(tmp_path / "out"))
        scored = evaluate_tool.main(["tusimple", "--pred", str(tmp_path / "out" / "predictions.json"),
                                     "--gt", str(root / "test_label.json")])
        assert scored == evaluate(lanes)
    assert scored["metric"] == pytest.approx(0.5) and (scored["fp"], scored["fn"]) == pytest.approx((0.25, 0.5))
def test_category_indices_follow_culane_order():
    from srlane.benchmarks.culane import category_indices
    from srlane.data.records import LaneRecord

    names = ["night", "cross", "normal", "night", "curve"]
    records = [LaneRecord(img_path=f"/r/{i}.jpg", img_name=f"{i}.jpg", lanes=[], category=c) for i, c in enumerate(names)]
    assert list(category_indices(records).items()) == [("normal", [2]), ("curve", [4]), ("cross", [1]), ("night", [0, 3])]


def test_the_table_builds_each_benchmark_and_names_the_known_types(tmp_path):
    assert sorted(BENCHMARKS) == ["culane", "curvelanes", "openlane", "tusimple"]
    for experiment, name in (("srlane_r18_culane.py", "culane"), ("srlane_r18_tusimple.py", "tusimple"),
                             ("srlane_r18_curvelanes.py", "curvelanes"), ("srlane_r18_openlane.py", "openlane")):
        benchmark = build_benchmark(cfg_for(experiment, tmp_path, tmp_path / "cache"))
        assert benchmark.name == name and isinstance(benchmark, BENCHMARKS[name])
    cfg = cfg_for("srlane_r18_culane.py", tmp_path, tmp_path / "cache")
    cfg.dataset.type = "llamas"
    with pytest.raises(ConfigError, match="dataset.type must be one of culane, tusimple, curvelanes, openlane, got 'llamas'"):
        build_benchmark(cfg)
    with pytest.raises(FileNotFoundError, match="dataset.data_root '.*nowhere' does not exist"):
        build_benchmark(cfg_for("srlane_r18_culane.py", tmp_path / "nowhere", tmp_path)).read_split("test", False)


# CurveLanes: three images of the three common sizes, labels with string and number coordinates,
# points in any order, a 1-point lane; lanes inside the kept (cropped) rows.
CURVELANES = {
    "valid/images/a.jpg": ((1440, 2560), [[(1000.0, 1430.0), (1100.0, 1100.0), (1250.0, 800.0)],
                                          [(2000.0, 900.0), (1900.0, 1200.0), (1800.0, 1430.0)], [(500.0, 1000.0)]]),
    "valid/images/b.jpg": ((660, 1570), [[(300.0, 650.0), (500.0, 400.0), (620.0, 250.0)]]),
    "valid/images/c.jpg": ((720, 1280), []),
}


@pytest.fixture()
def curvelanes(tmp_path):
    root = tmp_path / "CurveLanes"
    for i, (name, (size, lanes)) in enumerate(CURVELANES.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), np.zeros((*size, 3), np.uint8))
        label = root / name.replace("images", "labels").replace(".jpg", ".lines.json")
        label.parent.mkdir(parents=True, exist_ok=True)
        as_text = i == 0  # coordinates as strings in the first label, numbers in the others
        label.write_text(json.dumps({"Lines": [[{"x": str(x) if as_text else x, "y": str(y) if as_text else y}
                                                for x, y in lane] for lane in lanes]}))
    (root / "valid" / "valid.txt").write_text("".join(f"{name}\n" for name in CURVELANES))
    benchmark = build_benchmark(cfg_for("srlane_r18_curvelanes.py", root, tmp_path / "cache"))
    return root, benchmark, benchmark.read_split("valid", training=False)


def test_curvelanes_reader_keeps_every_lane_bottom_first_with_each_image_size(curvelanes):
    _, _, records = curvelanes
    assert [r.img_size for r in records] == [size for size, _ in CURVELANES.values()]
    first = records[0]
    assert [len(lane) for lane in first.lanes] == [3, 3, 1]
    assert all(np.all(np.diff(lane[:, 1]) <= 0) for lane in first.lanes)  # bottom first
    np.testing.assert_array_equal(first.lanes[0][0], [1000.0, 1430.0])
    assert records[2].lanes == []


def test_curvelanes_perfect_predictions_written_and_scored_by_the_tool(curvelanes, tmp_path):
    root, benchmark, records = curvelanes
    perfect = [[Lane(np.array(lane, dtype=np.float64)[::-1] / [w, h]) for lane in lanes if len(lane) >= 2]
               for (h, w), lanes in CURVELANES.values()]
    result = benchmark.evaluator(records)(perfect)
    # 4 ground-truth lanes: the 1-point one counts (as in the official code) and matches nothing
    assert (result["tp"], result["fp"], result["fn"]) == (3, 0, 1)
    assert result["metric"] == result["f1"] == pytest.approx(2 * 1.0 * 0.75 / 1.75)
    out = tmp_path / "pred"
    benchmark.write_predictions(records, perfect, str(out))
    written = json.loads((out / "valid" / "images" / "a.lines.json").read_text())
    assert len(written["Lines"]) == 2 and all(isinstance(p["x"], str) for p in written["Lines"][0])
    (out / "valid" / "images" / "c.lines.json").unlink()  # a missing file is an image without lanes
    summary = tmp_path / "summary.json"
    tool = subprocess.run([sys.executable, "tools/evaluate.py", "curvelanes", "--data-root", str(root), "--pred-dir",
                           str(out), "--json", str(summary)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert tool.returncode == 0, tool.stderr
    scores = json.loads(summary.read_text())
    assert {k: scores[k] for k in ("tp", "fp", "fn")} == {"tp": 3, "fp": 0, "fn": 1}
    assert scores["f1"] == pytest.approx(result["f1"]) and "precision" in scores and "recall" in scores


def test_curvelanes_tool_scores_the_written_files_as_the_evaluator_scores_the_lanes(curvelanes, tmp_path):
    root, benchmark, records = curvelanes
    evaluate = benchmark.evaluator(records)
    perfect = [[Lane(np.array(lane, dtype=np.float64)[::-1] / [w, h]) for lane in lanes if len(lane) >= 2]
               for (h, w), lanes in CURVELANES.values()]
    false_lane = Lane(np.array([[0.1, 0.5], [0.3, 0.99]]))
    for lanes in (perfect, [perfect[0][:1], [], [false_lane]], [[false_lane], perfect[1], []]):
        out = tmp_path / "out"
        benchmark.write_predictions(records, lanes, str(out))
        assert evaluate_tool.main(["curvelanes", "--data-root", str(root), "--pred-dir", str(out)]) == evaluate(lanes)
    assert (evaluate(lanes)["tp"], evaluate(lanes)["fp"]) == (1, 1)


@pytest.mark.parametrize("text, problem", [
    ("{not json", "not valid JSON"),
    ('{"lines": []}', "Lines"),
    ('{"Lines": [[{"x": "12.5", "y": "abc"}]]}', "'abc' is not a number"),
])
def test_malformed_curvelanes_label_stops_with_one_line_naming_the_file(curvelanes, tmp_path, text, problem):
    root, _, _ = curvelanes
    label = root / "valid" / "labels" / "b.lines.json"
    label.write_text(text)
    benchmark = build_benchmark(cfg_for("srlane_r18_curvelanes.py", root, tmp_path / "fresh_cache"))
    with pytest.raises(DataFormatError) as info:
        benchmark.read_split("valid", training=False)
    message = str(info.value)
    assert "\n" not in message and str(label) in message and problem in message
    assert message.startswith(f"{root / 'valid' / 'valid.txt'}:2: malformed label: ")
