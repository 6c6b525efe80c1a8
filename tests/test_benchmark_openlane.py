"""OpenLane: the official 2D metric on hand-built frames (results worked out by hand in the
comments), the layout's reader and the result files both ways, and each bad input's one line."""
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from srlane.benchmarks import BENCHMARKS, OpenLane, openlane
from srlane.data.crop import Crop
from srlane.data.records import DataFormatError
from srlane.evaluation.culane import CULaneEvaluator
from srlane.evaluation.kuhn_munkres import official_assign
from srlane.evaluation.openlane import OpenLaneEvaluator
from srlane.lanes import Lane
from tools import evaluate

ROOT = Path(__file__).resolve().parents[1]


def vertical(x: float, top: float = 700.0, bottom: float = 1270.0) -> np.ndarray:
    """A straight vertical lane of two points at column ``x``."""
    return np.array([[x, top], [x, bottom]])


def counts(annos, anno_cats, preds, pred_cats, **kw) -> list[list[int]]:
    return OpenLaneEvaluator(annos, anno_cats, **kw).image_counts(preds, pred_cats).tolist()


# Width 30: two vertical lanes d pixels apart overlap in about (31 - d) of their ~31 columns, so
# their IoU is about (31 - d) / (31 + d): d = 2 -> 0.88, d = 10 -> 0.51, d = 25 -> 0.11, d >= 31 -> 0.


def test_matching_one_to_one():
    # annotations A (x=500, cat 1), B (x=900, cat 2); detections P (x=502, cat 1: IoU 0.88 with A),
    # Q (x=1500, cat 2: touches nothing): A-P is the one true positive, Q a false positive, B missed
    annos, cats = [[vertical(500), vertical(900)]], [[1, 2]]
    assert counts(annos, cats, [[vertical(502), vertical(1500)]], [[1, 2]]) == [[1, 1, 1]]
    # two detections on one annotation: one matches, the other is a false positive
    assert counts([[vertical(500)]], [[1]], [[vertical(501), vertical(503)]], [[1, 1]]) == [[1, 1, 0]]


def test_category_mismatch_aware_and_agnostic():
    # the detection lies on the annotation (IoU 1) but says white-solid (2) where it is white-dash (1):
    # same-category matching (the default) gives no true positive, the tool's -k gives one
    annos, cats, preds, pred_cats = [[vertical(500)]], [[1]], [[vertical(500)]], [[2]]
    assert counts(annos, cats, preds, pred_cats) == [[0, 1, 1]]
    assert counts(annos, cats, preds, pred_cats, category_aware=False) == [[1, 0, 0]]
    # with one of each kind side by side the categories decide who matches whom: detections at
    # 505 (cat 2) and 520 (cat 1) for annotations at 500 (cat 1) and 520 (cat 2). Aware: 500-520
    # has IoU (31-20)/(31+20) = 0.22 < 0.3, 520-505 0.35 > 0.3: one tp. Agnostic: 500-505 (0.72)
    # and 520-520 (1.0): two
    annos, cats = [[vertical(500), vertical(520)]], [[1, 2]]
    preds, pred_cats = [[vertical(505), vertical(520)]], [[2, 1]]
    assert counts(annos, cats, preds, pred_cats) == [[1, 1, 1]]
    assert counts(annos, cats, preds, pred_cats, category_aware=False) == [[2, 0, 0]]


def test_short_lanes_are_no_lanes():
    # a lane of 0 or 1 point counts neither as an annotation nor as a detection (CULane's tool
    # counts them: fn 2, fp 1 more)
    annos = [[vertical(500), np.zeros((0, 2)), np.array([[900.0, 800.0]])]]
    preds = [[vertical(500), np.array([[1200.0, 900.0]])]]
    assert counts(annos, [[1, 1, 1]], preds, [[1, 1]]) == [[1, 0, 0]]
    culane = CULaneEvaluator(annos, width=30, img_shape=(1280, 1920), iou_thresholds=(0.3,), workers=0)
    scores = culane.score_images(preds)
    assert (int(scores.tp[0, 0]), int(scores.num_pred[0]), int(scores.num_anno[0])) == (1, 2, 3)


def test_empty_frames():
    # no annotation: every detection is a false positive; no detection: every annotation is missed
    annos, cats = [[], [vertical(500), vertical(900)], []], [[], [1, 2], []]
    preds, pred_cats = [[vertical(500), vertical(900)], [], []], [[1, 2], [], []]
    assert counts(annos, cats, preds, pred_cats) == [[0, 2, 0], [0, 0, 2], [0, 0, 0]]
    assert OpenLaneEvaluator(annos, cats).evaluate(preds, pred_cats) == {
        "tp": 0, "fp": 2, "fn": 2, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert OpenLaneEvaluator([[]], [[]]).evaluate([[]], [[]])["f1"] is None  # 0 / 0: undefined


def test_points_are_sorted_by_v():
    # a curved lane and the same points shuffled: the tool sorts each lane's points by v, so the
    # two are one drawing (IoU 1); drawn in the given order the shuffled spline doubles back
    lane = np.array([[500.0, 700.0], [560.0, 900.0], [700.0, 1100.0], [900.0, 1270.0]])
    shuffled = lane[[2, 0, 3, 1]]
    assert counts([[lane]], [[1]], [[shuffled]], [[1]], iou_threshold=0.9) == [[1, 0, 0]]
    as_given = CULaneEvaluator([[lane]], width=30, img_shape=(1280, 1920), iou_thresholds=(0.9,), workers=0)
    assert int(as_given.score_images([[shuffled]]).tp[0, 0]) == 0


def test_iou_and_width_flags():
    # 10 px apart: IoU (31-10)/(31+10) = 0.51: a match above 0.3 and 0.5, not above 0.6 (strict >)
    assert counts([[vertical(500)]], [[1]], [[vertical(510)]], [[1]]) == [[1, 0, 0]]
    assert counts([[vertical(500)]], [[1]], [[vertical(510)]], [[1]], iou_threshold=0.6) == [[0, 1, 1]]
    # 25 px apart: IoU 0.11 at width 30, (61-25)/(61+25) = 0.42 at width 60
    assert counts([[vertical(500)]], [[1]], [[vertical(525)]], [[1]]) == [[0, 1, 1]]
    assert counts([[vertical(500)]], [[1]], [[vertical(525)]], [[1]], width=60) == [[1, 0, 0]]


def test_lanes_off_the_canvas_match_as_the_tool_does():
    # annotation and detection 0 both lie right of the 1920-wide canvas (IoU 0/0 = NaN), 1 both at
    # x=500 (IoU 1). The tool's Kuhn-Munkres: l = [0, 1] (NaN never wins a max), row 0 takes
    # column 1 (weight 0, tight); row 1 finds column 1 taken and no path: slack d = 1 (the NaN
    # slack never wins), l = [-1, 0], r = [0, 1]; row 1 then takes column 0 (0 + 0 - 0 tight).
    # So the pairs are (0, 1) and (1, 0), both of similarity 0 or NaN: no true positive, where an
    # exact assignment would find 1.
    assert [a.tolist() for a in official_assign(np.array([[np.nan, 0.0], [0.0, 1.0]]))] == [[0, 1], [1, 0]]
    annos, preds = [[vertical(2500), vertical(500)]], [[vertical(2500), vertical(500)]]
    assert counts(annos, [[1, 1]], preds, [[1, 1]]) == [[0, 2, 2]]


def test_official_assign_is_a_near_best_matching():
    # without NaN the tool's matching is one-to-one and within its 0.01 tolerance per pair of the best
    rng = np.random.default_rng(0)
    for _ in range(200):
        w = rng.random((int(rng.integers(1, 7)), int(rng.integers(1, 7))))
        w[rng.random(w.shape) < 0.3] = 0.0
        rows, cols = official_assign(w)
        assert len(set(rows.tolist())) == len(rows) == len(set(cols.tolist())) == min(w.shape)
        best = w[linear_sum_assignment(w, maximize=True)].sum()
        assert w[rows, cols].sum() >= best - 0.01 * min(w.shape) - 1e-12


# --- the layout, the reader, the result files ---------------------------------------------------

def make_set(root: Path, frames: dict[str, tuple[list, list]], split: str = "validation") -> None:
    for name, (lanes, cats) in frames.items():
        openlane.write_frame_label(root, split, name, lanes, cats)
        image = Path(openlane.image_path(root, f"{split}/{name}"))
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(b"")  # the reader only needs it to exist (all images are 1920x1280)


def test_label_writer_and_reader_round_trip(tmp_path):
    lane = np.array([[500.5, 1270.0], [520.25, 900.0], [560.0, 700.0]])
    path = openlane.write_frame_label(tmp_path, "training", "segment-1/100", [lane, vertical(900)], [8, 20],
                                      attributes=[2, 3], track_ids=[7, 9])
    assert path == str(tmp_path / "lane3d_1000" / "training" / "segment-1" / "100.json")
    data = json.loads(Path(path).read_text())
    assert data["file_path"] == "training/segment-1/100.jpg"
    assert set(data) == {"file_path", "intrinsic", "extrinsic", "lane_lines"}
    assert set(data["lane_lines"][0]) == {"uv", "category", "xyz", "visibility", "attribute", "track_id"}
    frame = openlane.read_frame(path)
    assert np.array_equal(frame.lanes[0], lane) and frame.categories == [8, 20]
    assert frame.attributes == [2, 3] and frame.track_ids == [7, 9]
    assert openlane.split_names(tmp_path, "training") == ["training/segment-1/100"]


def test_read_split_records_and_result_files_round_trip(tmp_path):
    # frame a: a 3-point lane given top first (kept bottom first), a 1-point lane (dropped)
    make_set(tmp_path, {"seg-a/1": ([np.array([[600.0, 700.0], [650.0, 900.0], [720.0, 1270.0]]),
                                     np.array([[10.0, 10.0]])], [7, 1]),
                        "seg-b/2": ([], [])})
    benchmark = OpenLane(str(tmp_path), Crop(640), (1280, 1920))
    records = benchmark.read_split("validation", training=False)
    assert [r.img_name for r in records] == ["images/validation/seg-a/1.jpg", "images/validation/seg-b/2.jpg"]
    assert records[0].lane_categories == (7,) and records[1].lane_categories == () and records[1].lanes == []
    assert records[0].lanes[0][:, 1].tolist() == [1270.0, 900.0, 700.0]
    predictions = [[Lane(np.array([[600, 700], [650, 900], [720, 1270]]) / [1920, 1280], category=7),  # on the label
                    Lane(np.array([[0.7, 0.6], [0.75, 0.99]]), category=2)], []]
    out = tmp_path / "results"
    benchmark.write_predictions(records, predictions, str(out))
    written = json.loads((out / "validation" / "seg-a" / "1.json").read_text())
    assert written["file_path"] == "validation/seg-a/1.jpg" and [e["category"] for e in written["lane_lines"]] == [7, 2]
    read = benchmark.read_predictions(records, str(out))
    expected = [benchmark.prediction_points(r, p) for r, p in zip(records, predictions)]
    assert all(np.array_equal(a, b) for ra, rb in zip(read, expected) for a, b in zip(ra, rb, strict=True))
    assert benchmark.read_prediction_categories(records, str(out)) == [[7, 2], []]
    # validation's evaluator and tools/evaluate.py on the written files give the same counts
    metrics = benchmark.evaluator(records)(predictions)
    result = evaluate.main(["openlane", "--anno-dir", str(tmp_path / "lane3d_1000"), "--pred-dir", str(out),
                            "--list", str(write_list(tmp_path, ["validation/seg-a/1", "validation/seg-b/2"]))])
    assert metrics == {k: v for k, v in result.items() if k != "category_aware"}
    assert (metrics["tp"], metrics["fp"], metrics["fn"]) == (1, 1, 0)  # the yellow-dash lane found, a stray one
    assert "openlane" in BENCHMARKS


def test_a_list_file_is_a_split(tmp_path):
    make_set(tmp_path, {"seg/1": ([vertical(500)], [3]), "seg/2": ([vertical(600)], [4])})
    write_list(tmp_path, ["validation/seg/2"])
    records = OpenLane(str(tmp_path), Crop(0), (1280, 1920)).read_split("lists/validation.txt", training=False)
    assert [r.img_name for r in records] == ["images/validation/seg/2.jpg"] and records[0].lane_categories == (4,)


def write_list(root: Path, names: list[str]) -> Path:
    openlane.write_list(root, "validation", names)
    return Path(openlane.list_path(root, "validation"))


def test_missing_result_file_is_no_lanes(tmp_path):
    make_set(tmp_path, {"seg/1": ([vertical(500)], [1])})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lanes, cats = openlane.read_results(["validation/seg/1"], str(tmp_path / "none"))
    assert lanes == [[]] and cats == [[]] and "1 of 1 result files are missing" in str(caught[0].message)


# --- bad input: one line naming the file and the lane -------------------------------------------

BAD = [
    ({"lane_lines": [{"uv": [[1, 2], [3, 4]], "category": 2}, {"uv": [[1, 2], [3, 4]], "category": 13}]},
     'lane 1: "category" is 13, expected an OpenLane category id (0-12, 20, 21)'),
    ({"lane_lines": [{"uv": [[1.0, 2.0, 3.0], [3.0, 4.0]], "category": 2}]},
     'lane 0: "uv" has 3 u and 2 v values, expected one v per u'),
    ({"file_path": "x.jpg"},
     'no "lane_lines" key, expected {"file_path": ..., "lane_lines": [{"uv": [[u...], [v...]], "category": ...}, ...]}'),
]


@pytest.mark.parametrize("content,message", BAD)
def test_bad_label_is_one_line(tmp_path, content, message):
    make_set(tmp_path, {"seg/1": ([vertical(500)], [1])}, split="training")
    label = Path(openlane.label_path(tmp_path, "training/seg/1"))
    label.write_text(json.dumps(content))
    with pytest.raises(DataFormatError) as err:
        OpenLane(str(tmp_path), Crop(0), (1280, 1920)).read_split("training", training=True)
    assert str(err.value).startswith(f"{label}: {message}") and "\n" not in str(err.value)


@pytest.mark.parametrize("content,message", BAD)
def test_bad_result_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "results" / "validation" / "seg" / "1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(content))
    with pytest.raises(DataFormatError) as err:
        openlane.read_results(["validation/seg/1"], str(tmp_path / "results"))
    assert str(err.value) == f"{path}: {message}"


def test_evaluate_tool_bad_result_exits_with_one_line(tmp_path):
    make_set(tmp_path, {"seg/1": ([vertical(500)], [1])})
    path = tmp_path / "results" / "validation" / "seg" / "1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(BAD[1][0]))
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), "openlane",
                          "--anno-dir", str(tmp_path / "lane3d_1000"), "--pred-dir", str(tmp_path / "results"),
                          "--list", str(write_list(tmp_path, ["validation/seg/1"]))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"error: {path}: {BAD[1][1]}"


def test_evaluate_tool_table_and_json(tmp_path):
    # frame 1: annotation x=500 cat 1, detection x=500 cat 2: aware 0/1/1, agnostic 1/0/0
    make_set(tmp_path, {"seg/1": ([vertical(500)], [1])})
    path = openlane.result_path(tmp_path / "results", "validation/seg/1")
    Path(path).parent.mkdir(parents=True)
    Path(path).write_text(json.dumps({"file_path": "validation/seg/1.jpg",
                                      "lane_lines": [openlane.lane_entry(vertical(500), 2)]}))
    args = ["openlane", "--anno-dir", str(tmp_path / "lane3d_1000"), "--pred-dir", str(tmp_path / "results"),
            "--list", str(write_list(tmp_path, ["validation/seg/1"])), "--json", str(tmp_path / "r.json")]
    aware = evaluate.main(args)
    assert json.loads((tmp_path / "r.json").read_text()) == aware
    assert {k: aware[k] for k in ("tp", "fp", "fn", "precision", "recall", "f1")} == {
        "tp": 0, "fp": 1, "fn": 1, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    agnostic = evaluate.main(args + ["--category-agnostic"])
    assert (agnostic["tp"], agnostic["fp"], agnostic["fn"], agnostic["f1"]) == (1, 0, 0, 1.0)


def test_label_checks_apply_and_skip_leaves_a_training_frame_out(tmp_path):
    # frame 2's lane has two points in one row (check_lane): a training split under "skip" drops it
    one_row = np.array([[500.0, 900.0], [520.0, 900.0]])
    make_set(tmp_path, {"seg/1": ([vertical(500)], [1]), "seg/2": ([one_row], [1])}, split="training")
    label = openlane.label_path(tmp_path, "training/seg/2")
    skipped = []
    records = OpenLane(str(tmp_path), Crop(0), (1280, 1920), on_bad_label="skip").read_split("training", True,
                                                                                              skipped.append)
    assert [r.img_name for r in records] == ["images/training/seg/1.jpg"]
    assert len(skipped) == 1 and f"{label}: lane 0: points (500, 900) and (520, 900) lie in one row" in skipped[0]


def test_kind_metrics_pair_lanes_whatever_their_kinds(tmp_path):
    # annotations x=500 (white-dash 1) and x=900 (yellow-solid 8); predictions on both, the first
    # with the wrong kind (white-solid 2): the kinds' pairs ignore kinds (the tool's -k matching at
    # IoU 0.3), so both pairs count, accuracy 1/2, and the confusion matrix has 1 -> 2 and 8 -> 8;
    # the headline F-score (same category only) has one true positive
    make_set(tmp_path, {"seg/1": ([vertical(500), vertical(900)], [1, 8])})
    benchmark = OpenLane(str(tmp_path), Crop(640), (1280, 1920))
    records = benchmark.read_split("validation", training=False)
    predictions = [[Lane(vertical(502)[::-1] / [1920, 1280], category=2, category_score=0.9),
                    Lane(vertical(900)[::-1] / [1920, 1280], category=8, category_score=0.8)]]
    kinds = benchmark.category_evaluator(records)(predictions)
    assert kinds["category_accuracy"] == 0.5 and kinds["category_matched"] == 2
    confusion = kinds["category_confusion"]
    matrix = dict(zip(confusion["kinds"], confusion["matrix"]))
    assert matrix["white-dash"][confusion["kinds"].index("white-solid")] == 1
    assert matrix["yellow-solid"][confusion["kinds"].index("yellow-solid")] == 1
    assert benchmark.evaluator(records)(predictions)["tp"] == 1
