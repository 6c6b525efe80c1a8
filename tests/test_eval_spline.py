import numpy as np
import pytest

from srlane.evaluation.spline import SAMPLES_PER_SEGMENT, drop_repeats, sample_lanes, spline_moments


def dense_moments(points):
    """Natural spline moments from a dense solve of the same tridiagonal system (float64)."""
    pts = points.astype(np.float32)
    diff = (pts[1:] - pts[:-1]).astype(np.float64)
    h = np.hypot(diff[:, 0], diff[:, 1])
    n = len(pts)
    a = np.zeros((n - 2, n - 2))
    for i in range(n - 2):
        a[i, i] = 2 * (h[i] + h[i + 1])
        if i > 0:
            a[i, i - 1] = h[i]
        if i < n - 3:
            a[i, i + 1] = h[i + 1]
    slope = diff / h[:, None]
    rhs = 6 * (slope[1:] - slope[:-1])
    m = np.zeros((n, 2))
    m[1:-1] = np.linalg.solve(a, rhs)
    return m


def random_lane(rng, n):
    ys = np.sort(rng.uniform(250, 590, n))[::-1]
    return np.stack([rng.uniform(0, 1640) + rng.normal(0, 30, n).cumsum(), ys], 1)


@pytest.mark.parametrize("n", [3, 4, 7, 31])
def test_moments_match_a_dense_solve_and_vanish_at_both_ends(n):
    rng = np.random.default_rng(n)
    lane = random_lane(rng, n)
    m = spline_moments(lane)
    np.testing.assert_allclose(m, dense_moments(lane), rtol=1e-9, atol=1e-12)
    assert np.all(m[0] == 0) and np.all(m[-1] == 0)


def test_samples_pass_through_every_point_with_zero_curvature_at_the_ends():
    rng = np.random.default_rng(0)
    lane = random_lane(rng, 6).astype(np.float32)
    samples = sample_lanes([lane])[0]
    assert samples.dtype == np.float32 and len(samples) == SAMPLES_PER_SEGMENT * 5 + 1
    np.testing.assert_array_equal(samples[::SAMPLES_PER_SEGMENT], lane)
    # Second difference of the (uniformly sampled) first and last segments tends to 0 at the ends,
    # while it does not inside: compare with the moments, a cubic's second derivative.
    m = spline_moments(lane)
    assert np.abs(m[1:-1]).max() > 1e-3
    h = np.hypot(*(lane[1] - lane[0]).astype(np.float64)) / SAMPLES_PER_SEGMENT
    second = (samples[2].astype(np.float64) - 2 * samples[1] + samples[0]) / h**2
    assert np.abs(second).max() < np.abs(m[1]).max() * 0.1 + 1e-2


def test_spline_is_c1_at_inner_knots():
    rng = np.random.default_rng(1)
    lane = random_lane(rng, 5)
    samples = sample_lanes([lane])[0].astype(np.float64)
    pts = lane.astype(np.float32)
    h = np.hypot(*(pts[1:] - pts[:-1]).astype(np.float64).T)
    for i in range(1, 4):
        k = i * SAMPLES_PER_SEGMENT
        left = (samples[k] - samples[k - 1]) / (h[i - 1] / SAMPLES_PER_SEGMENT)
        right = (samples[k + 1] - samples[k]) / (h[i] / SAMPLES_PER_SEGMENT)
        np.testing.assert_allclose(left, right, atol=0.05)


def test_batched_sampling_equals_lane_by_lane():
    rng = np.random.default_rng(2)
    lanes = [random_lane(rng, n) for n in (3, 9, 4, 20, 5)]
    together = sample_lanes(lanes)
    for lane, samples in zip(lanes, together):
        np.testing.assert_array_equal(samples, sample_lanes([lane])[0])


def test_short_lanes_repeats_and_dots():
    seg = np.array([[1.5, 2.5], [10.25, 300.0]])
    out = sample_lanes([np.zeros((0, 2)), np.array([[5.0, 5.0]]), seg, np.array([[3, 4], [3, 4], [3, 4.0]])])
    assert out[0] is None and out[1] is None
    np.testing.assert_array_equal(out[2], seg.astype(np.float32))
    np.testing.assert_array_equal(out[3], [[3, 4], [3, 4]])
    repeated = np.array([[0, 0], [0, 0], [10, 50], [10, 50], [30, 100.0]])
    np.testing.assert_array_equal(sample_lanes([repeated])[0], sample_lanes([drop_repeats(repeated)])[0])
    with pytest.raises(ValueError, match="repeated"):
        spline_moments(repeated)


def test_many_lanes_of_every_kind_equal_lane_by_lane():
    rng = np.random.default_rng(3)
    lanes = []
    for i in range(80):
        kind = i % 4
        if kind == 0:
            lanes.append(random_lane(rng, int(rng.integers(3, 40))))
        elif kind == 1:
            lanes.append(rng.uniform(0, 500, (2, 2)))
        elif kind == 2:
            lanes.append(np.repeat(rng.uniform(0, 500, (1, 2)), int(rng.integers(1, 3)), axis=0))
        else:
            lanes.append(np.zeros((0, 2)))
    together = sample_lanes(lanes)
    for lane, samples in zip(lanes, together):
        alone = sample_lanes([lane])[0]
        assert (samples is None and alone is None) or np.array_equal(samples, alone)
