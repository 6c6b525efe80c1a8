"""Line IoU, focal loss and dynamic-k assignment against hand computations and brute force."""
import math

import pytest
import torch

from srlane.models.assign import assign, dynamic_k_assign
from srlane.models.losses import RELEASE_DY, angle_loss, focal_cost, line_iou, softmax_focal_loss


def test_line_iou_identical_and_far():
    xs = torch.linspace(100, 300, 72).unsqueeze(0)
    assert line_iou(xs, xs, 800).item() == pytest.approx(1.0)
    assert line_iou(xs + 200, xs, 800).item() < 0  # no overlap at all: negative IoU
    far = line_iou(torch.full((1, 72), 700.0), torch.full((1, 72), 100.0), 800).item()
    assert far == pytest.approx((107.5 - 692.5) / (707.5 - 92.5))


def test_line_iou_partial_overlap_by_hand():
    # vertical lanes (constant x): half-width 7.5 everywhere; shift 5 px
    pred = torch.full((1, 72), 405.0)
    target = torch.full((1, 72), 400.0)
    assert line_iou(pred, target, 800).item() == pytest.approx(10 / 20)
    # slanted target: width scales with sqrt(dx^2 + dy^2) / dy where dx spans two rows
    target = (400 + torch.arange(72.0)).unsqueeze(0)
    w_t = math.sqrt(4 + RELEASE_DY ** 2) / RELEASE_DY * 7.5
    iou = line_iou(target.clone(), target, 800).item()
    assert iou == pytest.approx(1.0)
    pred = torch.full((1, 72), 400.0)
    ovr = sum(min(400 + 7.5, t + w_t) - max(400 - 7.5, t - w_t) for t in target[0].tolist())
    uni = sum(max(400 + 7.5, t + w_t) - min(400 - 7.5, t - w_t) for t in target[0].tolist())
    assert line_iou(pred, target, 800).item() == pytest.approx(ovr / uni, rel=1e-5)


def test_line_iou_ignores_rows_outside_target_image():
    target = torch.full((1, 72), 400.0)
    target[0, 36:] = -1e5
    pred = torch.full((1, 72), 405.0)
    pred[0, 37:] = 0.0  # far away where the target is absent (row 36 keeps row 35's width)
    assert line_iou(pred, target, 800).item() == pytest.approx(0.5)


def test_line_iou_unaligned_equals_aligned_pairs():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(5, 72, generator=g) * 800
    target = torch.rand(3, 72, generator=g) * 900 - 50
    target[1, 40:] = -1e5
    full = line_iou(pred, target, 800, width=30, aligned=False)
    for i in range(5):
        for j in range(3):
            pair = line_iou(pred[i:i + 1], target[j:j + 1], 800, width=30)
            assert full[i, j].item() == pytest.approx(pair.item(), rel=1e-5, abs=1e-6)


def test_softmax_focal_loss_brute_force():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(30, 2, generator=g) * 3
    labels = torch.randint(0, 2, (30,), generator=g)
    got = softmax_focal_loss(logits, labels)
    for i in range(30):
        e = [math.exp(v) for v in logits[i].tolist()]
        p = [v / sum(e) + 1e-6 for v in e]
        want = sum(((1.0 if c == labels[i] else 0.0) + 1e-6) * (-0.25 * (1 - p[c]) ** 2 * math.log(p[c]))
                   for c in range(2))
        assert got[i].item() == pytest.approx(want, rel=1e-5)


def test_focal_cost_brute_force():
    logits = torch.tensor([[0.0, -2.0], [1.0, 0.5], [0.0, 3.0]])
    for row, value in zip(logits, focal_cost(logits)):
        p = 1 / (1 + math.exp(-row[1].item()))
        want = -math.log(p + 1e-12) * 0.25 * (1 - p) ** 2 + math.log(1 - p + 1e-12) * 0.75 * p ** 2
        assert value.item() == pytest.approx(want, rel=1e-5)


def test_angle_loss_release_accumulation():
    pred = [torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), 0.5)]
    target = [torch.tensor([[[0.7, 0.0], [0.0, 0.0]]]), torch.zeros(1, 2, 2), torch.tensor([[[0.4, 0.4], [0.0, 0.0]]])]
    l0 = 0.2 / (1 + 1e-4)
    l2 = 0.2 / (2 + 1e-4)
    assert angle_loss(pred, target).item() == pytest.approx(((l0 * 0.2) * 0.2 + l2) * 1.0, rel=1e-6)


def _brute_assign(cost, ious, n_candidate=4):
    """Plain loops: per target its k cheapest; conflicts go to the row's cheapest target."""
    n, t = len(cost), len(cost[0])
    taken = [[False] * t for _ in range(n)]
    for j in range(t):
        col = sorted(max(0.0, ious[i][j]) for i in range(n))[::-1][:n_candidate]
        k = max(1, int(sum(col)))
        for i in sorted(range(n), key=lambda i: cost[i][j])[:k]:
            taken[i][j] = True
    result = {}
    for i in range(n):
        js = [j for j in range(t) if taken[i][j]]
        if len(js) == 1:
            result[i] = js[0]
        elif js:
            result[i] = min(range(t), key=lambda j: cost[i][j])
    return result


@pytest.mark.parametrize("t", [4, 16])  # CULane's 4 lane slots and CurveLanes' 16
def test_dynamic_k_assign_brute_force(t):
    g = torch.Generator().manual_seed(2)
    for _ in range(50):
        b, n = 3, 12 if t == 4 else 40
        cost = torch.randn(b, n, t, generator=g)
        ious = torch.rand(b, n, t, generator=g) * 1.4 - 0.2
        valid = torch.rand(b, t, generator=g) < 0.7
        matched, gt_index = dynamic_k_assign(cost, ious, valid)
        for i in range(b):
            cols = valid[i].nonzero().flatten().tolist()
            want = _brute_assign(cost[i][:, cols].tolist(), ious[i][:, cols].tolist()) if cols else {}
            got = {p: gt_index[i, p].item() for p in matched[i].nonzero().flatten().tolist()}
            assert got == {p: cols[j] for p, j in want.items()}


def test_assign_without_lanes_and_with_lanes():
    g = torch.Generator().manual_seed(3)
    preds = torch.cat([torch.zeros(2, 40, 4),
                       torch.rand(2, 40, 72, generator=g) * 800], -1)
    targets = torch.full((2, 4, 76), -1e5)
    targets[..., 0], targets[..., 1] = 1.0, 0.0
    targets[1, 0, :2] = torch.tensor([0.0, 1.0])
    targets[1, 0, 2:4] = torch.tensor([0.0, 72.0])
    targets[1, 0, 4:] = preds[1, 7, 4:]  # exactly proposal 7
    valid = targets[..., 1] == 1
    matched, gt_index = assign(preds, targets, valid, 800)
    assert not matched[0].any()
    assert matched[1, 7] and gt_index[1, 7] == 0


def test_assign_sixteen_slots_each_lane_to_its_own_proposal():
    """Ten lanes in 16 target slots, each a copy of one of 40 proposals: each lane takes its copy."""
    g = torch.Generator().manual_seed(4)
    preds = torch.cat([torch.zeros(1, 40, 4), torch.zeros(1, 40, 72)], -1)
    preds[..., 3] = 1.0
    preds[0, :, 4:] = (torch.arange(40).float() * 20 + 5)[:, None] + torch.rand(40, 72, generator=g)
    targets = torch.full((1, 16, 76), -1e5)
    targets[..., 0], targets[..., 1] = 1.0, 0.0
    copies = torch.tensor([3, 7, 11, 15, 19, 23, 27, 31, 35, 39])
    targets[0, :10, :2] = torch.tensor([0.0, 1.0])
    targets[0, :10, 2:4] = torch.tensor([0.0, 72.0])
    targets[0, :10, 4:] = preds[0, copies, 4:]
    matched, gt_index = assign(preds, targets, targets[..., 1] == 1, 800)
    assert matched[0, copies].all()
    assert gt_index[0, copies].tolist() == list(range(10))


def test_line_iou_prediction_width_dead_zone_and_target_width():
    """A noisy prediction widens its own band past the target's: the release's loss gives those
    rows no gradient, the target-width variant pulls every row towards the target."""
    target = torch.full((1, 8), 100.0)
    pred = (101 + torch.tensor([[0.0, 0, 30, 30, 0, 0, 30, 30]])).requires_grad_(True)
    line_iou(pred, target, img_w=800).sum().backward()
    assert torch.count_nonzero(pred.grad) == 0
    pred.grad = None
    line_iou(pred, target, img_w=800, pred_width="target").sum().backward()
    assert torch.all(pred.grad < 0)  # every row is above the target: all pulled down
    # rows 1 px off with the target's 7.5 half-width: (15 - 1) / (15 + 1) on near rows
    near = torch.full((1, 8), 101.0)
    assert line_iou(near, target, 800, pred_width="target").item() == pytest.approx(14 / 16)
    # same slope as the target: both variants agree
    sloped = torch.arange(8.0).unsqueeze(0) * 3 + 50
    assert line_iou(sloped + 2, sloped, 800, pred_width="target").item() == pytest.approx(
        line_iou(sloped + 2, sloped, 800).item())
    with pytest.raises(ValueError, match="pred_width"):
        line_iou(near, target, 800, pred_width="both")


def test_category_loss_by_hand_only_matched_known_classes_count():
    from srlane.models.criterion import category_loss

    # image 0: proposal 0 matched to target 0 (class 1), proposal 1 to target 1 (class unknown:
    # ignored), proposal 2 unmatched; image 1: proposal 1 matched to target 0 (class 0)
    logits = torch.tensor([[[0.0, math.log(3.0)], [9.0, -9.0], [9.0, -9.0]],
                           [[-9.0, 9.0], [0.0, 0.0], [-9.0, 9.0]]])
    matched = torch.tensor([[True, True, False], [False, True, False]])
    gt_index = torch.tensor([[0, 1, 0], [0, 0, 0]])
    gt_category = torch.tensor([[1, -1], [0, -1]])
    expected = (math.log(4.0 / 3.0) + math.log(2.0)) / 2
    assert category_loss(logits, matched, gt_index, gt_category).item() == pytest.approx(expected, rel=1e-6)
    # nothing matched to a known class: 0, and still a tensor the backward pass accepts
    none = category_loss(logits.requires_grad_(), torch.zeros(2, 3, dtype=torch.bool), gt_index, gt_category)
    assert none.item() == 0.0
    none.backward()


def test_criterion_category_loss_on_the_assigned_proposal():
    from srlane.models.criterion import SRLaneLoss

    points, img_w = 8, 80.0
    weights = dict(cls=1.0, l1=1.0, iou=1.0, angle=1.0)
    criterion = SRLaneLoss(img_w, points, dict(weights, category=0.5), angle_level_weights=(1.0,),
                           num_categories=3)
    xs = torch.full((points,), 40.0)
    gt_lane = torch.full((1, 2, 4 + points), -1e5)
    gt_lane[0, :, :2] = torch.tensor([1.0, 0.0])
    gt_lane[0, 0, :4] = torch.tensor([0.0, 1.0, 0.0, points])
    gt_lane[0, 0, 4:] = xs
    # proposal 0 lies on the lane, the others far off: only proposal 0 is matched (k = 1)
    preds = torch.zeros(1, 4, 4 + points + 3)
    preds[0, :, 3] = 1.0
    preds[0, :, 4:4 + points] = torch.tensor([0.5, 0.05, 0.95, 0.1]).unsqueeze(-1)
    preds[0, 0, 4 + points:] = torch.tensor([0.0, 0.0, math.log(2.0)])  # p(class 2) = 1/2
    preds[0, 1:, 4 + points:] = torch.tensor([20.0, -20.0, -20.0])      # wrong, but unmatched
    gt_category = torch.tensor([[2, 1]])
    angles = [torch.full((1, 2, 2), 0.5)]
    out = criterion([preds, preds], angles, gt_lane, angles, gt_category)
    assert out["loss_status"]["category_loss"].item() == pytest.approx(0.5 * math.log(2.0), rel=1e-5)
    without = SRLaneLoss(img_w, points, weights, angle_level_weights=(1.0,))([preds[..., :4 + points]], angles, gt_lane, angles)
    assert "category_loss" not in without["loss_status"]
    for key in ("cls_loss", "l1_loss", "iou_loss"):  # the geometry losses ignore the extra columns
        assert out["loss_status"][key].item() == pytest.approx(without["loss_status"][key].item(), rel=1e-6)
    with pytest.raises(ValueError, match="gt_category"):
        criterion([preds], angles, gt_lane, angles)
    # without a head the category weight (every config has one) plays no part
    headless = SRLaneLoss(img_w, points, dict(weights, category=1.0), angle_level_weights=(1.0,))
    assert headless([preds[..., :4 + points]], angles, gt_lane, angles)["loss_status"].keys() == without["loss_status"].keys()
