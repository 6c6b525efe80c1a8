"""The lane-kind metrics of validation: accuracy on matched lanes, per-kind F1 and the confusion
matrix, worked out by hand; the benchmark's matching feeding them (the written lanes' kinds,
short lanes dropped as the files drop them); the tables in the log and nothing at all without
kinds."""
import numpy as np
import pytest

from srlane.benchmarks.culane import CULane
from srlane.data.crop import Crop
from srlane.data.records import LaneRecord
from srlane.engine.recorder import flat_metrics, format_metrics
from srlane.engine.validation import Validator
from srlane.evaluation.categories import category_metrics
from srlane.lanes import Lane
from srlane.models.inference import InferenceOptions

# three images: annotation kinds, predicted kinds, matched (annotation, prediction) pairs
IMAGES = [
    ([1, 2, 8], [1, 8, 7], np.array([[0, 0], [1, 1], [2, 2]])),  # right, 2 called 8, 8 called 7
    ([8, 0, 20], [8, 1, 2, 20], np.array([[0, 0], [1, 1], [2, 3]])),  # right, unknown: not judged, right; a 2 unmatched
    ([7], [], np.zeros((0, 2))),  # a yellow dash missed
]


def test_accuracy_f1_and_confusion_worked_by_hand():
    m = category_metrics(IMAGES)
    # 5 matched pairs with a known annotation kind, 3 of them the right kind
    assert m["category_matched"] == 5 and m["category_accuracy"] == pytest.approx(3 / 5)
    assert m["category_counts"] == {
        "white-dash": {"tp": 1, "fp": 0, "fn": 0},  # image 1's kind-1 prediction sits on an unknown lane: not counted
        "white-solid": {"tp": 0, "fp": 1, "fn": 1},  # image 1's unmatched 2; image 0's 2 called 8
        "yellow-dash": {"tp": 0, "fp": 1, "fn": 1},  # image 0's 7 on an 8; image 2's missed 7
        "yellow-solid": {"tp": 1, "fp": 1, "fn": 1},
        "left-curbside": {"tp": 1, "fp": 0, "fn": 0},
    }
    assert m["category_f1"] == {"white-dash": 1.0, "white-solid": 0.0, "yellow-dash": 0.0,
                                "yellow-solid": pytest.approx(2 / 4), "left-curbside": 1.0}
    assert m["category_confusion"] == {
        "kinds": ["white-dash", "white-solid", "yellow-dash", "yellow-solid", "left-curbside"],
        "matrix": [[1, 0, 0, 0, 0],
                   [0, 0, 0, 1, 0],
                   [0, 0, 0, 0, 0],
                   [0, 0, 1, 1, 0],
                   [0, 0, 0, 0, 1]]}


def test_no_pair_no_accuracy_and_bad_pairs_are_refused():
    m = category_metrics([([1], [2], np.zeros((0, 2)))])
    assert m["category_accuracy"] is None and m["category_matched"] == 0
    assert m["category_f1"] == {"white-dash": 0.0, "white-solid": 0.0}
    with pytest.raises(ValueError, match="image 0: a matched pair"):
        category_metrics([([1], [2], np.array([[0, 1]]))])
    with pytest.raises(ValueError, match="two matched pairs"):
        category_metrics([([1, 2], [2], np.array([[0, 0], [1, 0]]))])


def test_the_tables_in_the_log_and_the_names_on_tensorboard():
    metrics = {"metric": 0.5, "f1": 0.5, **category_metrics(IMAGES)}
    text = format_metrics(metrics)
    lines = text.split("\n")
    assert "  lane kinds: accuracy 60.00 % on 5 matched lanes" in lines
    row = next(line for line in lines if line.lstrip().startswith("yellow-solid") and "50.00" in line)
    assert row.split() == ["yellow-solid", "50.00", "1", "1", "1"]
    matrix = lines[lines.index(next(line for line in lines if "annotation \\ predicted" in line)):]
    assert matrix[4].split() == ["yellow-solid", "0", "0", "1", "1", "0"] and len(matrix) == 6
    assert len({len(line) for line in matrix}) == 1  # aligned
    flat = flat_metrics(metrics)
    assert flat["category_accuracy"] == pytest.approx(0.6) and flat["category_f1/white-dash"] == 1.0
    assert flat["category_counts/yellow-dash/fn"] == 1
    assert not any(key.startswith("category_") for key in format_metrics({"metric": 0.5, "f1": 0.5}))


def vertical(x: float) -> np.ndarray:
    return np.array([[x, 589.0], [x, 270.0]], np.float32)


def lane(x: float, kind: int, score: float | None = 0.9, top: float = 270 / 590, bottom: float = 1.0) -> Lane:
    return Lane(np.array([[x / 1640, top], [x / 1640, bottom]]), category=kind, category_score=score)


class Split:
    """What Validator._score reads of a dataset."""

    def __init__(self, records):
        self.records = records

    def __len__(self):
        return len(self.records)


def score(records, predictions):
    validator = Validator(None, lambda: None, None, InferenceOptions(), None, CULane("unused", Crop(270)), None, print)
    return validator._score(Split(records), dict(enumerate(predictions)))


def test_validation_matches_as_the_benchmark_and_reports_the_kinds():
    records = [LaneRecord("a.jpg", "a.jpg", [vertical(400), vertical(800), vertical(1200)], lane_categories=(2, 1, 8))]
    # first a lane above the crop: no file holds it, its kind goes with it; then 2 right, 1 called 7, an FP 1
    predictions = [[lane(100, 20, top=0.1, bottom=0.2), lane(400, 2), lane(800, 7), lane(1200, 8), lane(1500, 1)]]
    metrics = score(records, predictions)
    assert metrics["0.5"]["tp"] == 3 and metrics["0.5"]["fp"] == 1  # the CULane metric as without kinds
    assert metrics["category_accuracy"] == pytest.approx(2 / 3) and metrics["category_matched"] == 3
    assert metrics["category_f1"] == {"white-dash": 0.0, "white-solid": 1.0, "yellow-dash": 0.0, "yellow-solid": 1.0}
    assert metrics["category_confusion"]["matrix"] == [[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]


def test_without_kinds_validation_is_unchanged():
    records = [LaneRecord("a.jpg", "a.jpg", [vertical(400)], lane_categories=(2,))]
    headless = score(records, [[lane(400, 0, None)]])  # a network without a category head
    unlabelled = score([LaneRecord("a.jpg", "a.jpg", [vertical(400)])], [[lane(400, 2)]])  # labels without kinds
    evaluate = CULane("unused", Crop(270)).evaluator([LaneRecord("a.jpg", "a.jpg", [vertical(400)])])
    plain = evaluate([[lane(400, 0, None)]])
    assert headless == unlabelled == plain and not any(key.startswith("category") for key in plain)


def test_the_tables_go_to_tensorboard_as_text_at_the_validation_step(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from helpers.engine import make_cfg
    from srlane.engine.kind_report import KindTextHook
    from srlane.engine.kind_tables import kind_tables
    from srlane.engine.state import TrainState
    from srlane.engine.trackers import build_trackers, start_trackers

    trackers = build_trackers(make_cfg(loggers=["tensorboard"]))
    start_trackers(trackers, str(tmp_path), lambda line: None, {})
    state, metrics = TrainState(), category_metrics(IMAGES)
    state.step = 7
    KindTextHook(trackers).after_validation(state, metrics, False)
    KindTextHook(trackers).after_validation(state, {"metric": 0.5}, False)  # no kinds: nothing written
    for tracker in trackers:
        tracker.finalize("success")
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    [written] = events.Tensors("val/lane_kinds/text_summary")
    text = written.tensor_proto.string_val[0].decode()
    assert written.step == 7 and text == "\n".join("    " + line for line in kind_tables(metrics).split("\n"))


def test_the_kind_metrics_reach_results_json(tmp_path):
    from srlane.engine.results import read_results, validation_entry, write_results

    records = [LaneRecord("a.jpg", "a.jpg", [vertical(400), vertical(800)], lane_categories=(2, 1))]
    metrics = score(records, [[lane(400, 2), lane(800, 7)]])
    write_results(str(tmp_path), [validation_entry(metrics, 10, 1, {}, 1.0)])
    [entry] = read_results(str(tmp_path))
    assert entry["metrics"]["category_accuracy"] == 0.5 and entry["metrics"]["category_f1"]["white-solid"] == 1.0
    assert entry["metrics"]["category_confusion"]["matrix"] == [[0, 0, 1], [0, 1, 0], [0, 0, 0]]
