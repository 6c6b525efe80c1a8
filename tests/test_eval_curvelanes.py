import json
import math
import os
import warnings

import cv2
import numpy as np
import pytest
from scipy.interpolate import CubicSpline
from scipy.optimize import linear_sum_assignment

from srlane.benchmarks.curvelanes import (f1_evaluator, label_path, prediction_file, read_lines_json, read_lines_txt,
                                          read_predictions, scoring_records)
from srlane.data.records import DataFormatError
from srlane.evaluation.curvelanes import (CurveLanesEvaluator, count_hits, curvelanes_metrics, draw_lane,
                                          interpolate_lane, interpolate_lanes, iou_matrix, rasterize_lanes, scale_lane,
                                          score_image)

SIZES = [(2560, 1440), (1570, 660), (1280, 720)]


# A plain re-implementation written from the spec text (evaluation.md, CurveLanes), loops only.
def ref_interp(points):
    """Step 3 on canvas points (lists of floats), repeated consecutive points dropped first."""
    pts = []
    for p in points:
        if not pts or p != pts[-1]:
            pts.append(p)
    n = len(pts)
    if n < 2:
        return pts
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    h = []
    for i in range(n - 1):
        dx = xs[i] - xs[i + 1]
        dy = ys[i] - ys[i + 1]
        h.append(math.sqrt(dx * dx + dy * dy))
    moments = []
    for v in (xs, ys):
        m = [0.0] * n
        if n >= 3:  # Thomas algorithm on rows 1..n-2 (M_0 = M_{n-1} = 0)
            cp, dp = [], []
            for i in range(n - 2):
                rhs = 6 * ((v[i + 2] - v[i + 1]) / h[i + 1] - (v[i + 1] - v[i]) / h[i])
                diag = 2 * (h[i] + h[i + 1])
                if i > 0:
                    diag = diag - h[i] * cp[i - 1]
                    rhs = rhs - h[i] * dp[i - 1]
                cp.append(h[i + 1] / diag)
                dp.append(rhs / diag)
            m[n - 2] = dp[n - 3]
            for i in range(n - 4, -1, -1):
                m[i + 1] = dp[i] - cp[i] * m[i + 2]
        moments.append(m)
    out = []
    for i in range(n - 1):
        coef = []
        for v, m in zip((xs, ys), moments):
            b = (v[i + 1] - v[i]) / h[i] - (2 * h[i] * m[i] + h[i] * m[i + 1]) / 6
            coef.append((v[i], b, m[i] / 2, (m[i + 1] - m[i]) / (6 * h[i])))
        t = 0
        while t < h[i]:
            out.append(tuple(a + b * t + c * t * t + d * t * t * t for a, b, c, d in coef))
            t += 1
    out.append(pts[-1])
    return out


def ref_mask(lane, width, height):
    canvas = np.zeros((224, 224), np.uint8)
    pts = ref_interp([(float(x) / (width / 224), float(y) / (height / 224)) for x, y in lane])
    for p, q in zip(pts[:-1], pts[1:]):
        cv2.line(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 255, 5)
    return canvas > 0


def ref_image(gt, pred, width, height, threshold=0.5):
    gt = [lane for lane in gt if len(lane)]
    pred = [lane for lane in pred if len(lane)]
    if not gt or not pred:
        return 0, len(pred), len(gt), np.zeros((len(gt), len(pred)))
    gm = [ref_mask(lane, width, height) for lane in gt]
    pm = [ref_mask(lane, width, height) for lane in pred]
    iou = np.zeros((len(gt), len(pred)))
    for i, a in enumerate(gm):
        for j, b in enumerate(pm):
            union = np.count_nonzero(a | b)
            iou[i, j] = np.count_nonzero(a & b) / union if union else 0.0
    rows, cols = linear_sum_assignment(1 - iou)
    hits = sum(1 for r, c in zip(rows, cols) if iou[r, c] > threshold)
    return hits, len(pred), len(gt), iou


def cv2_mask(x0, y0, x1, y1):
    canvas = np.zeros((224, 224), np.uint8)
    cv2.line(canvas, (x0, y0), (x1, y1), 255, 5)
    return canvas > 0


# Interpolation
def test_two_point_lane_samples_every_chord_pixel_then_the_last_point():
    out = interpolate_lane(np.array([[10.5, 20.0], [13.5, 24.0]]))  # h = 5: t = 0..4
    expected = [[10.5, 20.0], [11.1, 20.8], [11.7, 21.6], [12.3, 22.4], [12.9, 23.2], [13.5, 24.0]]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    out = interpolate_lane(np.array([[0.0, 0.0], [3.0, 4.5]]))  # h = 5.408...: t = 0..5
    assert len(out) == 7 and out[-1].tolist() == [3.0, 4.5]
    np.testing.assert_allclose(out[5], [5 * 3 / math.hypot(3, 4.5), 5 * 4.5 / math.hypot(3, 4.5)], atol=1e-12)


@pytest.mark.parametrize("n", [3, 4, 7, 31])
def test_spline_matches_a_natural_cubic_spline_in_chord_length(n):
    rng = np.random.default_rng(n)
    pts = np.stack([rng.uniform(0, 224, n), np.sort(rng.uniform(0, 224, n))], 1)
    out = interpolate_lane(pts)
    h = np.hypot(*np.diff(pts, axis=0).T)
    knots = np.r_[0, np.cumsum(h)]
    t = np.concatenate([knots[i] + np.arange(math.ceil(h[i])) for i in range(n - 1)])
    assert len(out) == len(t) + 1 and out[-1].tolist() == pts[-1].tolist()
    spline = CubicSpline(knots, pts, bc_type="natural")
    np.testing.assert_allclose(out[:-1], spline(t), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(out[np.r_[0, np.cumsum(np.ceil(h[:-1])).astype(int)]], pts[:-1])


def test_batched_interpolation_equals_lane_by_lane_and_the_reference():
    rng = np.random.default_rng(5)
    lanes = [rng.uniform(-20, 240, (n, 2)) for n in (3, 0, 9, 2, 1, 4, 20)]
    together = interpolate_lanes(lanes)
    for lane, out in zip(lanes, together):
        np.testing.assert_array_equal(out, interpolate_lane(lane).reshape(-1, 2))
        np.testing.assert_array_equal(out.reshape(-1, 2), np.array(ref_interp(lane.tolist())).reshape(-1, 2))


def test_repeated_points_are_dropped_and_single_points_draw_nothing():
    lane = np.array([[5.0, 5.0], [5.0, 5.0], [40.0, 80.0], [40.0, 80.0], [90.0, 200.0]])
    np.testing.assert_array_equal(interpolate_lane(lane), interpolate_lane(lane[[0, 2, 4]]))
    assert interpolate_lane(np.array([[7.0, 9.0], [7.0, 9.0]])).tolist() == [[7.0, 9.0]]
    assert not draw_lane(interpolate_lane(np.array([[7.0, 9.0], [7.0, 9.0]]))).any()
    assert not rasterize_lanes([np.array([[100.0, 100.0]])], 224, 224).any()


# Drawing
def test_thickness_5_draws_a_7_pixel_body_with_round_caps():
    mask = draw_lane(np.array([[50.0, 100.0], [150.0, 100.0]])) > 0
    rows, cols = np.nonzero(mask)
    # body: rows 97..103 over columns 50..150 (7 * 101); each cap adds 5 + 5 + 1 pixels.
    assert mask.sum() == 7 * 101 + 2 * 11 == 729
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (97, 103, 47, 153)
    vertical = draw_lane(np.array([[100.0, 20.0], [100.0, 120.0]])) > 0
    assert vertical.sum() == 729 and (vertical.sum(axis=1)[30:110] == 7).all()
    # the whole pipeline (one sample per pixel along the line) draws the same pixels
    np.testing.assert_array_equal(rasterize_lanes([np.array([[50.0, 100.0], [150.0, 100.0]])], 224, 224)[0],
                                  mask.reshape(-1))


def test_coordinates_are_truncated_toward_zero():
    mask = draw_lane(np.array([[-1.5, 50.9], [-1.5, 160.2]])) > 0
    np.testing.assert_array_equal(mask, cv2_mask(-1, 50, -1, 160))  # int(-1.5) = -1
    assert not np.array_equal(mask, cv2_mask(-2, 50, -2, 160))  # floor would give -2: one column less
    mask = draw_lane(np.array([[10.99, 20.7], [100.2, 30.999]])) > 0
    np.testing.assert_array_equal(mask, cv2_mask(10, 20, 100, 30))


def test_lanes_outside_the_canvas_or_non_finite():
    assert not rasterize_lanes([np.array([[-50.0, -50.0], [-60.0, -200.0]])], 224, 224).any()
    with pytest.raises(ValueError, match="int32"):
        draw_lane(np.array([[0.0, 0.0], [np.inf, 1.0]]))


def test_mixed_image_sizes_scale_to_the_same_canvas():
    lane = np.array([[640.0, 719.0], [700.5, 500.25], [800.0, 300.0], [900.75, 200.5]])
    small = rasterize_lanes([lane], 1280, 720)
    np.testing.assert_array_equal(rasterize_lanes([lane * 2], 2560, 1440), small)
    assert not np.array_equal(rasterize_lanes([lane], 2560, 1440), small)
    # y / (H / 224), not y * 224 / H: 165 / (660 / 224) = 55.99999999999999, truncated to 55 (not 56)
    assert scale_lane(np.array([[785.0, 165.0]]), 1570, 660).tolist() == [[785 / (1570 / 224), 165 / (660 / 224)]]
    mask = rasterize_lanes([np.array([[100.0, 165.0], [1000.0, 165.0]])], 1570, 660)[0]
    np.testing.assert_array_equal(mask, cv2_mask(14, 55, 142, 55).reshape(-1))


# Matching
def test_iou_exactly_one_half_is_not_a_hit_and_just_above_is():
    assert count_hits(np.array([[0.5]])) == 0
    assert count_hits(np.array([[np.nextafter(0.5, 1.0)]])) == 1
    gt = [np.array([[50.0, 100.0], [150.0, 100.0]])]
    half = [np.array([[55.0, 101.0], [203.0, 101.0]])]
    a, b = cv2_mask(50, 100, 150, 100), cv2_mask(55, 101, 203, 101)
    assert np.count_nonzero(a & b) * 2 == np.count_nonzero(a | b) == 1196
    assert iou_matrix(rasterize_lanes(gt, 224, 224), rasterize_lanes(half, 224, 224)).tolist() == [[0.5]]
    assert score_image(gt, half, 224, 224) == (0, 1, 1)
    above = [np.array([[55.0, 101.0], [202.0, 101.0]])]
    iou = iou_matrix(rasterize_lanes(gt, 224, 224), rasterize_lanes(above, 224, 224))[0, 0]
    assert 0.5 < iou < 0.51
    assert score_image(gt, above, 224, 224) == (1, 1, 1)


def test_assignment_is_one_to_one_and_maximises_total_iou():
    iou = np.array([[0.9, 0.8], [0.85, 0.1]])
    assert count_hits(iou) == 2  # greedy on 0.9 would leave 0.1
    assert count_hits(np.array([[0.9, 0.9, 0.9]])) == 1
    assert count_hits(np.zeros((0, 3))) == 0


def test_empty_lanes_are_dropped_and_one_point_lanes_count():
    lane = np.array([[300.0, 1400.0], [600.0, 900.0], [800.0, 600.0]])
    dot = np.array([[1000.0, 1000.0]])
    empty = np.zeros((0, 2))
    assert score_image([lane, empty], [lane.copy(), dot, empty], 2560, 1440) == (1, 2, 1)
    assert score_image([dot], [dot.copy()], 2560, 1440) == (0, 1, 1)  # nothing drawn: IoU 0
    assert score_image([lane], [np.array([[5.0, 5.0], [5.0, 5.0]]), lane], 2560, 1440) == (1, 2, 1)
    assert score_image([empty], [lane], 2560, 1440) == (0, 1, 0)
    assert score_image([lane], [], 2560, 1440) == (0, 0, 1)
    two = np.array([[300.0, 1400.0], [800.0, 600.0]])
    assert score_image([two], [two + [3.0, 0.0]], 2560, 1440) == (1, 1, 1)


def test_each_image_is_scored_with_its_own_size():
    gt = [np.array([[1000.0, 700.0], [1000.0, 200.0]])]
    pred = [np.array([[1018.0, 700.0], [1018.0, 200.0]])]
    assert score_image(gt, pred, 2560, 1440) == (1, 1, 1)  # 18 px -> 1.6 canvas px
    assert score_image(gt, pred, 1280, 720) == (0, 1, 1)  # 18 px -> 3.2 canvas px
    ev = CurveLanesEvaluator()
    assert ev.add(gt, pred, 2560, 1440) == (1, 1, 1)
    assert ev.add(gt, pred, 1280, 720) == (0, 1, 1)
    result = ev.summary()
    assert (result["tp"], result["fp"], result["fn"], result["num_images"]) == (1, 1, 1, 2)
    assert result["precision"] == result["recall"] == pytest.approx(0.5) and result["metric"] == result["f1"]


def test_totals_use_the_official_epsilon_terms():
    eps = np.finfo(float).eps
    m = curvelanes_metrics(3, 4, 6)
    p, r = 3 / (4 + eps), 3 / (6 + eps)
    assert m == {"tp": 3, "fp": 1, "fn": 3, "precision": p, "recall": r, "f1": 2 * p * r / (p + r + eps),
                 "metric": 2 * p * r / (p + r + eps)}
    assert curvelanes_metrics(0, 0, 0)["f1"] == 0.0
    assert CurveLanesEvaluator().summary()["precision"] == 0.0


def random_lane(rng, width, height):
    n = int(rng.choice([1, 2, 2, 3, 4, 6, 9, 14]))
    x0, slope, bend = rng.uniform(-0.1, 1.1) * width, rng.normal(0, 0.8), rng.normal(0, 2.0)
    ys = np.sort(rng.uniform(0.3, 1.05, n))[::-1] * height
    u = (ys - ys[0]) / height
    xs = x0 + slope * u * height + bend * u * u * height
    lane = np.stack([xs, ys], 1).round(int(rng.integers(0, 4)))
    if n > 2 and rng.random() < 0.1:
        lane = np.insert(lane, 1, lane[1], axis=0)  # a repeated point
    return lane[::-1] if rng.random() < 0.3 else lane


def test_corpus_matches_a_plain_reimplementation_exactly():
    rng = np.random.default_rng(2024)
    ev = CurveLanesEvaluator()
    totals = np.zeros(3, dtype=int)
    near = 0
    for _ in range(200):
        width, height = SIZES[int(rng.integers(len(SIZES)))]
        gt = [random_lane(rng, width, height) for _ in range(int(rng.integers(0, 6)))]
        pred = [lane + rng.normal(0, [8, 3]) * (width / 224) * rng.random() for lane in gt if rng.random() < 0.8]
        pred += [random_lane(rng, width, height) for _ in range(int(rng.integers(0, 3)))]
        if rng.random() < 0.1:
            gt.append(np.zeros((0, 2)))
        order = rng.permutation(len(pred))
        pred = [pred[i] for i in order]
        hits, num_pred, num_gt, ref_iou = ref_image(gt, pred, width, height)
        kept_gt, kept_pred = [g for g in gt if len(g)], [p for p in pred if len(p)]
        if kept_gt and kept_pred:
            ours = iou_matrix(rasterize_lanes(kept_gt, width, height), rasterize_lanes(kept_pred, width, height))
            np.testing.assert_array_equal(ours, ref_iou)
            near += int(np.any(np.abs(ref_iou - 0.5) < 0.1))
        assert ev.add(gt, pred, width, height) == (hits, num_pred, num_gt)
        totals += (hits, num_pred, num_gt)
    result = ev.summary()
    assert (result["tp"], result["tp"] + result["fp"], result["tp"] + result["fn"]) == tuple(totals)
    assert result == {**curvelanes_metrics(*totals), "num_images": 200}
    # the corpus exercises the threshold and has both hits and misses
    assert near > 10 and 0 < totals[0] < min(totals[1], totals[2])


# Files
def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_read_lines_json_strings_numbers_scores_and_empty_lanes(tmp_path):
    path = write(tmp_path / "a.lines.json", json.dumps({"Lines": [
        [{"x": "1021.4", "y": "1439.0"}, {"x": 980, "y": 1200.5}],
        [],
        {"score": 0.9, "points": [{"x": "1", "y": "2"}]},
        {"score": "0.2", "points": [{"x": "3", "y": "4"}]},
    ]}))
    lanes = read_lines_json(path)
    assert [lane.tolist() for lane in lanes] == [[[1021.4, 1439.0], [980.0, 1200.5]], [], [[1.0, 2.0]], [[3.0, 4.0]]]
    assert lanes[0].dtype == np.float64 and lanes[1].shape == (0, 2)
    assert len(read_lines_json(path, score_threshold=0.5)) == 3
    assert len(read_lines_json(path, score_threshold=0.9)) == 2  # kept only above the threshold


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"lines": []}', 'no "Lines" key'),
    ('[[{"x": 1, "y": 2}]]', 'no "Lines" key'),
    ('{"Lines": {"x": 1}}', '"Lines" is {\'x\': 1}, expected a list of lanes'),
    ('{"Lines": [[{"x": "1", "y": "2"}], "abc"]}', "lane 1 is 'abc', expected a list of"),
    ('{"Lines": [[], [], [{"x": "1", "y": "2"}, {"x": "1", "y": "2"}, {"x": "1", "y": "2"}, {"x": "1", "y": "2"},'
     ' {"x": "1", "y": "2"}, {"x": "abc", "y": "2"}]]}', "lane 2 point 5: x 'abc' is not a number"),
    ('{"Lines": [[{"x": "1"}]]}', "lane 0 point 0: {'x': '1'}, expected"),
    ('{"Lines": [[{"x": "1", "y": "nan"}]]}', "lane 0 point 0: y 'nan' is not a finite number"),
    ('{"Lines": [[{"x": [1], "y": 2}]]}', "lane 0 point 0: x [1] is not a number"),
    ('{"Lines": [{"points": []}]}', "lane 0 is an object with keys ['points']"),
])
def test_malformed_json_raises_a_one_line_error_naming_the_file(tmp_path, content, message):
    path = write(tmp_path / "sub" / "x.lines.json", content)
    with pytest.raises(DataFormatError) as info:
        read_lines_json(path)
    text = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in text
    assert text.startswith(f"{path}: ") and message in text


def test_read_lines_txt(tmp_path):
    lanes = read_lines_txt(write(tmp_path / "a.lines.txt", "1 2 3.5 4\n\n-1e1 5 6 7 8 9\n"))
    assert [lane.tolist() for lane in lanes] == [[[1, 2], [3.5, 4]], [], [[-10, 5], [6, 7], [8, 9]]]
    with pytest.raises(DataFormatError, match=r"b\.lines\.txt: line 2: value 'x' is not a number"):
        read_lines_txt(write(tmp_path / "b.lines.txt", "1 2\n3 x\n"))
    with pytest.raises(DataFormatError, match=r"c\.lines\.txt: line 1: 3 values, expected x y pairs"):
        read_lines_txt(write(tmp_path / "c.lines.txt", "1 2 3\n"))


def test_label_and_prediction_paths(tmp_path):
    assert label_path("R", "valid/images/ab.jpg") == os.path.join("R", "valid/labels/ab.lines.json")
    with pytest.raises(ValueError, match="no 'images' folder"):
        label_path("R", "valid/ab.jpg")
    assert prediction_file(tmp_path, "valid/images/ab.jpg") is None
    write(tmp_path / "valid/images/ab.lines.txt", "1 2 3 4\n")
    assert [p.tolist() for p in prediction_file(tmp_path, "valid/images/ab.jpg")] == [[[1, 2], [3, 4]]]
    write(tmp_path / "valid/images/ab.lines.json", '{"Lines": []}')
    with pytest.raises(DataFormatError, match="both"):
        prediction_file(tmp_path, "valid/images/ab.jpg")


def lines_json(lanes):
    return json.dumps({"Lines": [[{"x": str(x), "y": str(y)} for x, y in lane] for lane in lanes]})


def test_files_round_trip(tmp_path):
    root, pred = tmp_path / "root", tmp_path / "pred"
    a = [[(400.0, 1439.0), (700.0, 1000.0), (900.0, 700.0)], [(2000.0, 1439.0), (1700.0, 800.0)],
         [(1280.0, 1400.0), (1290.0, 700.0)]]
    b = [[(100.0, 659.0), (500.0, 300.0)], [(1400.0, 659.0), (1100.0, 300.0)]]
    c = [[(600.0, 719.0), (640.0, 400.0)], [(100.0, 100.0)]]
    sizes = {"valid/images/a.jpg": (2560, 1440), "valid/images/b.jpg": (1570, 660), "valid/images/c.jpg": (1280, 720)}
    for name, lanes in zip(sizes, (a, b, c)):
        write(root / label_path("", name), lines_json(lanes))
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        width, height = sizes[name]
        assert cv2.imwrite(str(root / name), np.zeros((height, width), np.uint8))
    # a: three found (one shifted by 4 px, one with score 0.1), one false lane (score 0.3);
    # b: one found, one far off; c: no file (its 1-point lane counts).
    write(pred / "valid/images/a.lines.json", json.dumps({"Lines": [
        {"score": 0.9, "points": [{"x": x + 4, "y": y} for x, y in a[0]]},
        [{"x": str(x), "y": str(y)} for x, y in a[1]],
        {"score": 0.3, "points": [{"x": 10, "y": 10}, {"x": 2000, "y": 20}]},
        {"score": 0.1, "points": [{"x": x, "y": y} for x, y in a[2]]}]}))
    write(pred / "valid/images/b.lines.txt", "100 659 500 300\n1000 659 700 300\n")
    list_file = write(root / "valid" / "valid.txt", "".join(f"{name}\n" for name in sizes))
    records = scoring_records(str(root), str(list_file))
    assert [r.img_size for r in records] == [(h, w) for w, h in sizes.values()]
    with pytest.warns(UserWarning, match="1 of 3 prediction files are missing"):
        result = f1_evaluator(records)(read_predictions(records, str(pred)))
    eps = np.finfo(float).eps
    p, r = 4 / (6 + eps), 4 / (7 + eps)
    f1 = 2 * p * r / (p + r + eps)
    assert result == {"tp": 4, "fp": 2, "fn": 3, "precision": p, "recall": r, "f1": f1, "metric": f1, "num_images": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        thresholded = f1_evaluator(records)(read_predictions(records, str(pred), score_threshold=0.5))
    assert (thresholded["tp"], thresholded["fp"], thresholded["fn"]) == (3, 1, 4)
    assert cv2.imwrite(str(root / "valid/images/zz.jpg"), np.zeros((720, 1280), np.uint8))
    write(list_file, "valid/images/a.jpg\nvalid/images/zz.jpg\n")
    with pytest.raises(DataFormatError, match=r"valid\.txt:2: label not found: .*zz\.lines\.json"):
        scoring_records(str(root), str(list_file))
