import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from srlane.benchmarks.tusimple import read_prediction_file, scoring_records
from srlane.data.records import DataFormatError
from srlane.evaluation.tusimple import bench_image, derived_f1, tusimple_metric

ROOT = Path(__file__).resolve().parents[1]
H_SAMPLES = list(range(160, 720, 10))  # 56 rows


def vertical(x, first_row=300):
    return [float(x) if y >= first_row else -2.0 for y in H_SAMPLES]


def shifted(lane, d):
    return [v + d if v >= 0 else v for v in lane]


def record(lanes, name="a.jpg", run_time=10.0, gt=False):
    if gt:
        return {"raw_file": name, "lanes": lanes, "h_samples": H_SAMPLES}
    return {"raw_file": name, "lanes": lanes, "run_time": run_time}


def test_perfect_prediction():
    gt = [vertical(x) for x in (300, 500, 700, 900)]
    assert bench_image(gt, gt, H_SAMPLES, 5) == (1.0, 0.0, 0.0)
    result = tusimple_metric([gt], [gt], [H_SAMPLES], [5.0])
    assert result == {"accuracy": 1.0, "fp": 0.0, "fn": 0.0, "f1": 1.0}


def test_vertical_shift_19_is_correct_21_is_not():
    gt = [vertical(500)]
    assert bench_image([shifted(gt[0], 19)], gt, H_SAMPLES, 5) == (1.0, 0.0, 0.0)
    # 42 rows off by 21; the 14 rows missing in both count as correct.
    assert bench_image([shifted(gt[0], 21)], gt, H_SAMPLES, 5) == (14 / 56, 1.0, 1.0)


def test_threshold_grows_with_the_slope():
    lane = [float(y) - 100 for y in H_SAMPLES]  # x = y - 100: 45 degrees, threshold 20 * sqrt(2)
    assert bench_image([[v + 28 for v in lane]], [lane], H_SAMPLES, 5)[0] == 1.0
    assert bench_image([[v + 29 for v in lane]], [lane], H_SAMPLES, 5)[0] == 0.0


def test_one_prediction_matching_two_lanes_gives_negative_fp():
    gt = [vertical(500), vertical(510)]
    assert bench_image([vertical(505)], gt, H_SAMPLES, 5) == (1.0, -1.0, 0.0)


def test_five_lanes_drop_the_worst():
    gt = [vertical(x) for x in (100, 300, 500, 700, 900)]
    half = [v if i % 2 else -2.0 for i, v in enumerate(vertical(900, first_row=0))]
    preds = gt[:4] + [half]
    acc, fp, fn = bench_image(preds, gt, H_SAMPLES, 5)
    assert (acc, fp, fn) == (1.0, 1 / 5, 0.0)
    acc, fp, fn = bench_image(gt[:3] + [half], gt, H_SAMPLES, 5)  # two misses: one is forgiven
    assert fn == 1 / 4 and acc == pytest.approx((3 + 28 / 56) / 4)


def test_slow_images_and_too_many_lanes_score_zero():
    gt = [vertical(500)]
    assert bench_image(gt, gt, H_SAMPLES, 200.5) == (0.0, 0.0, 1.0)
    assert bench_image(gt, gt, H_SAMPLES, 200) == (1.0, 0.0, 0.0)
    assert bench_image([vertical(x) for x in (100, 300, 500)], gt, H_SAMPLES, 5) == (1.0, 2 / 3, 0.0)
    assert bench_image([vertical(x) for x in (100, 300, 500, 700)], gt, H_SAMPLES, 5) == (0.0, 0.0, 1.0)


def test_empty_images():
    assert bench_image([], [], H_SAMPLES, 5) == (0.0, 0.0, 0.0)
    assert bench_image([vertical(100)], [], H_SAMPLES, 5) == (0.0, 1.0, 0.0)


def test_means_over_images_and_derived_f1():
    result = tusimple_metric([[vertical(500)], [shifted(vertical(500), 21)]], [[vertical(500)], [vertical(500)]],
                             [H_SAMPLES, H_SAMPLES])
    assert result["accuracy"] == pytest.approx((1 + 14 / 56) / 2)
    assert (result["fp"], result["fn"], result["f1"]) == (0.5, 0.5, 0.5)
    assert derived_f1(1.0, 0.0) is None
    with pytest.raises(ValueError, match="no images to evaluate"):
        tusimple_metric([], [], [])


def test_prediction_lines_are_matched_to_the_ground_truth_by_image(tmp_path):
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(json.dumps(record([vertical(500)], "a", gt=True)) + "\n\n"
                       + json.dumps(record([vertical(500), [-2.0] * 56], "b", gt=True)) + "\n")
    pred_path.write_text(json.dumps(record([shifted(vertical(500), 21)], "b", run_time=250.0)) + "\n"
                         + json.dumps(record([vertical(500)], "a")) + "\n")
    records = scoring_records(str(gt_path))
    assert [r.img_name for r in records] == ["a", "b"] and [len(r.lanes) for r in records] == [1, 2]
    assert records[1].lanes[1].shape == (0, 2)  # a lane absent on every row still counts
    lanes, run_times = read_prediction_file(str(pred_path), records)
    assert run_times == [10.0, 250.0]
    np.testing.assert_array_equal(lanes[0][0], [[500.0, y] for y in H_SAMPLES if y >= 300])
    np.testing.assert_array_equal(lanes[1][0][:, 0], 521.0)


def test_errors_name_the_file_and_line(tmp_path):
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(json.dumps(record([vertical(500)], gt=True)) + "\n")
    records = scoring_records(str(gt_path))
    pred_path.write_text("{not json\n")
    with pytest.raises(DataFormatError, match=r"pred.json:1: malformed json"):
        read_prediction_file(str(pred_path), records)
    pred_path.write_text(json.dumps(record([vertical(500)], "other.jpg")) + "\n")
    with pytest.raises(DataFormatError, match=r"pred.json:1: image 'other.jpg' is not in the ground truth"):
        read_prediction_file(str(pred_path), records)
    pred_path.write_text(json.dumps(record([[1.0, 2.0]])) + "\n")
    with pytest.raises(DataFormatError, match=r"pred.json:1: image 'a.jpg': predicted lane 0 has 2 values"):
        read_prediction_file(str(pred_path), records)
    pred_path.write_text(json.dumps({"raw_file": "a.jpg", "lanes": []}) + "\n")
    with pytest.raises(DataFormatError, match=r"pred.json:1: missing key\(s\) \['run_time'\]"):
        read_prediction_file(str(pred_path), records)
    pred_path.write_text(json.dumps(record([vertical(500)])) + "\n" + json.dumps(record([])) + "\n")
    with pytest.raises(DataFormatError, match=r"pred.json:2: image 'a.jpg' appears twice in the predictions"):
        read_prediction_file(str(pred_path), records)
    pred_path.write_text("")
    with pytest.raises(DataFormatError, match="1 ground-truth image.s. have no prediction, e.g. 'a.jpg'"):
        read_prediction_file(str(pred_path), records)
    gt_path.write_text("[1, 2]\n")
    with pytest.raises(DataFormatError, match=r"gt.json:1: expected a json object, got list"):
        scoring_records(str(gt_path))


def test_cli(tmp_path):
    gt_path, pred_path, out = tmp_path / "gt.json", tmp_path / "pred.json", tmp_path / "r.json"
    gt_path.write_text(json.dumps(record([vertical(500), vertical(800)], gt=True)) + "\n")
    pred_path.write_text(json.dumps(record([vertical(500)])) + "\n")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), "tusimple", "--pred", str(pred_path),
                           "--gt", str(gt_path), "--json", str(out)], capture_output=True, text=True, check=True)
    result = json.loads(out.read_text())
    assert result["accuracy"] == pytest.approx((1 + 14 / 56) / 2) and result["fn"] == 0.5
    assert "F1 (derived from FP/FN means)" in proc.stdout
    assert np.isclose(result["f1"], 2 * 1 * (1 / 1.5) / (1 + 1 / 1.5))
