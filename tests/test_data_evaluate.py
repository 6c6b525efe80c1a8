"""LaneDataset.evaluate: CULane F1 and TuSimple accuracy of known predictions, prediction files."""
import json
import os

import cv2
import numpy as np
import pytest

from srlane.config import Config
from srlane.data.dataset import LaneDataset
from srlane.evaluation.culane import read_lines_file
from srlane.lanes import Lane

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    ds = LaneDataset(cfg_for("srlane_r18_culane.py", root, tmp_path / "cache"), "test", training=False)
    return ds, list(annotations.values())


def as_lanes(lanes, w, h):
    return [Lane(lane[::-1] / [w, h]) for lane in lanes]


def test_culane_perfect_and_partial_predictions(culane_test, tmp_path):
    ds, annotations = culane_test
    perfect = [as_lanes(lanes, 1640, 590) for lanes in annotations]
    result = ds.evaluate(perfect)
    assert result["metric"] == 1.0
    assert (result["0.5"]["tp"], result["0.5"]["fp"], result["0.5"]["fn"]) == (3, 0, 0)
    assert result["categories"]["normal"]["0.5"]["tp"] == 3
    evaluator = ds.culane_evaluator()

    partial = [perfect[0][:1], [], as_lanes([culane_lane(900, 0.0)], 1640, 590)]
    result = ds.evaluate(partial, output_dir=str(tmp_path / "out"))
    assert (result["0.5"]["tp"], result["0.5"]["fp"], result["0.5"]["fn"]) == (1, 1, 2)
    assert result["metric"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert result["categories"]["cross"]["0.5"]["fp"] == 1
    assert ds.culane_evaluator() is evaluator

    written = read_lines_file(tmp_path / "out" / "d" / "c" / "00000.lines.txt")
    assert len(written) == 1
    np.testing.assert_allclose(written[0], partial[0][0].to_culane(1640, 590), atol=1e-5)
    assert (tmp_path / "out" / "d" / "c" / "00001.lines.txt").read_text() == ""


def test_culane_prediction_count_must_match(culane_test):
    ds, _ = culane_test
    with pytest.raises(ValueError, match="2 predictions for 3 images"):
        ds.evaluate([[], []])


def test_tusimple_accuracy_and_prediction_file(tmp_path):
    root = tmp_path / "tusimple"
    h = list(range(240, 720, 10))
    lanes = [[-2 if y < 300 else 400 + (y - 300) * 0.8 for y in h], [-2 if y < 280 else 900 - (y - 280) * 0.9 for y in h]]
    labels = [{"lanes": lanes, "h_samples": h, "raw_file": f"clips/0530/{i}/20.jpg"} for i in range(2)]
    for item in labels:
        write_image(root / item["raw_file"])
    (root / "test_label.json").write_text("".join(json.dumps(item) + "\n" for item in labels))
    ds = LaneDataset(cfg_for("srlane_r18_tusimple.py", root, tmp_path / "cache"), "test", training=False)
    preds = [as_lanes(r.lanes, 1280, 720) for r in ds.records]
    result = ds.evaluate(preds, output_dir=str(tmp_path / "out"))
    assert result["metric"] == pytest.approx(1.0) and result["fp"] == 0 and result["fn"] == 0
    result = ds.evaluate([preds[0], []])
    assert result["metric"] == pytest.approx(0.5) and result["fn"] == pytest.approx(0.5)
    lines = (tmp_path / "out" / "predictions.json").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["raw_file"] == "clips/0530/0/20.jpg" and len(first["lanes"]) == 2
    assert len(first["lanes"][0]) == len(h) and first["lanes"][0][0] == -2


def test_category_indices_follow_culane_order():
    from srlane.data.dataset import category_indices
    from srlane.data.records import LaneRecord

    names = ["night", "cross", "normal", "night", "curve"]
    records = [LaneRecord(img_path=f"/r/{i}.jpg", img_name=f"{i}.jpg", lanes=[], category=c) for i, c in enumerate(names)]
    assert list(category_indices(records).items()) == [("normal", [2]), ("curve", [4]), ("cross", [1]), ("night", [0, 3])]
