"""Lane NMS against a plain Python reading of spec 7.2."""
import math

import numpy as np
import torch

from helpers.inference import decoder_cases
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


def _random_case(g, trial):
    """One batch of NMS inputs with score ties (scores on a grid of eighths) and equal
    distances (integer xs, lanes offset by whole multiples of the threshold's 5 px)."""
    b, n, p = 4, [12, 40][trial % 2], [24, 72][trial % 2]
    starts = torch.randint(-6, p + 4, (b, n), generator=g).float()
    lengths = torch.randint(-2, p + 2, (b, n), generator=g).float()
    if trial % 3:  # fractional parts, some at .5 exactly
        starts += torch.randint(-2, 3, (b, n), generator=g).float() / 4
        lengths += torch.randint(-2, 3, (b, n), generator=g).float() / 4
    offsets = torch.randint(-4, 5, (b, n, 1), generator=g).float() * 5
    noise = torch.randint(-3, 4, (b, n, p), generator=g).float() * (trial % 4 == 3)
    xs = torch.randint(0, 400, (b, 1, p), generator=g).float() + offsets + noise
    scores = torch.randint(0, 9, (b, n), generator=g).float() / 8
    return scores, starts, lengths, xs


def test_torch_nms_keeps_the_same_indices_as_numpy():
    """>= 200 random cases: ties in score and in distance, thresholds that keep none, some and all
    proposals, top_k below and above the candidates (16 as for CurveLanes): the same indices."""
    from srlane.models.nms import lane_nms_torch

    g = torch.Generator().manual_seed(0)
    images = ties = none = every = capped = 0
    for trial in range(72):
        scores, starts, lengths, xs = _random_case(g, trial)
        conf = [0.0, 0.5, 1.01, 0.375][trial % 4]
        top_k = [1, 4, 16, 50][(trial // 4) % 4]
        want = lane_nms(scores.numpy(), starts.numpy(), lengths.numpy(), xs.numpy(), conf, 5.0, top_k)
        indices, valid = lane_nms_torch(scores, starts, lengths, xs, conf, 5.0, top_k)
        assert indices.shape == valid.shape == (4, top_k)
        for i in range(4):
            assert indices[i][valid[i]].tolist() == want[i].tolist(), (trial, i)
            assert valid[i].tolist() == sorted(valid[i].tolist(), reverse=True)  # a prefix
            candidates = scores[i][scores[i] >= conf]
            images += 1
            ties += len(candidates) > len(set(candidates.tolist()))
            none += len(candidates) == 0
            every += len(candidates) == scores.shape[1]
            capped += len(want[i]) == top_k
    assert images >= 200 and min(ties, none, every, capped) > 10, (images, ties, none, every, capped)


def test_torch_nms_strict_threshold_and_ties_by_index():
    from srlane.models.nms import lane_nms_torch

    xs = torch.stack([torch.full((10,), 100.0 + 10 * k) for k in range(6)])[None]
    starts, lengths = torch.zeros(1, 6), torch.full((1, 6), 10.0)
    scores = torch.tensor([[0.5, 0.5, 0.5, 0.4, 0.5, 0.5]])
    for conf in (0.0, 0.4, 0.45, 0.5, 0.6):
        for thres in (10.0, 20.0, 50.0, 60.0):  # lanes exactly 10, 20 or 50 px apart: not below
            want = lane_nms(scores.numpy(), starts.numpy(), lengths.numpy(), xs.numpy(), conf, thres, 4)[0].tolist()
            indices, valid = lane_nms_torch(scores, starts, lengths, xs, conf, thres, 4)
            assert indices[0][valid[0]].tolist() == want
    indices, valid = lane_nms_torch(scores, starts, lengths, xs, 0.4, 10.0, 4)
    assert indices[0][valid[0]].tolist() == [0, 1, 2, 4]  # 0.5 ties by index; 10 px apart is not below 10


def test_decoder_torch_backend_gives_the_numpy_lanes():
    from srlane.models.decode import build_decoder

    for cfg, conf, preds in decoder_cases():
        numpy_path = build_decoder(cfg, conf_threshold=conf)
        torch_path = build_decoder(cfg, conf_threshold=conf, nms_backend="torch")
        assert not numpy_path.on_device(preds) and torch_path.on_device(preds)  # auto: NumPy on the CPU
        for (a, va), (b, vb) in [(numpy_path.select(p), torch_path.select(p)) for p in (preds, preds[:1])]:
            assert torch.equal(va, vb) and torch.equal(a[va], b[vb])
        want, got = numpy_path(preds), torch_path(preds)
        assert [len(lanes) for lanes in want] == [len(lanes) for lanes in got]
        for lanes_a, lanes_b in zip(want, got):
            for x, y in zip(lanes_a, lanes_b):
                assert np.array_equal(x.points, y.points)
