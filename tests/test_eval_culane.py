import json
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from srlane.benchmarks.culane import parse_lane_line, read_lines_file
from srlane.data.records import DataFormatError
from srlane.evaluation.culane import MF1_THRESHOLDS, CULaneEvaluator, counts_to_metrics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools import evaluate  # noqa: E402


def vertical(x, top=300.0, bottom=580.0, n=3):
    return np.stack([np.full(n, float(x)), np.linspace(bottom, top, n)], 1)


def brute_iou(a, b):
    """IoU of two straight lanes drawn the official way on whole canvases."""
    masks = []
    for lane in (a, b):
        canvas = np.zeros((590, 1640), np.uint8)
        pts = np.rint(lane).astype(int)
        for p, q in zip(pts[:-1], pts[1:]):
            cv2.line(canvas, tuple(map(int, p)), tuple(map(int, q)), 1, 30, cv2.LINE_8)
        masks.append(canvas.astype(bool))
    return np.count_nonzero(masks[0] & masks[1]) / np.count_nonzero(masks[0] | masks[1])


def ious(anno, pred):
    return CULaneEvaluator([anno], workers=0).score_images([pred]).matched_iou[0]


def test_exact_copy_has_iou_one_and_is_tp_at_every_threshold():
    lane = np.array([[100.3, 589], [180.7, 450], [240.2, 330], [270.9, 280]])
    ev = CULaneEvaluator([[lane]], iou_thresholds=MF1_THRESHOLDS, workers=0)
    assert ev.score_images([[lane.copy()]]).matched_iou[0].tolist() == [1.0]
    result = ev.evaluate([[lane.copy()]])
    assert all(result[k]["tp"] == 1 and result[k]["f1"] == 1.0 for k in result if k != "mF1")
    assert result["mF1"] == 1.0


@pytest.mark.parametrize("d", [1, 4, 10, 20])
def test_vertical_shift_follows_the_official_figures(d):
    iou = ious([vertical(800)], [vertical(800 + d)])[0]
    assert iou == pytest.approx(brute_iou(vertical(800), vertical(800 + d)), abs=0)
    assert (31 - d) / (31 + d) - 0.01 < iou < (31 - d) / (31 + d)


def test_point_order_does_not_matter():
    lane = np.array([[600.2, 585.5], [650.5, 480.25], [720.75, 390.5], [760.5, 320.0]])
    other = lane + [7.3, -2.1]
    assert ious([lane], [other]) == ious([lane], [other[::-1]]) == ious([lane[::-1]], [other])


def test_short_lanes_count_but_match_nothing():
    one_point = np.array([[500.0, 500.0]])
    ev = CULaneEvaluator([[one_point, np.zeros((0, 2))]], workers=0)
    result = ev.evaluate([[one_point.copy()]])["0.5"]
    assert (result["tp"], result["fp"], result["fn"]) == (0, 1, 2)


def test_strict_threshold_and_one_to_one_assignment():
    # Two annotations, one prediction between them: only one can be matched.
    ev = CULaneEvaluator([[vertical(800), vertical(810)]], iou_thresholds=(0.5,), workers=0)
    r = ev.evaluate([[vertical(805)]])["0.5"]
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)
    iou = ious([vertical(800)], [vertical(810)])[0]
    strict = CULaneEvaluator([[vertical(800)]], iou_thresholds=(iou,), workers=0).evaluate([[vertical(810)]])
    assert strict[next(iter(strict))]["tp"] == 0


def test_assignment_maximises_total_iou():
    # Greedy on the best pair would match pred 0 with anno 1 and leave anno 0 unmatched.
    annos = [vertical(800), vertical(815)]
    preds = [vertical(809), vertical(822)]
    scores = CULaneEvaluator([annos], workers=0).score_images([preds])
    assert len(scores.matched_iou[0]) == 2
    assert scores.tp[0, 0] == 2


@pytest.mark.parametrize("cached", [False, True])
def test_image_matches_name_the_pairs_score_images_counts(cached):
    """Anno 0 has an exact copy (TP), anno 1 a prediction 20 px off (IoU 11/51 < 0.5: FP and FN),
    anno 2 nothing (FN); a prediction far from all is FP. Before and after the annotation masks
    are cached (by a first score_images) the answer is the same."""
    annos = [vertical(300), vertical(800), vertical(1300)]
    preds = [vertical(1600), vertical(300), vertical(820)]
    ev = CULaneEvaluator([annos], workers=0)
    if cached:
        assert ev.score_images([preds]).tp[0, 0] == 1
    matches = ev.image_matches(0, preds, 0.5)
    assert matches.annotation.tolist() == [True, False, False]
    assert matches.prediction.tolist() == [False, True, False]
    assert matches.iou[1] == 1.0 and matches.iou[2] == pytest.approx(brute_iou(vertical(800), vertical(820)))
    assert ev.image_matches(0, preds, 0.1).prediction.tolist() == [False, True, True]  # 11/51 > 0.1


def test_images_without_annotations_count_only_fp_and_undefined_ratios():
    ev = CULaneEvaluator([[], []], categories={"cross": [0, 1]}, workers=0)
    result = ev.evaluate([[vertical(100), vertical(900)], []])
    for block in (result["0.5"], result["categories"]["cross"]["0.5"]):
        assert (block["tp"], block["fp"], block["fn"]) == (0, 2, 0)
        assert block["precision"] == 0.0 and block["recall"] is None and block["f1"] is None
    nothing = CULaneEvaluator([[vertical(100)]], workers=0).evaluate([[]])["0.5"]
    assert nothing["precision"] is None and nothing["recall"] == 0.0 and nothing["f1"] is None
    assert counts_to_metrics(0, 0, 0) == {"tp": 0, "fp": 0, "fn": 0, "precision": None, "recall": None, "f1": None}
    assert counts_to_metrics(0, 3, 2)["f1"] == 0.0


def random_scene(rng, n_images):
    annos, preds = [], []
    for _ in range(n_images):
        lanes = []
        for _ in range(rng.integers(0, 5)):
            x0 = rng.uniform(100, 1500)
            ys = np.arange(590, rng.uniform(260, 340), -10.0)
            lanes.append(np.stack([x0 + rng.uniform(-2, 2) * (590 - ys), ys], 1))
        annos.append(lanes)
        pred = [lane + rng.normal(0, rng.uniform(0, 12), 2) for lane in lanes if rng.random() > 0.2]
        if rng.random() < 0.3:
            pred.append(np.array([[rng.uniform(0, 1640), 589.0], [rng.uniform(0, 1640), 300.0]]))
        preds.append(pred)
    return annos, preds


def test_one_pass_equals_separate_single_threshold_and_category_runs():
    rng = np.random.default_rng(0)
    annos, preds = random_scene(rng, 24)
    categories = {"even": list(range(0, 24, 2)), "first": list(range(8))}
    ev = CULaneEvaluator(annos, categories, iou_thresholds=MF1_THRESHOLDS, workers=0)
    together = ev.evaluate(preds)
    assert together == ev.evaluate(preds)  # second call uses the cached annotation rasters
    f1s = []
    for t in MF1_THRESHOLDS:
        key = format(t, "g")
        alone = CULaneEvaluator(annos, iou_thresholds=(t,), workers=0).evaluate(preds)
        assert alone[key] == together[key]
        f1s.append(alone[key]["f1"])
        for name, idx in categories.items():
            sub = CULaneEvaluator([annos[i] for i in idx], iou_thresholds=(t,), workers=0)
            assert sub.evaluate([preds[i] for i in idx])[key] == together["categories"][name][key]
    assert together["mF1"] == pytest.approx(np.mean(f1s))
    assert len({together[format(t, "g")]["tp"] for t in MF1_THRESHOLDS}) > 2


def test_process_pool_equals_in_process(monkeypatch):
    import srlane.evaluation.culane as culane
    monkeypatch.setattr(culane, "_CHUNK_IMAGES", 5)
    rng = np.random.default_rng(1)
    annos, preds = random_scene(rng, 12)
    pooled = CULaneEvaluator(annos, iou_thresholds=(0.5, 0.7), workers=2)
    assert pooled.evaluate(preds) == CULaneEvaluator(annos, iou_thresholds=(0.5, 0.7), workers=0).evaluate(preds)
    assert pooled.evaluate(preds) == pooled.evaluate(preds)


def test_reading_rules(tmp_path):
    path = tmp_path / "x.lines.txt"
    path.write_text("1 2 3 4 \n\n5.5 6 7\n8 9 abc 10 11\n1e1 2E-1 12x 13\n")
    lanes = read_lines_file(path)
    assert [len(lane) for lane in lanes] == [2, 0, 1, 1, 1]
    np.testing.assert_array_equal(lanes[0], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(lanes[2], [[5.5, 6]])
    np.testing.assert_array_equal(lanes[3], [[8, 9]])
    np.testing.assert_array_equal(lanes[4], np.float32([[10, 0.2]]))
    assert lanes[0].dtype == np.float32
    assert parse_lane_line("0.1 0.2").tolist() == [[np.float32(0.1), np.float32(0.2)]]


def write_lanes(path, lanes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(f"{v:.2f}" for v in lane.ravel()) + "\n" for lane in lanes))


def make_culane_layout(root, rng):
    annos, preds = random_scene(rng, 6)
    names = [f"/driver_1/clip/{i:05d}.jpg" for i in range(6)]
    for name, anno, pred in zip(names, annos, preds):
        write_lanes(root / "anno" / (name[1:-4] + ".lines.txt"), anno)
        if name != names[5]:
            write_lanes(root / "pred" / (name[1:-4] + ".lines.txt"), pred)
    (root / "test.txt").write_text("\n".join(names) + "\n")
    (root / "split").mkdir()
    (root / "split" / "test0_normal.txt").write_text("\n".join(names[:3]) + "\n")
    (root / "split" / "test8_night.txt").write_text("\n".join(names[3:]) + "\n")
    return names, annos, preds


def files_arguments(root):
    return ["culane", "--anno-dir", str(root / "anno"), "--pred-dir", str(root / "pred"), "--list",
            str(root / "test.txt"), "--categories", str(root / "split"), "--workers", "0"]


def test_files_missing_predictions_warn_once_and_count_as_empty(tmp_path):
    rng = np.random.default_rng(3)
    names, annos, preds = make_culane_layout(tmp_path, rng)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate.main(files_arguments(tmp_path))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith("1 of 6 prediction files are missing")
    preds[5] = []
    rounded = [[np.round(lane, 2) for lane in image] for image in preds]
    expected = CULaneEvaluator([[np.round(lane, 2) for lane in image] for image in annos],
                               {"normal": [0, 1, 2], "night": [3, 4, 5]}, workers=0).evaluate(rounded)
    assert result == {"metric": expected["0.5"]["f1"], **expected}
    (tmp_path / "split" / "test9_bad.txt").write_text("/not/listed.jpg\n")
    with pytest.raises(DataFormatError, match=r"test9_bad.txt:1: image 'not/listed.jpg' is not in the evaluated list"):
        evaluate.main(files_arguments(tmp_path))


def test_cli_writes_json_tables_and_per_image(tmp_path):
    rng = np.random.default_rng(4)
    make_culane_layout(tmp_path, rng)
    out, per_image = tmp_path / "out" / "r.json", tmp_path / "out" / "p.tsv"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), "culane",
                           "--anno-dir", str(tmp_path / "anno"), "--pred-dir", str(tmp_path / "pred"),
                           "--list", str(tmp_path / "test.txt"), "--categories", str(tmp_path / "split"),
                           "--iou", "0.5", "0.75", "--workers", "0", "--json", str(out), "--per-image", str(per_image)],
                          capture_output=True, text=True, check=True)
    result = json.loads(out.read_text())
    assert set(result) == {"metric", "0.5", "0.75", "mF1", "categories"} and result["metric"] == result["0.5"]["f1"]
    assert set(result["categories"]) == {"normal", "night"}
    assert "F1@0.5" in proc.stdout and "night" in proc.stdout
    rows = per_image.read_text().splitlines()
    assert rows[0].split("\t")[:4] == ["image", "anno", "pred", "tp@0.5"] and len(rows) == 7
    assert sum(int(r.split("\t")[3]) for r in rows[1:]) == result["0.5"]["tp"]


def test_points_round_half_to_even():
    assert ious([vertical(800)], [vertical(800.5)]).tolist() == [1.0]
    assert ious([vertical(802)], [vertical(801.5)]).tolist() == [1.0]
    assert ious([vertical(801)], [vertical(800.5)])[0] < 1.0


def test_lanes_entirely_off_the_canvas_match_nothing_and_do_not_fail():
    # every stamp of these lanes is empty: they must rasterise to nothing, not break the batch
    off = [np.array([[1657.0 + 2 * i, 580.0 - 40 * i] for i in range(8)]),  # just past the right edge
           np.array([[-18.0 - 2 * i, 580.0 - 40 * i] for i in range(8)]),  # just past the left edge
           np.array([[2000.0 + 5 * i, 580.0 - 40 * i] for i in range(8)])]
    result = CULaneEvaluator([off], workers=0).evaluate([off])
    assert (result["0.5"]["tp"], result["0.5"]["fp"], result["0.5"]["fn"]) == (0, 3, 3)
