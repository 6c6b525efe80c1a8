"""Lane targets (spec 3-4): hand-computed cases, round trips and the release's fidelity vectors."""
import json
import math
import os

import numpy as np
import pytest

from srlane.config import Config
from srlane.data.targets import INVALID, LaneTargetEncoder, encode_lanes, prepare_lanes

FIDELITY = os.path.join(os.path.dirname(__file__), "fixtures", "data", "fidelity")
W, H = 800, 320
STRIP = H / 71


def encoder(dtype=np.float32, max_lanes=4):
    return LaneTargetEncoder(W, H, 72, max_lanes, strides=(8, 16, 32), dtype=dtype)


def line(x0, y0, x1, y1, n=30):
    t = np.linspace(0, 1, n)
    return np.stack([x0 + t * (x1 - x0), y0 + t * (y1 - y0)], 1)


@pytest.mark.parametrize("image", [0, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_equals_release_fidelity_vectors(image, dtype):
    with open(os.path.join(FIDELITY, "target_lanes.json")) as f:
        lanes = [lane["points"] for lane in json.load(f)["images"][image]]
    out = encoder(dtype)(lanes)
    ref = np.load(os.path.join(FIDELITY, f"gt_lane_{image}.npy"))
    assert out["gt_lane"].dtype == np.float32
    np.testing.assert_array_equal(out["gt_lane"], ref)
    for level in range(3):
        for key in ("angle", "seg"):
            expected = np.load(os.path.join(FIDELITY, f"gt_{key}_{image}_{level}.npy")).astype(dtype)
            got = out[f"gt_{key}"][level]
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, expected)


def test_vertical_lane_angle_and_cells():
    out = encoder(np.float64)([line(100.0, 320.0, 100.0, 0.0)])
    for level, stride in enumerate((8, 16, 32)):
        angle = out["gt_angle"][level]
        rows, cols = np.nonzero(angle)
        assert set(cols) == {int(100 / stride)}
        assert sorted(rows) == list(range(H // stride))   # rows 320-8i for i >= 1 -> cells 39..0
        np.testing.assert_allclose(angle[rows, cols], math.atan(1e6 * stride / stride) / math.pi)
        np.testing.assert_allclose(angle[rows, cols], 0.5, atol=1e-6)
        np.testing.assert_array_equal(out["gt_seg"][level], angle > 0)


def test_45_degree_lanes_angles():
    right = encoder(np.float64)([line(100.0, 320.0, 300.0, 120.0)])   # x grows upwards: 0.25
    left = encoder(np.float64)([line(500.0, 320.0, 300.0, 120.0)])    # x shrinks upwards: 0.75
    for level in range(3):
        np.testing.assert_allclose(right["gt_angle"][level][right["gt_angle"][level] > 0], 0.25, atol=1e-6)
        np.testing.assert_allclose(left["gt_angle"][level][left["gt_angle"][level] > 0], 0.75, atol=1e-6)
    # stride 32: rows y = 288..128 -> x = 132..292 -> cells (9,4),(8,5),(7,6),(6,7),(5,8),(4,9)
    rows, cols = np.nonzero(right["gt_angle"][2])
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(4, 9), (5, 8), (6, 7), (7, 6), (8, 5), (9, 4)]


def test_lane_row_layout_start_length_and_padding():
    # 45-degree lane entering from the left border, top at y = 160: rows j = 0..35,
    # x_j = -20 + j * STRIP < 0 for j <= 4 -> start 5, length 31.
    rows = encoder()([line(-20.0, 320.0, 140.0, 160.0)])["gt_lane"]
    assert rows.shape == (4, 76) and rows.dtype == np.float32
    np.testing.assert_array_equal(rows[0, :4], [0, 1, 5, 31])
    np.testing.assert_allclose(rows[0, 4:40], -20 + np.arange(36) * STRIP, atol=1e-3)
    assert np.all(rows[0, 40:] == INVALID)
    for pad in rows[1:]:
        assert pad[0] == 1 and pad[1] == 0 and np.all(pad[2:] == INVALID)


def test_short_lane_is_extrapolated_down_and_lanes_keep_their_rows():
    lanes = [
        line(400.0, 200.0, 400.0, 100.0, n=11),     # starts above the bottom: extended down
        line(-300.0, 320.0, -200.0, 100.0),         # entirely outside: no row, stays padding
        line(600.0, 320.0, 650.0, 200.0),
    ]
    rows = encoder()(lanes)["gt_lane"]
    n = int(np.floor((320 - 100) / STRIP)) + 1      # rows from y=320 up to y=100
    np.testing.assert_array_equal(rows[0, :4], [0, 1, 0, n])
    np.testing.assert_allclose(rows[0, 4:4 + n], 400.0, atol=1e-4)
    assert rows[1, 0] == 1 and rows[1, 1] == 0
    assert rows[2, 1] == 1


def test_decoding_rows_reproduces_curved_lane():
    ys = np.linspace(318, 40, 60)
    xs = 420 + 120 * np.sin((318 - ys) / 90.0)
    rows = encoder()([np.stack([xs, ys], 1)])["gt_lane"]
    n = int(rows[0, 2] + rows[0, 3])
    sample_ys = H - np.arange(n) * STRIP
    inside = (sample_ys <= 318) & (sample_ys >= 40)
    truth = 420 + 120 * np.sin((318 - sample_ys) / 90.0)
    assert inside.sum() > 55
    assert np.max(np.abs(rows[0, 4:4 + n][inside] - truth[inside])) < 0.5


def test_prepare_drops_short_horizontal_and_repeated_rows():
    lanes = [
        [[1.0, 2.0]],                                   # one point
        [[0.0, 100.0], [200.0, 110.0]],                 # below 5 degrees
        [[10.0, 50.0], [12.0, 50.0], [20.0, 80.0]],     # repeated y: first kept
    ]
    (kept,) = prepare_lanes(lanes)
    np.testing.assert_array_equal(kept, [[20, 80], [10, 50]])


def test_more_lanes_than_rows_fill_angle_maps_with_all_lanes():
    lanes = [line(103.0 + 150 * i, 320.0, 103.0 + 150 * i, 0.0) for i in range(5)]
    out = encoder(max_lanes=4)(lanes)
    assert np.all(out["gt_lane"][:, 1] == 1)
    cols = set(np.nonzero(out["gt_angle"][0])[1].tolist())
    assert cols == {int((103 + 150 * i) / 8) for i in range(5)}


def test_non_finite_points_raise_value_error():
    with pytest.raises(ValueError, match="non-finite"):
        encoder()([[[1.0, 2.0], [np.nan, 5.0]]])


def test_encode_lanes_reads_geometry_from_config():
    cfg = Config(img_w=W, img_h=H, num_points=72, max_lanes=2, model=dict(sketch_head=dict(feat_ds_strides=[8, 16, 32])))
    out = encode_lanes([line(100.0, 320.0, 100.0, 0.0)], cfg)
    assert out["gt_lane"].shape == (2, 76)
    assert [m.shape for m in out["gt_angle"]] == [(40, 100), (20, 50), (10, 25)]
    assert all(m.dtype == np.float32 for m in out["gt_angle"] + out["gt_seg"])


def test_sixteen_lane_slots_hold_ten_lanes_each_in_its_own_row():
    """CurveLanes: up to 16 lanes. Ten vertical lanes fill rows 0-9 (sorted by their bottom x,
    as the release orders them), each row decodes back to its lane; rows 10-15 are padding."""
    xs = [40.0 + 75.0 * k for k in range(10)]
    lanes = [line(x, 319.0, x, 20.0) for x in reversed(xs)]
    rows = encoder(max_lanes=16)(lanes)["gt_lane"]
    assert rows.shape == (16, 76)
    assert (rows[:10, 1] == 1).all() and (rows[10:, 1] == 0).all() and (rows[10:, 0] == 1).all()
    bottoms = sorted(rows[i, 4] for i in range(10))
    np.testing.assert_allclose(bottoms, xs, atol=1e-3)
    for i in range(10):
        n = int(rows[i, 2] + rows[i, 3])
        assert n > 60 and np.allclose(rows[i, 4:4 + n], rows[i, 4], atol=1e-3)


def angle_maps_by_the_spec(lanes, stride, dtype=np.float64):
    """Spec section 4 sample by sample: later samples (and lanes) overwrite a cell."""
    h, w = H // stride, W // stride
    angle, seg = np.zeros((h, w)), np.zeros((h, w))
    prepared = [pts * np.array([W, H], float) / np.array([W, H], float) for pts in prepare_lanes(lanes)]
    from srlane.data.targets import sample_lane
    ys = np.arange(H, -1, -stride)
    for pts in prepared:
        (xs,) = sample_lane(pts, [ys])
        if xs is None:
            continue
        for i in range(1, len(xs)):
            x, y = xs[i] / stride, ys[i] / stride
            if 0 <= int(x) < w and 0 <= int(y) < h:  # int truncates: x in (-1, 0) is column 0
                theta = math.atan(1 / (xs[i] / stride - xs[i - 1] / stride + 1e-6)) / math.pi
                angle[int(y), int(x)] = theta if theta > 0 else 1 - abs(theta)
                seg[int(y), int(x)] = 1.0
    return angle.astype(dtype), seg.astype(dtype)


def test_angle_maps_equal_a_sample_by_sample_loop_on_crossing_lanes():
    """Random lanes that cross each other, leave the image and share cells: the vectorised maps
    equal the spec's loop bit for bit."""
    rng = np.random.default_rng(7)
    for _ in range(30):
        lanes = []
        for _ in range(rng.integers(1, 7)):
            ys = np.sort(rng.uniform(0, H, rng.integers(3, 25)))[::-1]
            lanes.append(np.stack([rng.uniform(-200, W + 200) + rng.uniform(-2, 2) * (H - ys), ys], 1))
        out = encoder(np.float64, max_lanes=8)(lanes)
        for level, stride in enumerate((8, 16, 32)):
            angle, seg = angle_maps_by_the_spec(lanes, stride)
            assert np.array_equal(out["gt_angle"][level], angle) and np.array_equal(out["gt_seg"][level], seg)


def test_categories_follow_their_lanes_into_the_rows():
    # a too-short lane (dropped), a horizontal one (dropped), then three lanes: the rows hold the
    # kept lanes in order, each with its own head class; a lane that leaves the image at once
    # (a row without 2 points inside) and the empty rows are IGNORE_INDEX
    lanes = [[[5.0, 300.0]], line(0.0, 200.0, 700.0, 190.0), line(100.0, 320.0, 100.0, 0.0),
             line(-400.0, 320.0, -300.0, 0.0), line(500.0, 320.0, 450.0, 40.0)]
    categories = [7, 8, 21, 5, 0]
    enc = LaneTargetEncoder(W, H, 72, 4, strides=(8, 16, 32), num_categories=14)
    out = enc(lanes, categories)
    assert out["gt_category"].dtype == np.int64
    # row 0: lane 2 (category 21, head class 13); row 1: lane 3, outside the image (-1); row 2:
    # lane 4, kind unknown (-1); row 3 empty (-1)
    assert out["gt_category"].tolist() == [13, -1, -1, -1]
    assert out["gt_lane"][:, 1].tolist() == [1, 0, 1, 0]
    # a head of 5 classes lacks class 13: ignored; without categories all are ignored
    small = LaneTargetEncoder(W, H, 72, 4, strides=(8, 16, 32), num_categories=5)
    assert small(lanes, [0, 0, 5, 0, 1])["gt_category"].tolist() == [4, -1, 0, -1]
    assert enc(lanes)["gt_category"].tolist() == [-1, -1, -1, -1]
    assert "gt_category" not in encoder()(lanes, categories)
    with pytest.raises(ValueError, match="2 lane categories for 5 lanes"):
        enc(lanes, [1, 2])
