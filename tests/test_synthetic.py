"""Synthetic road set: determinism, the CULane, TuSimple and CurveLanes round trips through the
real readers, category lists, annotation geometry, the completion marker, what makes the
CurveLanes variant CurveLanes-like (three image sizes, sharper curves, more lanes), the lane
categories (what was drawn, written and read back; the OpenLane layout with its curbs) and the
older formats' scenes unchanged by them."""
import hashlib
import json
import os
from collections import Counter

import cv2
import numpy as np
import pytest

from srlane import synthetic
from srlane.benchmarks.culane import CATEGORIES, load_culane
from srlane.benchmarks.curvelanes import SPLITS as CURVELANES_SPLITS
from srlane.benchmarks.curvelanes import load_curvelanes
from srlane.benchmarks.tusimple import load_tusimple
from srlane.lane_kinds import LANE_KINDS, LEFT_CURB, RIGHT_CURB, category_of_paint
from srlane.synthetic import export, scene
from srlane.synthetic.render import _STRIPS, _line_segments

CURVELANES_SIZES = {(1440, 2560), (660, 1570), (720, 1280)}
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
# the strips (left to right) of each OpenLane pattern, from its names: 5 white-ldash-rsolid ...
PATTERN_STRIPS = {"solid": ("solid",), "dashed": ("dashed",), "double-solid": ("solid", "solid"),
                  "double-dashed": ("dashed", "dashed"), "left-dashed": ("dashed", "solid"),
                  "left-solid": ("solid", "dashed")}


def tree_digest(root) -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def bend(lane: np.ndarray) -> float:
    """Largest distance (pixels) of a lane from the chord through its end points."""
    (x0, y0), (x1, y1) = lane[0], lane[-1]
    return float(np.abs(lane[:, 0] - (x0 + (lane[:, 1] - y0) * (x1 - x0) / (y1 - y0))).max())


@pytest.fixture(scope="module")
def culane_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_culane")
    summary = synthetic.generate(root, fmt="culane", n_train=4, n_test=20, seed=3, progress=False)
    return root, summary


@pytest.fixture(scope="module")
def curvelanes_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_curvelanes")
    summary = synthetic.generate(root, fmt="curvelanes", n_train=6, n_test=3, seed=2, progress=False)
    return root, summary


def test_same_seed_same_bytes_in_any_worker_count(tmp_path):
    synthetic.generate(tmp_path / "a", "culane", n_train=3, n_test=2, seed=7, progress=False)
    synthetic.generate(tmp_path / "b", "culane", n_train=3, n_test=2, seed=7, progress=False, workers=2)
    synthetic.generate(tmp_path / "c", "culane", n_train=3, n_test=2, seed=8, progress=False)
    a, b, c = (tree_digest(tmp_path / name) for name in "abc")
    # jpg, lines.txt, lines.categories.txt per image, 5 lists, 9 categories, marker
    assert len(a) == 3 * (3 + 2) + 5 + 9 + 1
    assert a == b
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith(".jpg")]
    assert len(images) == 5 and all(a[k] != c[k] for k in images)
    assert a[".complete"] != c[".complete"]


def test_culane_round_trip_through_the_reader(culane_set, tmp_path):
    root, summary = culane_set
    assert summary["categories"]["test"].keys() == set(CATEGORIES)
    test = load_culane(str(root), "test", cache_dir=str(tmp_path))
    train = load_culane(str(root), "train", cache_dir=str(tmp_path))
    val = load_culane(str(root), "val", cache_dir=str(tmp_path))
    assert [r.img_name for r in val] == [r.img_name for r in test]
    assert [r.img_name for r in test] == [export.culane_name("test", i) for i in range(20)]
    assert Counter(r.category for r in test) == Counter(scene.CATEGORY_BLOCK)
    for split, records in (("train", train), ("test", test)):
        for index, record in enumerate(records):
            _, label = synthetic.render("culane", 3, split, index)
            assert record.img_name == export.culane_name(split, index)
            assert len(record.lanes) == len(label.lanes)
            for read, written in zip(record.lanes, label.lanes):
                np.testing.assert_allclose(read, written, atol=1e-3)
            assert record.lane_categories == tuple(label.categories)  # through the .lines.categories.txt sidecar
            if split == "test":
                assert record.category == label.category
            else:
                assert record.lane_exist == tuple(int(s in label.slots) for s in range(4))
                assert sum(record.lane_exist) == len(record.lanes)
            if label.category == "cross":
                assert record.lanes == []
            else:
                assert 2 <= len(record.lanes) <= 4


def test_list_files_and_categories(culane_set):
    root, _ = culane_set
    for rel in ("list/train_gt.txt", "list/train.txt", "list/val.txt", "list/val_gt.txt", "list/test.txt"):
        lines = (root / rel).read_text().splitlines()
        assert lines and all(line.startswith("/") for line in lines)
    gt = (root / "list/train_gt.txt").read_text().splitlines()[0].split()
    assert gt[1] == "/laneseg_label_w16/" + gt[0][1:-len(".jpg")] + ".png" and len(gt) == 6
    seen = []
    for i, category in enumerate(CATEGORIES):
        names = (root / f"list/test_split/test{i}_{category}.txt").read_text().split()
        assert names, category
        seen += names
        for name in names:
            lanes = (root / (name[1:-len(".jpg")] + ".lines.txt")).read_text()
            assert (lanes == "") == (category == "cross")
    assert sorted(seen) == sorted((root / "list/test.txt").read_text().split())


def test_annotation_geometry(culane_set, tmp_path):
    root, _ = culane_set
    for record in load_culane(str(root), "test", cache_dir=str(tmp_path)):
        for lane in record.lanes:
            x, y = lane[:, 0], lane[:, 1]
            assert np.all((x >= 0) & (x <= 1639) & (y >= 0) & (y <= 589))
            assert np.all(np.diff(y) == -10) and (589 - y[0]) % 10 == 0
            assert len(lane) >= 6
        if len(record.lanes) > 1:  # left to right: ordered by x at a shared row
            rows = [dict(zip(lane[:, 1].tolist(), lane[:, 0].tolist())) for lane in record.lanes]
            for a, b in zip(rows, rows[1:]):
                common = sorted(set(a) & set(b))
                assert common and a[common[0]] < b[common[0]]


def test_categories_mean_what_they_say():
    labels = {}
    means = {}
    for index in range(40):
        image, label = synthetic.render("culane", 0, "test", index)
        labels.setdefault(label.category, []).append(label)
        means.setdefault(label.category, []).append(image.mean())

    def max_bend(label):
        return max(bend(lane) for lane in label.lanes)

    assert min(max_bend(label) for label in labels["curve"]) > 120
    assert np.median([max_bend(label) for label in labels["normal"]]) < 60
    assert all(label.lanes == [] for label in labels["cross"])
    assert max(means["night"]) < 0.5 * min(means["normal"])
    assert min(means["hlight"]) > np.median(means["normal"])


def test_worn_paint_keeps_at_least_40_percent_of_dashes():
    rng = np.random.default_rng(0)
    trace = scene.Trace(points=np.zeros((6, 2)), s_lo=0.0, s_hi=120.0)
    for keep in (0.45, 0.6, 1.0):
        line = scene.Line(offset=1.7, slot=2, yellow=False, width=0.15, style="dashed", dash=4.0, gap=6.0,
                          phase=0.0, paint=0.6, keep=keep, top_margin=10.0)
        segments = _line_segments(line, trace, rng, "dashed")
        assert len(segments) == int(np.ceil(keep * 12))
        assert all(0 <= a < b <= 120 and b - a <= 4.0 for a, b in segments)


def test_straight_road_annotation_is_the_projected_centre_line():
    road = scene.Road(heading=0.0, curvature=0.0, curvature_rate=0.0)
    np.testing.assert_allclose(road.x, 0.0, atol=1e-12)
    np.testing.assert_allclose(road.z, road.s, atol=1e-9)
    cam = scene.Camera(f=1000.0, cx=820.0, horizon=280.0, height=1.5, x=0.3, near=2.0)
    trace = scene.trace_line(road, cam, scene.CULANE, offset=1.8, v_top=300.0)
    rows = 589.0 - 10 * np.arange(29)  # 589 ... 309, the rows at or below v_top = 300
    np.testing.assert_array_equal(trace.points[:, 1], rows)
    # ground x = 1.8 at depth z = f h / (v - horizon): u = cx + f (1.8 - 0.3) / z
    np.testing.assert_allclose(trace.points[:, 0], np.round(820.0 + 1.5 * (rows - 280.0) / 1.5, 3), atol=1e-6)


def test_a_road_that_loops_back_is_traced_where_it_is_drawn():
    """The road model runs 400 m; on a sharp curve it turns past 90 degrees and comes back towards
    the camera, and only the stretch before that is drawn and annotated."""
    road = scene.Road(heading=0.0, curvature=0.035, curvature_rate=0.0)
    assert road.end < len(road.s) and np.any(np.diff(road.z) < 0)
    cam = scene.Camera(f=1400.0, cx=1280.0, horizon=630.0, height=1.5, x=0.0, near=2.5)
    trace = scene.trace_line(road, cam, scene.CURVELANES[0], offset=-1.8, v_top=650.0)
    assert trace is not None and trace.points[0, 1] == 1439 and trace.s_lo < 3.0


def test_tusimple_round_trip_through_the_reader(tmp_path):
    root = tmp_path / "tusimple"
    synthetic.generate(root, fmt="tusimple", n_train=7, n_test=3, seed=1, progress=False)
    for name in ("label_data_0313.json", "label_data_0531.json", "label_data_0601.json", "test_label.json"):
        assert (root / name).read_text().strip(), name
    for split, count in (("trainval", 7), ("train", 6), ("val", 1), ("test", 3)):
        assert len(load_tusimple(str(root), split, cache_dir=str(tmp_path / "cache"))) == count
    records = load_tusimple(str(root), "test", cache_dir=str(tmp_path / "cache"))
    for index, record in enumerate(records):
        _, label = synthetic.render("tusimple", 1, "test", index)
        assert record.h_samples == tuple(range(160, 720, 10))
        assert len(record.lanes) == len(label.lanes) <= 5
        for read, written in zip(record.lanes, label.lanes):
            np.testing.assert_array_equal(read[::-1], written)  # the reader keeps h_samples order (top down)
            assert np.all((read[:, 0] >= 0) & (read[:, 0] <= 1279)) and np.all(np.diff(read[:, 1]) == 10)


def test_curvelanes_round_trip_through_the_reader(curvelanes_set, tmp_path):
    root, summary = curvelanes_set
    assert (summary["train"], summary["test"], summary["format"]) == (6, 3, "curvelanes")
    assert set(export.CURVELANES_FOLDERS.values()) <= set(CURVELANES_SPLITS)
    for split, folder, count in (("train", "train", 6), ("test", "valid", 3)):
        records = load_curvelanes(str(root), folder, cache_dir=str(tmp_path))
        assert [r.img_name for r in records] == [export.curvelanes_name(split, i) for i in range(count)]
        assert (root / folder / f"{folder}.txt").read_text() == "".join(f"{folder}/images/{i:06d}.jpg\n"
                                                                         for i in range(count))
        assert {r.img_size for r in records} == CURVELANES_SIZES  # every block of 3 holds each size
        for index, record in enumerate(records):
            image, label = synthetic.render("curvelanes", 2, split, index)
            assert record.img_size == image.shape[:2]
            assert len(record.lanes) == len(label.lanes)
            for read, written in zip(record.lanes, label.lanes):
                np.testing.assert_allclose(read, written, atol=1e-3)
            height, width = record.img_size
            step = 20 if height == 1440 else 10
            for lane in record.lanes:
                x, y = lane[:, 0], lane[:, 1]
                assert np.all((x >= 0) & (x <= width - 1)) and y[0] <= height - 1 and len(lane) >= 6
                assert np.all(np.diff(y) == -step) and (height - 1 - y[0]) % step == 0
    files = sorted(tree_digest(root))
    assert len(files) == 2 * 9 + 2 + 1  # jpg + lines.json per image, 2 lists, marker
    label = json.loads((root / "train" / "labels" / "000000.lines.json").read_text())
    points = [point for lane in label["Lines"] for point in lane]
    assert points and all(isinstance(point["x"], str) and isinstance(point["y"], str) for point in points)


def test_curvelanes_same_bytes_in_any_worker_count(tmp_path):
    synthetic.generate(tmp_path / "a", "curvelanes", n_train=3, n_test=1, seed=4, progress=False)
    synthetic.generate(tmp_path / "b", "curvelanes", n_train=3, n_test=1, seed=4, progress=False, workers=2)
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert a == b and len(a) == 2 * 4 + 2 + 1
    assert synthetic.is_complete(tmp_path / "b", "curvelanes", 3, 1, 4)
    assert not synthetic.is_complete(tmp_path / "b", "culane", 3, 1, 4)


def test_curvelanes_curves_are_sharper_and_roads_wider_than_culane():
    """Per scene, the largest bend of a lane (distance from its chord) as a fraction of the image
    width; measured medians over these 40 scenes: 0.017 (CULane), 0.081 (CurveLanes), a ratio of
    4.8 (4.0 to 4.9 for seeds 0 to 3). The labels come from the scene alone, no drawing needed."""
    medians, counts = {}, {}
    for fmt in ("culane", "curvelanes"):
        bends, counts[fmt] = [], []
        for index in range(40):
            sampled, _ = scene.sample(fmt, 0, "test", index)
            label = sampled.label()
            counts[fmt].append(len(label.lanes))
            if label.lanes:
                bends.append(max(bend(lane) for lane in label.lanes) / sampled.layout.width)
        medians[fmt] = np.median(bends)
    assert medians["curvelanes"] > 3 * medians["culane"] and medians["curvelanes"] > 0.05
    assert max(counts["culane"]) <= 4 and max(counts["curvelanes"]) <= 8
    assert sum(count > 4 for count in counts["curvelanes"]) >= 8  # 17 of 40 measured


def test_marker_detects_interrupted_and_different_runs(tmp_path, monkeypatch):
    root = tmp_path / "set"
    synthetic.generate(root, "culane", n_train=1, n_test=1, seed=0, progress=False)
    assert synthetic.is_complete(root, "culane", 1, 1, 0)
    assert not synthetic.is_complete(root, "culane", 2, 1, 0)
    assert not synthetic.is_complete(root, "tusimple", 1, 1, 0)
    assert not synthetic.is_complete(tmp_path / "missing", "culane", 1, 1, 0)

    def broken(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "_write_scene", broken)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate(root, "culane", n_train=1, n_test=1, seed=0, progress=False)
    assert not synthetic.is_complete(root, "culane", 1, 1, 0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="format 'llamas'"):
        synthetic.generate("unused", fmt="llamas", n_train=1, n_test=1)
    with pytest.raises(ValueError, match="n_test"):
        synthetic.generate("unused", fmt="culane", n_train=1, n_test=-1)
    with pytest.raises(ValueError, match="split 'valid'"):
        synthetic.render("curvelanes", 0, "valid", 0)


def test_older_formats_draw_the_same_scenes_as_before_lane_categories():
    """A few scenes of each older format are the ones the code of a2b52bf drew, before lanes had
    categories (tests/fixtures/synthetic_scenes.json: layout category, slots, lanes to 3 decimals,
    a 24x12 thumbnail): the kinds cost no random draw, so the quickstart's set is unchanged. The
    margins absorb what another CPU kind's float paths move (a lane by far under 0.01 px, a
    thumbnail pixel by a level or two); one random draw more would give another scene."""
    with open(os.path.join(FIXTURES, "synthetic_scenes.json")) as f:
        expected = json.load(f)
    for key, scene in expected.items():
        fmt, seed, split, index = key.split("/")
        image, label = synthetic.render(fmt, int(seed), split, int(index))
        assert (label.category, label.slots) == (scene["category"], scene["slots"]), key
        assert len(label.lanes) == len(scene["lanes"]), key
        for lane, want in zip(label.lanes, scene["lanes"]):
            np.testing.assert_allclose(lane, want, atol=0.01, err_msg=key)
        thumbnail = cv2.resize(image, (24, 12), interpolation=cv2.INTER_AREA).astype(int)
        assert np.abs(thumbnail - np.array(scene["thumbnail"])).max() <= 3, key


def test_category_of_paint_is_openlanes_numbering():
    expected = {(False, "dashed"): 1, (False, "solid"): 2, (False, "double-dashed"): 3, (False, "double"): 4,
                (False, "left-dashed"): 5, (False, "left-solid"): 6, (True, "dashed"): 7, (True, "solid"): 8,
                (True, "double-dashed"): 9, (True, "double"): 10, (True, "left-dashed"): 11, (True, "left-solid"): 12}
    assert {paint: category_of_paint(*paint) for paint in expected} == expected
    with pytest.raises(ValueError, match="no lane category for a white 'wavy' line"):
        category_of_paint(False, "wavy")


def test_labels_give_the_kind_of_each_line_drawn_and_openlane_adds_curbs():
    """On the sampled scenes' Line objects: each label category is its line's colour and pattern;
    culane keeps its own few kinds; openlane draws every one, and its road edges as curbs (left
    curb first, right curb last), each traced like a line."""
    seen = {}
    for fmt in ("culane", "openlane"):
        seen[fmt] = Counter()
        for index in range(40):
            sc, _ = scene.sample(fmt, 0, "train", index)
            label = sc.label()
            lines = [category_of_paint(line.yellow, line.style) for line, _ in sc.traces]
            curbs = dict(sc.curbs)
            assert label.categories == [LEFT_CURB] * (LEFT_CURB in curbs) + lines + [RIGHT_CURB] * (RIGHT_CURB in curbs)
            assert len(label.categories) == len(label.lanes) == len(label.slots)
            for (line, _), category in zip(sc.traces, lines):
                kind = LANE_KINDS[category]
                assert kind.colour == ("yellow" if line.yellow else "white")
                assert _STRIPS[line.style] == PATTERN_STRIPS[kind.pattern]  # the strips painted are the kind's
            for category, trace in sc.curbs:
                edge = sc.road_left if category == LEFT_CURB else sc.road_right
                np.testing.assert_array_equal(label.lanes[0 if category == LEFT_CURB else -1], trace.points)
                whole = scene.trace_line(sc.road, sc.cam, sc.layout, edge, sc.cam.horizon)
                np.testing.assert_array_equal(trace.points, whole.points[:len(trace.points)])
            seen[fmt].update(label.categories)
    assert set(seen["culane"]) <= {1, 2, 7, 8, 10}
    assert {1, 2, 3, 4, 7, 8, 9, 10, LEFT_CURB, RIGHT_CURB} <= set(seen["openlane"])


def test_rendered_paint_is_the_labelled_kind():
    """On the pixels of openlane scenes: a single yellow line is yellow (red well above blue), a
    white one is not; a solid line is paint at every lower annotation point, a dashed one is not."""
    checked = Counter()
    for index in range(22):
        sc, _ = scene.sample("openlane", 0, "train", index)
        if sc.category != "normal":
            continue
        image, label = synthetic.render("openlane", 0, "train", index)
        image = image.astype(np.float64)
        line_categories = [c for c in label.categories if c not in (LEFT_CURB, RIGHT_CURB)]
        for (line, trace), category in zip(sc.traces, line_categories, strict=True):
            if line.style not in ("solid", "dashed"):
                continue
            points = trace.points[:max(3, len(trace.points) // 2)]
            x, y = np.clip(np.round(points[:, 0]).astype(int), 0, 1919), points[:, 1].astype(int)
            pixels = image[y, x]
            on_paint = pixels.mean(axis=1) > np.median(image[y].mean(axis=2), axis=1) + 25
            painted = on_paint.mean()
            red_over_blue = (pixels[on_paint, 2] - pixels[on_paint, 0]).mean() if on_paint.any() else 0.0
            kind = LANE_KINDS[category]
            if not on_paint.any():  # every sampled point in a gap of a dashed line
                assert kind.pattern == "dashed", (index, category)
                continue
            assert (red_over_blue > 40) == (kind.colour == "yellow"), (index, category)
            assert painted >= 0.99 if kind.pattern == "solid" else painted < 0.95, (index, category)
            checked[kind.name] += 1
    assert {"white-solid", "white-dash", "yellow-dash"} <= set(checked)


def test_openlane_layout_round_trip(tmp_path):
    root = tmp_path / "openlane"
    summary = synthetic.generate(root, fmt="openlane", n_train=2, n_test=1, seed=4, progress=False)
    assert (root / "lists" / "training.txt").read_text().splitlines() == [
        export.openlane_name("train", i) + ".jpg" for i in range(2)]
    assert len((root / "lists" / "validation.txt").read_text().splitlines()) == 1
    counted = Counter()
    for split, n in (("train", 2), ("test", 1)):
        for index in range(n):
            _, label = synthetic.render("openlane", 4, split, index)
            name = export.openlane_name(split, index)
            assert name.startswith(export.OPENLANE_SPLITS[split] + "/segment-synth-0000/")
            assert cv2.imread(str(root / "images" / f"{name}.jpg")).shape == (1280, 1920, 3)
            with open(root / "lane3d_1000" / f"{name}.json") as f:
                frame = json.load(f)
            assert frame["file_path"] == name + ".jpg"
            lanes = frame["lane_lines"]
            assert [lane["category"] for lane in lanes] == label.categories
            assert [lane["attribute"] for lane in lanes] == [s + 1 if 0 <= s <= 3 else 0 for s in label.slots]
            for lane, written in zip(lanes, label.lanes):
                np.testing.assert_allclose(np.array(lane["uv"]).T, written)
            counted[split] += len(lanes)
    assert summary["lanes"] == sum(counted.values())
    assert sum(summary["lane_categories"]["train"].values()) == counted["train"]
