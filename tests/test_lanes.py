"""Lane: spline sampling and the CULane / TuSimple point sampling of the release."""
import json
from pathlib import Path

import numpy as np
import pytest

from srlane.lanes import Lane

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


def test_to_culane_pixels():
    # vertical lane at x = 0.5 from y = 0.5 to 1.0 of a 1640x590 image
    ys = np.linspace(0.5, 1.0, 10)
    lane = Lane(np.stack([np.full_like(ys, 0.5), ys], axis=1))
    pts = lane.to_culane(1640, 590)
    expected_ys = [y for y in range(582, 269, -8) if 0.5 - 0.01 <= y / 590]
    np.testing.assert_allclose(pts[:, 0], 820.0)
    np.testing.assert_allclose(pts[:, 1], expected_ys)


def test_to_culane_drops_xs_outside_image():
    ys = np.linspace(0.5, 1.0, 10)
    lane = Lane(np.stack([1.5 - ys, ys], axis=1))  # x >= 1 for y <= 0.5
    pts = lane.to_culane(1640, 590)
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
                pts = Lane(np.array(lane["points"])).to_culane(1640, 590)
                line = " ".join(f"{x:.5f} {y:.5f}" for x, y in pts)
                if line:
                    lines.append(line)
            assert "\n".join(lines) == image["culane_prediction_string"]
            n += len(image["lanes"])
    assert n == 6
