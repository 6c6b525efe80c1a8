"""Lane kinds in every prediction file and picture: the TuSimple ``categories`` list, the
CurveLanes ``Categories``, the CULane sidecar beside an unchanged ``.lines.txt``, the video json
lines; dashed lanes drawn with gaps and yellow ones in yellow. Without a category head every
output is as it was."""
import json

import numpy as np
import pytest

from srlane.benchmarks.culane import CULane, categories_file_name, read_categories_file
from srlane.benchmarks.curvelanes import CurveLanes, read_lines_json
from srlane.benchmarks.tusimple import TuSimple, read_prediction_file, read_prediction_kinds
from srlane.data.crop import Crop
from srlane.data.records import DataFormatError, LaneRecord
from srlane.data.video import lanes_json_line
from srlane.lanes import Lane
from srlane.visualize import KIND_COLOURS, PRED_COLOUR, draw_decoded_lanes


def lanes(kinds, scores):
    """A lane per kind, slanted, from the middle of the image to its bottom; then one above any
    crop (no file holds it)."""
    out = [Lane(np.array([[0.2 + 0.2 * i, 0.5], [0.1 + 0.2 * i, 1.0]]), category=k, category_score=s)
           for i, (k, s) in enumerate(zip(kinds, scores))]
    return out + [Lane(np.array([[0.9, 0.05], [0.9, 0.1]]), category=20, category_score=scores[0])]


HEAD = lanes([1, 8, 21], [0.9, 0.8, 0.7])
HEADLESS = lanes([0, 0, 0], [None, None, None])


def test_tusimple_categories_as_long_as_lanes_read_back(tmp_path):
    rows = tuple(range(360, 720, 10))
    records = [LaneRecord("/x/a.jpg", "clips/a.jpg", h_samples=rows),
               LaneRecord("/x/b.jpg", "clips/b.jpg", h_samples=rows)]
    benchmark = TuSimple(str(tmp_path), Crop(160), (720, 1280))
    benchmark.write_predictions(records, [HEAD, []], str(tmp_path / "kinds"))
    benchmark.write_predictions(records, [HEADLESS, []], str(tmp_path / "plain"))
    path = str(tmp_path / "kinds" / "predictions.json")
    first, second = [json.loads(line) for line in open(path)]
    assert first["categories"] == [1, 8, 21, 20] and len(first["lanes"]) == 4  # every lane, as LaneEval reads them
    assert second["categories"] == [] == second["lanes"]
    assert read_prediction_kinds(path, records) == [[1, 8, 21, 20], []]
    plain = [json.loads(line) for line in open(tmp_path / "plain" / "predictions.json")]
    assert [sorted(line) for line in plain] == [["lanes", "raw_file", "run_time"]] * 2  # no head: as before
    assert [line["lanes"] for line in plain] == [first["lanes"], []]
    assert [p.tolist() for p in read_prediction_file(path, records)[0][0]] == \
        [p.tolist() for p in read_prediction_file(str(tmp_path / "plain" / "predictions.json"), records)[0][0]]
    assert read_prediction_kinds(str(tmp_path / "plain" / "predictions.json"), records) == [None, None]


@pytest.mark.parametrize("categories, message", [
    ([1, 99, 2, 2], "lane 1: category 99 is not an OpenLane category id"),
    ([1, 2], "categories has 2 entries for 4 lanes"),
    ("1", "categories is '1', expected a list of 4 category ids"),
])
def test_tusimple_bad_categories_are_one_line_naming_file_line_and_lane(tmp_path, categories, message):
    rows = tuple(range(360, 720, 10))
    records = [LaneRecord("/x/a.jpg", "clips/a.jpg", h_samples=rows)]
    TuSimple(str(tmp_path), Crop(160), (720, 1280)).write_predictions(records, [HEAD], str(tmp_path))
    path = tmp_path / "predictions.json"
    line = json.loads(path.read_text())
    path.write_text(json.dumps({**line, "categories": categories}) + "\n")
    with pytest.raises(DataFormatError) as caught:
        read_prediction_kinds(str(path), records)
    assert str(caught.value) == f"{path}:1: image 'clips/a.jpg': {message}" + (
        f" (one of {[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 20, 21]})" if "99" in message else "")


def test_culane_lines_unchanged_and_the_kinds_beside_them(tmp_path):
    records = [LaneRecord("/x/a.jpg", "d/a.jpg"), LaneRecord("/x/b.jpg", "d/b.jpg")]
    benchmark = CULane(str(tmp_path), Crop(270))
    benchmark.write_predictions(records, [HEAD, []], str(tmp_path / "kinds"))
    benchmark.write_predictions(records, [HEADLESS, []], str(tmp_path / "plain"))
    for name in ("d/a.lines.txt", "d/b.lines.txt"):
        assert (tmp_path / "kinds" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
    assert len((tmp_path / "kinds" / "d/a.lines.txt").read_text().splitlines()) == 3  # the lane above the crop dropped
    assert categories_file_name("d/a.jpg") == "d/a.lines.categories.txt"
    assert (tmp_path / "kinds" / "d/a.lines.categories.txt").read_text() == "1\n8\n21\n"  # one id per written line
    assert (tmp_path / "kinds" / "d/b.lines.categories.txt").read_text() == ""
    assert sorted(p.name for p in (tmp_path / "plain" / "d").iterdir()) == ["a.lines.txt", "b.lines.txt"]
    sidecar = str(tmp_path / "kinds" / "d/a.lines.categories.txt")
    assert read_categories_file(sidecar, 3) == (1, 8, 21)  # the labels' sidecar format, read by their reader
    assert benchmark.read_predictions(records, str(tmp_path / "kinds"))[0][0].shape[1] == 2


def test_curvelanes_categories_parallel_to_lines(tmp_path):
    records = [LaneRecord("/x/a.jpg", "valid/images/a.jpg", img_size=(720, 1280))]
    benchmark = CurveLanes(str(tmp_path), Crop(0), None)
    benchmark.write_predictions(records, [HEAD], str(tmp_path / "kinds"))
    benchmark.write_predictions(records, [HEADLESS], str(tmp_path / "plain"))
    kinds = json.loads((tmp_path / "kinds/valid/images/a.lines.json").read_text())
    plain = json.loads((tmp_path / "plain/valid/images/a.lines.json").read_text())
    assert kinds["Categories"] == [1, 8, 21, 20] and kinds["Lines"] == plain["Lines"] and len(plain["Lines"]) == 4
    assert list(plain) == ["Lines"]
    assert len(read_lines_json(tmp_path / "kinds/valid/images/a.lines.json")) == 4
    bad = tmp_path / "bad.lines.json"
    bad.write_text(json.dumps({**kinds, "Categories": [1, 8, True, 20]}))
    with pytest.raises(DataFormatError, match='"Categories": lane 2: category True is not an OpenLane category id'):
        read_lines_json(bad)


def test_video_json_lines_carry_each_lanes_kind_and_probability():
    kinds = json.loads(lanes_json_line(3, 0.1, HEAD, 1280, 720, 100))  # the top 100 rows cropped
    plain = json.loads(lanes_json_line(3, 0.1, HEADLESS, 1280, 720, 100))
    assert kinds["categories"] == [1, 8, 21] and kinds["category_scores"] == [0.9, 0.8, 0.7]  # the lanes written
    assert len(kinds["lanes"]) == 3 and kinds["lanes"] == plain["lanes"]
    assert list(plain) == ["frame", "time", "lanes"]


def picture(lanes_):
    return draw_decoded_lanes(np.zeros((200, 400, 3), np.uint8), lanes_)


def straight(x: float, kind: int, score: float | None) -> Lane:
    return Lane(np.array([[x / 400, 0.4], [x / 400, 1.0]]), category=kind, category_score=score)


def test_yellow_lanes_in_yellow_dashed_ones_with_gaps():
    out = picture([straight(100, 8, 0.9), straight(300, 1, 0.9)])  # a yellow solid, a white dash
    yellow = (out[80:200, 100] == KIND_COLOURS["yellow"]).all(axis=-1)
    assert yellow.all()  # unbroken yellow down the solid lane
    white = (out[80:200, 300] == KIND_COLOURS["white"]).all(axis=-1)
    dashes = int(white[0]) + len(np.flatnonzero(white[1:] & ~white[:-1]))
    assert 0.3 < white.mean() < 0.8 and dashes >= 3  # dashes of 24 px and gaps of 20 px alternate (4-px units)
    assert (out[80:200, 300] == PRED_COLOUR).all(axis=-1).any()  # edged in the prediction's colour
    legend = out[:60, :200]
    assert (legend == KIND_COLOURS["yellow"]).all(axis=-1).any()  # a legend row for the yellow solid


def test_double_lines_are_two_and_pictures_without_a_head_as_before():
    double = picture([straight(200, 10, 0.9)])[150, 180:221]  # a double yellow solid across its row
    yellow = (double == KIND_COLOURS["yellow"]).all(axis=-1)
    assert len(np.flatnonzero(yellow[1:] & ~yellow[:-1])) == 2  # two separate yellow lines
    headless = picture([straight(200, 10, None)])
    assert (headless[100:200, 200] == PRED_COLOUR).all(axis=-1).all()  # the red line of a plain prediction
    assert not (headless == KIND_COLOURS["yellow"]).all(axis=-1).any()
    assert np.array_equal(headless, picture([straight(200, 0, None)]))  # the category alone changes nothing


def test_view_pictures_draw_the_labels_kinds(tmp_path):
    from types import SimpleNamespace

    import cv2

    from srlane.visualize import GT_COLOUR, write_visualizations

    path = tmp_path / "a.png"
    cv2.imwrite(str(path), np.zeros((200, 400, 3), np.uint8))
    truth = [np.array([[x, 199.0], [x, 80.0]], np.float32) for x in (100.0, 300.0)]
    kinds = LaneRecord(str(path), "a.png", truth, lane_categories=(8, 1))  # a yellow solid, a white dash
    plain = LaneRecord(str(path), "b.png", truth)
    write_visualizations(SimpleNamespace(records=[kinds, plain]), [[], []], str(tmp_path / "vis"))
    with_kinds, without = (cv2.imread(str(tmp_path / "vis" / name)) for name in ("a.png", "b.png"))
    assert (with_kinds[80:200, 100] == KIND_COLOURS["yellow"]).all(axis=-1).all()
    white = (with_kinds[80:200, 300] == KIND_COLOURS["white"]).all(axis=-1)
    assert 0.3 < white.mean() < 0.8  # dashes and gaps
    assert (without[100:200, 100] == GT_COLOUR).all(axis=-1).all()  # labels without kinds: the green line as before
