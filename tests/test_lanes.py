"""Lane: spline sampling, its pixel points on image rows and the CULane / TuSimple sampling of the
release."""
import json
from pathlib import Path

import numpy as np
import pytest

from srlane.lanes import Lane, culane_lines, lanes_pixel_points, printed

FIDELITY = Path(__file__).parent / "fixtures" / "fidelity"


def test_straight_lane_sampling():
    # x = 0.2 + 0.5 * y, from y = 0.5 to y = 1.0 (top first)
    ys = np.linspace(0.5, 1.0, 6)
    lane = Lane(np.stack([0.2 + 0.5 * ys, ys], axis=1))
    np.testing.assert_allclose(lane(np.array([0.6, 0.75])), [0.5, 0.575])
    out = lane(np.array([0.4, 0.489, 0.495, 1.009, 1.02]))
    np.testing.assert_allclose(out, [-2, -2, 0.2 + 0.5 * 0.495, 0.2 + 0.5 * 1.009, -2])


def test_two_point_lane_is_linear_and_order_free():
    a = Lane(np.array([[0.1, 0.9], [0.3, 0.5]]))
    b = Lane(np.array([[0.3, 0.5], [0.1, 0.9]]))
    np.testing.assert_allclose(a(np.array([0.7])), [0.2])
    np.testing.assert_allclose(b(np.array([0.7])), [0.2])


def test_pixel_points_by_hand():
    # x = 0.25 + 0.5 * (y - 0.5) from y = 0.55 to 1.0 of an 800x600 image, rows 300, 400, 500:
    # row 300 (y = 0.5) is above the lane (0.55 - 0.01); 400 -> x = 0.3333 * 800, 500 -> 0.4167 * 800
    ys = np.array([0.55, 0.7, 0.85, 1.0])
    lane = Lane(np.stack([0.25 + 0.5 * (ys - 0.5), ys], axis=1))
    np.testing.assert_allclose(lane.pixel_points(800, 600, 300, y_step=100), [[1000 / 3, 500], [800 / 3, 400]])
    assert lane.pixel_points(800, 600, 300, y_step=1000).shape == (0, 2)  # row 300 alone
    steep = Lane(np.array([[0.9, 0.6], [1.1, 1.0]]))  # x = 1 at y = 0.8: rows 500 and 550 are off the image
    np.testing.assert_allclose(steep.pixel_points(800, 600, 400, y_step=50), [[780, 450], [2240 / 3, 400]])


def test_lanes_pixel_points_drops_lanes_of_fewer_than_two_points():
    long = Lane(np.array([[0.5, 0.5], [0.5, 1.0]]))
    short = Lane(np.array([[0.2, 0.995], [0.2, 0.999]]))  # y 0.985 .. 1.009 of 590 rows: row 582 only
    points = lanes_pixel_points([short, long, short], 1640, 590, 270)
    assert [len(p) for p in points] == [len(long.pixel_points(1640, 590, 270))]
    assert len(culane_lines([short, long], 1640, 590)) == 1


@pytest.mark.parametrize("decimals", [0, 2, 3, 5])
def test_printed_values_are_what_a_reader_gets_back_from_the_text(decimals):
    rng = np.random.default_rng(decimals)
    step = 10.0 ** -decimals
    values = np.concatenate([
        rng.uniform(0, 3000, 20000),
        (rng.integers(0, 300000, 2000) + 0.5) * step,  # next to a tie: printed and parsed
        [0.125, 0.375, 2.5, 1e-7, 0.0, 1639.999996, 2.0 ** 60],  # exact binary ties round half to even
    ])
    expected = np.array([float(f"{v:.{decimals}f}") for v in values])
    np.testing.assert_array_equal(printed(values, decimals), expected)
    assert printed(np.array([[0.125, 0.375]]), 2).tolist() == [[0.12, 0.38]]


def test_pixel_points_in_culane_rows():
    # vertical lane at x = 0.5 from y = 0.5 to 1.0 of a 1640x590 image
    ys = np.linspace(0.5, 1.0, 10)
    lane = Lane(np.stack([np.full_like(ys, 0.5), ys], axis=1))
    pts = lane.pixel_points(1640, 590, 270)
    expected_ys = [y for y in range(582, 269, -8) if 0.5 - 0.01 <= y / 590]
    np.testing.assert_allclose(pts[:, 0], 820.0)
    np.testing.assert_allclose(pts[:, 1], expected_ys)


def test_pixel_points_drop_xs_outside_image():
    ys = np.linspace(0.5, 1.0, 10)
    lane = Lane(np.stack([1.5 - ys, ys], axis=1))  # x >= 1 for y <= 0.5
    pts = lane.pixel_points(1640, 590, 270)
    assert np.all(pts[:, 0] < 1640) and np.all(pts[:, 0] >= 0)
    assert pts[-1, 1] > 295  # the row y=0.5 (x = 1.0) is out


def test_to_tusimple():
    ys = np.linspace(0.5, 1.0, 10)
    lane = Lane(np.stack([0.2503 + 0.0 * ys, ys], axis=1))  # 320.38 px, truncated
    out = lane.to_tusimple([160, 360, 500, 710], 1280, 720)
    assert out == [-2.0, 320.0, 320.0, 320.0]


def test_bad_points_rejected():
    with pytest.raises(ValueError):
        Lane(np.array([[0.1, 0.5]]))
    with pytest.raises(ValueError):
        Lane(np.array([[0.1, 0.5], [0.2, 0.5]]))


def test_release_culane_strings():
    """Lanes of the released decoder re-sampled give its CULane strings byte for byte."""
    decoded = json.loads((FIDELITY / "eval_decoded.json").read_text())
    n = 0
    for per_threshold in decoded.values():
        for image in per_threshold:
            lines = []
            for lane in image["lanes"]:
                pts = Lane(np.array(lane["points"])).pixel_points(1640, 590, 270)
                line = " ".join(f"{x:.5f} {y:.5f}" for x, y in pts)
                if line:
                    lines.append(line)
            assert "\n".join(lines) == image["culane_prediction_string"]
            n += len(image["lanes"])
    assert n == 6
