"""Joint image + lane augmentation: geometric consistency, flip convention, clipping, colour ops."""
import cv2
import numpy as np
import pytest

from srlane.data.transforms import (LaneAugmenter, adjust_brightness, adjust_hue_saturation, affine_matrix,
                                    brightness_lut, clip_lanes, flip_lanes, resize_lanes, warp_image)

W, H = 400, 160


def sample_lanes():
    ys = np.linspace(159, 20, 40)
    return [
        np.stack([60 + 0.8 * (159 - ys), ys], 1),
        np.stack([200 + 30 * np.sin((159 - ys) / 40), ys], 1),
        np.stack([380 - 1.1 * (159 - ys), ys], 1),
    ]


def draw(lanes, shape, thickness=3):
    """Lanes drawn in continuous coordinates (pixel i covers [i, i+1): centre at i + 0.5)."""
    img = np.zeros((*shape, 3), np.uint8)
    for lane in lanes:
        pts = np.round((lane - 0.5) * 16).astype(np.int32)
        cv2.polylines(img, [pts], False, (255, 255, 255), thickness, cv2.LINE_8, shift=4)
    return img


def fraction_near_drawing(img, lanes, tol=2.0):
    mask = img[..., 0] > 64
    dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    pts = []
    for lane in lanes:   # every point plus dense samples between them
        t = np.linspace(0, 1, 5)[:-1, None, None]
        pts.append((lane[:-1] + t * (lane[1:] - lane[:-1])[None]).reshape(-1, 2))
        pts.append(lane[-1:])
    pts = np.concatenate(pts) - 0.5
    cols = np.clip(np.round(pts[:, 0]).astype(int), 0, img.shape[1] - 1)
    rows = np.clip(np.round(pts[:, 1]).astype(int), 0, img.shape[0] - 1)
    return float(np.mean(dist[rows, cols] <= tol)), len(pts)


def test_geometric_augmentation_moves_image_and_lanes_together():
    aug = LaneAugmenter(flip=0.5, affine=dict(p=1.0, translate=0.1, rotate=10.0, scale=(0.8, 1.2), shear=10.0))
    lanes = sample_lanes()
    img = draw(lanes, (H, W))
    total_points, fractions = 0, []
    for seed in range(12):
        out_img, out_lanes = aug(img, lanes, np.random.default_rng(seed))
        assert out_lanes, seed
        frac, n = fraction_near_drawing(out_img, out_lanes)
        fractions.append(frac)
        total_points += n
        for lane in out_lanes:   # clipped to the image box
            assert lane[:, 0].min() >= 0 and lane[:, 0].max() <= W and lane[:, 1].min() >= 0 and lane[:, 1].max() <= H
    assert total_points > 2000
    assert min(fractions) >= 0.99, fractions


def test_resize_matches_cv2_resize():
    lanes = [lane * [4.1, 2.0] for lane in sample_lanes()]   # in a 1640 x 320 image
    img = draw(lanes, (320, 1640), thickness=7)
    small = cv2.resize(img, (W, H), interpolation=cv2.INTER_CUBIC)
    frac, _ = fraction_near_drawing(small, resize_lanes(lanes, W / 1640, H / 320))
    assert frac >= 0.99


def test_flip_convention_is_exact_for_image_and_points():
    # Continuous coordinates: the centre of pixel column i is i + 0.5; flip maps x -> W - x.
    img = np.zeros((H, W, 3), np.uint8)
    img[10, 37] = 255
    flipped = cv2.flip(img, 1)
    assert flipped[10, W - 1 - 37, 0] == 255
    (lane,) = flip_lanes([np.array([[37.5, 10.5], [0.0, 0.0], [W, 3.0]])], W)
    np.testing.assert_array_equal(lane, [[W - 1 - 37 + 0.5, 10.5], [W, 0.0], [0.0, 3.0]])
    aug = LaneAugmenter(flip=1.0)
    out_img, (out_lane,) = aug(img, [np.array([[37.5, 10.5], [37.5, 20.5]])], np.random.default_rng(0))
    assert out_img[10, W - 1 - 37, 0] == 255
    np.testing.assert_array_equal(out_lane[:, 0], [W - 37.5, W - 37.5])


def test_clip_cuts_at_border_and_splits_reentering_lanes():
    (cut,) = clip_lanes([np.array([[10.0, 10.0], [-10.0, 30.0], [-20.0, 40.0]])], W, H)
    np.testing.assert_allclose(cut, [[10, 10], [0, 20]])
    pieces = clip_lanes([np.array([[50.0, 150.0], [50.0, 170.0], [60.0, 190.0], [60.0, 150.0], [70.0, 140.0]])], W, H)
    assert len(pieces) == 2
    np.testing.assert_allclose(pieces[0], [[50, 150], [50, 160]])
    np.testing.assert_allclose(pieces[1], [[60, 160], [60, 150], [70, 140]])
    assert clip_lanes([np.array([[-5.0, 10.0], [-1.0, 20.0]])], W, H) == []
    inside = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(clip_lanes([inside], W, H)[0], inside)


def test_same_generator_state_gives_same_output_and_blur_kinds_run():
    cfg = dict(flip=0.5, channel_shuffle=0.5,
               brightness=dict(p=0.9, mul=(0.85, 1.15), add=(-10, 10)),
               hue_saturation=dict(p=0.9, shift=(-10, 10)),
               blur=dict(p=1.0, motion=(3, 5), median=(3, 5), jpeg=(85, 95), dropout=dict(p=(0.0, 0.05), size=(0.02, 0.05))),
               affine=dict(p=0.7, translate=0.1, rotate=10.0, scale=(0.8, 1.2), shear=10.0))
    aug = LaneAugmenter(**cfg)
    img = np.random.default_rng(1).integers(0, 255, (H, W, 3), dtype=np.uint8)
    outputs = []
    for seed in (5, 5, 6):
        out, lanes = aug(img, sample_lanes(), np.random.default_rng(seed))
        outputs.append((out, lanes))
    assert np.array_equal(outputs[0][0], outputs[1][0])
    assert all(np.array_equal(a, b) for a, b in zip(outputs[0][1], outputs[1][1]))
    assert not np.array_equal(outputs[0][0], outputs[2][0])
    for seed in range(8):   # every blur kind is drawn at least once in 8 seeds with 4 kinds
        out, _ = aug(img, sample_lanes(), np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8


def test_blur_with_probability_but_no_kind_is_an_error():
    with pytest.raises(ValueError, match="augmentation.blur"):
        LaneAugmenter(blur=dict(p=0.2, motion=None, median=None, jpeg=None, dropout=None))


def test_colour_tables():
    lut = brightness_lut(1.1, 5, add_first=False)
    assert lut[100] == 115 and lut[0] == 5 and lut[250] == 255
    lut = brightness_lut(0.9, -10, add_first=True)
    assert lut[100] == 81 and lut[5] == 0
    img = np.full((2, 2, 3), (200, 50, 50), np.uint8)
    hsv_before = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)[0, 0].astype(int)
    hsv_after = cv2.cvtColor(adjust_hue_saturation(img, 10), cv2.COLOR_RGB2HSV)[0, 0].astype(int)
    assert abs(hsv_after[1] - hsv_before[1] - 10) <= 2
    assert abs((hsv_after[0] - hsv_before[0]) % 180 - 7) <= 1


def test_fast_paths_equal_the_plain_opencv_calls():
    """The warp goes through 4 channels and the brightness table touches luma alone (both for
    speed): the pixels equal the plain 3-channel warp and the full 3-channel table."""
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (0, 0), 1.0)
    for seed in range(5):
        r = np.random.default_rng(seed)
        matrix = affine_matrix(W, H, (r.uniform(-40, 40), r.uniform(-16, 16)), r.uniform(-10, 10),
                               r.uniform(0.8, 1.2), r.uniform(-10, 10))
        cv_matrix = np.hstack([matrix[:, :2], (matrix[:, 2] + matrix[:, :2] @ [0.5, 0.5] - 0.5)[:, None]])
        plain = cv2.warpAffine(img, cv_matrix, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        assert np.array_equal(warp_image(img, matrix), plain)
        assert np.array_equal(warp_image(img[..., 0].copy(), matrix), plain[..., 0])  # one channel
        mul, add, first = r.uniform(0.85, 1.15), int(r.integers(-10, 11)), bool(seed % 2)
        identity = np.arange(256, dtype=np.uint8)
        table = np.stack([brightness_lut(mul, add, first), identity, identity], axis=1)[None]
        full = cv2.cvtColor(cv2.LUT(cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb), table), cv2.COLOR_YCrCb2RGB)
        assert np.array_equal(adjust_brightness(img, mul, add, first), full)


def test_categories_follow_lanes_through_flip_split_and_drop():
    from srlane.lane_kinds import MIRRORED_CATEGORIES, mirrored_category

    img = np.zeros((H, W, 3), np.uint8)
    inside = np.array([[10.0, 150.0], [20.0, 10.0]])
    reentering = np.array([[50.0, 150.0], [50.0, 170.0], [60.0, 190.0], [60.0, 150.0], [70.0, 140.0]])
    outside = np.array([[-5.0, 10.0], [-1.0, 20.0]])
    lanes, categories = [inside, reentering, outside], [5, 20, 2]
    plain = LaneAugmenter()
    out_img, out_lanes, out_categories = plain.augment(img, lanes, categories, np.random.default_rng(0))
    # the re-entering lane splits in two pieces, both of its kind; the outside lane goes
    assert len(out_lanes) == 3 and out_categories == [5, 20, 20]
    np.testing.assert_array_equal(out_lanes[0], inside)
    flipped_img, flipped, flipped_categories = LaneAugmenter(flip=1.0).augment(
        img, lanes, categories, np.random.default_rng(0))
    # flipped: left-dashed/right-solid white becomes left-solid/right-dashed, a left curb a right one
    assert flipped_categories == [6, 21, 21]
    np.testing.assert_allclose(flipped[0], [[W - 10.0, 150.0], [W - 20.0, 10.0]])
    assert all(mirrored_category(mirrored_category(c)) == c for c in range(22))
    assert {(a, b) for a, b in MIRRORED_CATEGORIES.items()} == {(5, 6), (6, 5), (11, 12), (12, 11), (20, 21), (21, 20)}
    assert mirrored_category(1) == 1 and mirrored_category(10) == 10
    # __call__ gives the same image and lanes as augment
    call_img, call_lanes = LaneAugmenter(flip=1.0)(img, lanes, np.random.default_rng(0))
    assert np.array_equal(call_img, flipped_img)
    assert all(np.array_equal(a, b) for a, b in zip(call_lanes, flipped))
    with pytest.raises(ValueError, match="1 lane categories for 3 lanes"):
        plain.augment(img, lanes, [1], np.random.default_rng(0))
