import cv2
import numpy as np

from srlane.evaluation.raster import Rasterizer, mask_iou, round_points
from srlane.evaluation.spline import sample_lanes

H, W = 590, 1640


def full_canvas(polyline, width=30, shape=(H, W)):
    """The official drawing: cv2.line between consecutive rounded points on a whole canvas."""
    pts = round_points(polyline)
    canvas = np.zeros(shape, dtype=np.uint8)
    for a, b in zip(pts[:-1], pts[1:]):
        cv2.line(canvas, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), 1, width, cv2.LINE_8)
    return canvas.astype(bool)


def paste(mask, shape=(H, W)):
    out = np.zeros(shape, dtype=bool)
    if mask.area:
        x0, y0, x1, y1 = mask.bbox
        out[y0:y1 + 1, x0:x1 + 1] = mask.as_bool()
    return out


def random_lanes(rng, count):
    lanes = []
    for i in range(count):
        kind = i % 5
        if kind == 0:  # CULane-like, from below the bottom border upwards
            ys = np.arange(rng.uniform(560, 640), rng.uniform(200, 320), -10.0)
        elif kind == 1:  # crossing the top border
            ys = np.arange(rng.uniform(100, 400), rng.uniform(-60, 0), -rng.uniform(4, 30))
        elif kind == 2:  # sparse points: long steps
            ys = np.linspace(rng.uniform(500, 600), rng.uniform(250, 300), rng.integers(3, 5))
        elif kind == 3:  # nearly horizontal, crossing the side borders
            xs = np.arange(rng.uniform(-80, 100), rng.uniform(1500, 1720), 25.0)
            lanes.append(np.stack([xs, rng.uniform(20, 570) + 0.05 * (xs - 800) + rng.normal(0, 2, len(xs))], 1))
            continue
        else:  # random points anywhere, also outside the canvas
            lanes.append(rng.uniform([-100, -100], [W + 100, H + 100], (rng.integers(2, 6), 2)))
            continue
        x0 = rng.uniform(-60, W + 60)
        xs = x0 + rng.uniform(-2.5, 2.5) * (ys[0] - ys) + rng.uniform(-3e-3, 3e-3) * (ys[0] - ys) ** 2
        lanes.append(np.stack([xs + rng.normal(0, 0.7, len(xs)), ys], 1))
    return lanes


def test_fast_rasterisation_equals_full_canvas_drawing():
    rng = np.random.default_rng(0)
    lanes = random_lanes(rng, 60)
    polylines = sample_lanes(lanes)
    masks = Rasterizer().rasterize(polylines)
    crossing = 0
    for polyline, mask in zip(polylines, masks):
        ref = full_canvas(polyline)
        got = paste(mask)
        assert mask.area == ref.sum()
        np.testing.assert_array_equal(got, ref)
        pts = round_points(polyline)
        crossing += bool(np.any((pts < 15) | (pts > [W - 16, H - 16])))
    assert crossing >= 30


def test_small_canvas_and_other_width():
    rng = np.random.default_rng(1)
    shape = (120, 200)
    lanes = [rng.uniform([-30, -30], [230, 150], (rng.integers(3, 8), 2)) for _ in range(20)]
    polylines = sample_lanes(lanes)
    for polyline, mask in zip(polylines, Rasterizer(width=11, img_shape=shape).rasterize(polylines)):
        np.testing.assert_array_equal(paste(mask, shape), full_canvas(polyline, 11, shape))


def test_iou_equals_brute_force():
    rng = np.random.default_rng(2)
    base = random_lanes(rng, 10)
    lanes = base + [b + rng.normal(0, 6, b.shape) for b in base]
    polylines = sample_lanes(lanes)
    masks = Rasterizer().rasterize(polylines)
    for i in range(10):
        for j in (i + 10, (i + 1) % 10 + 10):
            a, b = full_canvas(polylines[i]), full_canvas(polylines[j])
            union = np.count_nonzero(a | b)
            expected = np.count_nonzero(a & b) / union if union else 0.0
            assert mask_iou(masks[i], masks[j]) == expected
            assert mask_iou(masks[j], masks[i]) == expected


def test_lanes_entirely_outside_are_empty_and_have_iou_zero():
    masks = Rasterizer().rasterize(sample_lanes([np.array([[-200, 10], [-100, 300.0]]),
                                                 np.array([[2000, 10], [1900, 300], [1800, 350.0]])]))
    assert masks[0].area == 0 and masks[1].area == 0
    assert mask_iou(masks[0], masks[1]) == 0.0


def test_smooth_lanes_take_the_stamp_paths_and_caches_travel(monkeypatch):
    rng = np.random.default_rng(3)
    ys = np.arange(589.0, 300, -10)
    lanes = [np.stack([x0 + s * (589 - ys) + rng.normal(0, 0.5, len(ys)), ys], 1)
             for x0, s in zip(rng.uniform(300, 1300, 12), rng.uniform(-1.5, 1.5, 12))]
    polylines = sample_lanes(lanes)
    rasterizer = Rasterizer()
    whole = []
    monkeypatch.setattr(rasterizer, "draw_whole", lambda pts: whole.append(pts) or Rasterizer.draw_whole(rasterizer, pts))
    masks = rasterizer.rasterize(polylines)
    assert whole == []
    for polyline, mask in zip(polylines, masks):
        np.testing.assert_array_equal(paste(mask), full_canvas(polyline))
    other = Rasterizer()
    other.stamps.absorb(rasterizer.stamps.export())
    assert len(other.stamps) == len(rasterizer.stamps)
    again = other.rasterize(polylines)
    assert len(other.stamps) == len(rasterizer.stamps)  # nothing drawn anew
    for a, b in zip(masks, again):
        assert a.bbox == b.bbox and np.array_equal(a.left, b.left) and np.array_equal(a.right, b.right)
