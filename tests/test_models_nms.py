"""Lane NMS against a plain Python reading of spec 7.2."""
import math

import numpy as np
import torch

from srlane.models.nms import lane_nms, suppression_matrix


def _suppresses(a, b, thres, n_rows):
    """a, b: (start, length, xs) in strips / pixels."""
    first = max(math.trunc(a[0] + 0.5), math.trunc(b[0] + 0.5))
    last = min(math.trunc(a[0] + a[1] - 1 + 0.5), math.trunc(b[0] + b[1] - 1 + 0.5), n_rows - 1)
    if last < first:
        return False
    dist = sum(abs(a[2][r] - b[2][r]) for r in range(max(first, 0), last + 1))
    return dist < thres * (last - first + 1)


def _reference(lanes, scores, keep, thres, top_k):
    n_rows = len(lanes[0][2])
    order = sorted((i for i in range(len(scores)) if keep[i]), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(not _suppresses(lanes[k], lanes[i], thres, n_rows) for k in kept):
            kept.append(i)
        if len(kept) == top_k:
            break
    return kept


def test_matches_reference_on_random_cases():
    g = torch.Generator().manual_seed(0)
    cases = 0
    for trial in range(60):
        b, n, p = 4, 12, 24
        starts = torch.randint(-6, p + 4, (b, n), generator=g).float() + torch.rand(b, n, generator=g) - 0.5
        lengths = torch.randint(-2, p, (b, n), generator=g).float() + torch.rand(b, n, generator=g) - 0.5
        base = torch.rand(b, 1, p, generator=g) * 200
        xs = base + torch.randn(b, n, p, generator=g) * (10 + 40 * (trial % 3))
        scores = torch.rand(b, n, generator=g)
        scores[:, 1::3] = scores[:, ::3][:, : scores[:, 1::3].shape[1]]  # score ties
        keep = torch.rand(b, n, generator=g) < 0.8
        masked = torch.where(keep, scores, -1.0).numpy()
        got = lane_nms(masked, starts.numpy(), lengths.numpy(), xs.numpy(), 0.0, 50.0, 4)
        for i in range(b):
            lanes = [(starts[i, j].item(), lengths[i, j].item(), xs[i, j].tolist()) for j in range(n)]
            want = _reference(lanes, scores[i].tolist(), keep[i].tolist(), 50.0, 4)
            assert got[i].tolist() == want
            cases += 1
    assert cases == 240


def test_no_common_rows_never_suppress():
    xs = np.zeros((2, 10), np.float32)
    starts = np.array([0.0, 6.0], np.float32)
    lengths = np.array([5.0, 4.0], np.float32)  # rows 0..4 and 6..9
    suppress = suppression_matrix(starts, lengths, xs, 50.0)
    assert not suppress[0, 1] and not suppress[1, 0]
    assert lane_nms(np.array([[0.9, 0.8]]), starts[None], lengths[None], xs[None], 0.4, 50.0, 4)[0].tolist() == [0, 1]


def test_close_lanes_suppressed_and_top_k():
    xs = np.stack([np.full(10, 100.0 + 10 * k, np.float32) for k in range(6)])
    starts, lengths = np.zeros(6, np.float32), np.full(6, 10.0, np.float32)
    suppress = suppression_matrix(starts, lengths, xs, 50.0)
    assert suppress[0, 4] and not suppress[0, 5]  # 40 px < 50, 50 px is not below
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])

    def kept(lane_xs, conf):
        return lane_nms(scores[None], starts[None], lengths[None], lane_xs[None], conf, 50.0, 4)[0].tolist()

    assert kept(xs, 0.0) == [0, 5]
    assert kept(xs, 0.35) == [0, 5]
    assert kept(xs, 0.95) == []
    far = xs + np.arange(6, dtype=np.float32)[:, None] * 100  # nothing suppresses: top_k caps
    assert kept(far, 0.0) == [0, 5, 4, 3]
    assert kept(far, 0.45) == [0, 5]


def test_batch_with_unequal_candidate_counts():
    """Images with 0, 1 and 3 candidates in one batch: each is decided on its own."""
    xs = np.stack([np.full(10, 100.0 * (k + 1), np.float32) for k in range(3)])
    starts, lengths = np.zeros((3, 3), np.float32), np.full((3, 3), 10.0, np.float32)
    scores = np.array([[0.1, 0.2, 0.3], [0.1, 0.9, 0.3], [0.5, 0.7, 0.6]])
    got = lane_nms(scores, starts, lengths, np.stack([xs] * 3), 0.4, 50.0, 4)
    assert [g.tolist() for g in got] == [[], [1], [1, 2, 0]]
