"""The decoder as tensor ops (srlane.models.graph_decode) and inside an ONNX graph (export_onnx with
a decoder): the same kept lanes and points as the Python decoder, ties included, at batch 1 and 3."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers.inference import decoder_cases, r18_config, random_predictions  # noqa: E402
from srlane.models.decode import build_decoder  # noqa: E402
from srlane.models.graph_decode import NO_POINT, GraphDecoder  # noqa: E402


def lanes_of(decoded):
    """Per image, each lane's proposal and points."""
    return [[(proposal, lane.points) for lane, proposal in image] for image in decoded]


def assert_same_lanes(got, want):
    assert [[p for p, _ in image] for image in got] == [[p for p, _ in image] for image in want]
    for ours, theirs in zip(got, want):
        for (_, a), (_, b) in zip(ours, theirs):
            assert np.array_equal(a, b)


def assert_well_formed(final, preds, top_k, score_tolerance=0.0):
    """The documented layout: a prefix mask; scores, start, length and xs as they describe
    (scores within ``score_tolerance`` of PyTorch's softmax)."""
    valid, xs = final.valid, final.xs
    batch = len(preds)
    assert valid.shape == final.scores.shape == final.start.shape == final.length.shape == (batch, top_k)
    assert xs.shape == (batch, top_k, 72) and torch.equal(final.predictions, preds)
    assert torch.equal(valid, valid.cummin(-1).values)
    scores = torch.softmax(preds[..., :2], -1)[..., 1]
    for b in range(batch):
        for k in range(top_k):
            has = (xs[b, k] != NO_POINT).nonzero().flatten()
            if not valid[b, k]:
                assert len(has) == 0 and final.scores[b, k] == 0 and final.start[b, k] == final.length[b, k] == 0
                continue
            assert len(has) >= 2 and abs(final.scores[b, k] - scores[b, final.proposals[b, k]]) <= score_tolerance
            assert (final.start[b, k], final.length[b, k]) == (has[0], has[-1] - has[0] + 1)
            assert torch.equal(xs[b, k, has], preds[b, final.proposals[b, k], 4 + has])


def categorised(preds, seed=0):
    """``preds`` with 14 category logits after the points (random, of order one)."""
    logits = torch.randn(*preds.shape[:2], 14, generator=torch.Generator().manual_seed(seed)) * 2
    return torch.cat([preds, logits], -1)


def kinds_of(decoded):
    return [[(proposal, lane.category, lane.category_score) for lane, proposal in image] for image in decoded]


def assert_same_kinds(got, want):
    """The same lanes with the same categories and scores (None without a head)."""
    assert got == want


@pytest.mark.parametrize("with_categories", [False, True])
def test_torch_module_keeps_the_python_decoders_lanes(with_categories):
    """Random, equal-score, equal-lane and tie-heavy outputs (ties at the score threshold and at
    the NMS threshold), 4 and 16 lanes, thresholds that keep none to all: the lanes of
    ``LaneDecoder`` (NumPy), in the same order with the same points; with 14 category logits
    after the points, also the same categories and scores as the NumPy and the torch decoder."""
    cases = lanes = 0
    for cfg, conf, preds in decoder_cases():
        preds = categorised(preds) if with_categories else preds
        decoder = build_decoder(cfg, conf_threshold=conf)
        graph = GraphDecoder(cfg.img_w, cfg.num_points, decoder.top_k)
        for batch in (preds[:1], preds[:3]):
            final = graph(batch, decoder.conf_threshold, decoder.nms_thres)
            assert_well_formed(final, batch, decoder.top_k)
            want = lanes_of(decoder.decode(batch))
            assert_same_lanes(lanes_of(decoder.decode(final)), want)
            kinds = kinds_of(decoder.decode(batch))
            assert_same_kinds(kinds_of(decoder.decode(final)), kinds)
            on_torch = build_decoder(cfg, conf_threshold=conf, nms_backend="torch")
            assert_same_kinds(kinds_of(on_torch.decode(batch)), kinds)
            assert all((k[1] != 0) == with_categories for image in kinds for k in image)
            cases += 1
            lanes += sum(map(len, want))
    assert cases == 30 and lanes > 100


def test_a_proposal_of_one_point_still_counts_in_nms_and_top_k():
    """Spec 7 step 6: the best proposal, with a single point, suppresses its neighbour and takes a
    place of top_k, but gives no lane; the lanes after it move up (valid stays a prefix)."""
    cfg = r18_config()
    preds = random_predictions(1)
    preds[..., :2] = torch.tensor([0.0, -5.0])  # every score low ...
    preds[0, [3, 7, 9, 11], 1] = torch.tensor([9.0, 8.0, 7.0, 6.0])  # ... but these four
    preds[0, [3, 7, 9, 11], 2:4] = torch.tensor([0.0, 1.0])
    preds[0, [3, 7, 9, 11], 4:] = torch.tensor([0.1, 0.1001, 0.5, 0.9])[:, None]  # 64 px apart
    preds[0, 3, 3] = 1 / 71  # proposal 3: one row
    decoder = build_decoder(cfg)
    final = GraphDecoder(cfg.img_w, cfg.num_points, 4)(preds, decoder.conf_threshold, decoder.nms_thres)
    assert final.valid.tolist() == [[True, True, False, False]] and final.proposals[0, :2].tolist() == [9, 11]
    assert final.xs[0, 2:].eq(NO_POINT).all() and final.start[0, 2:].eq(0).all()
    assert [proposal for _, proposal in decoder.decode(preds)[0]] == [9, 11]
    assert decoder.select(preds)[0].tolist() == [[3, 9, 11, 0]]  # 7 suppressed by 3


@pytest.fixture(scope="module")
def onnx_decoders(tmp_path_factory):
    """An ONNX file per decoder geometry, exported by ``export_onnx`` behind a stand-in network
    whose output is its input's first channel: the graph decodes raw outputs the test chooses."""
    pytest.importorskip("onnxruntime")
    from srlane.models.export import OnnxModel, export_onnx

    class RawOutputs(nn.Module):
        def forward(self, img):
            return img[:, 0]

    folder, files = tmp_path_factory.mktemp("graph_decode"), {}

    def model_for(cfg):
        decoder = build_decoder(cfg)
        key = (decoder.img_w, decoder.top_k, decoder.nms_thres)
        if key not in files:
            files[key] = folder / f"decoder{len(files)}.onnx"
            export_onnx(RawOutputs(), files[key], 40, 76, decoder=decoder)
        return OnnxModel(files[key], providers=["CPUExecutionProvider"])

    return model_for


def as_image(preds):
    """Raw outputs as the stand-in network's (B, 3, 40, 76) input."""
    return preds[:, None].expand(-1, 3, -1, -1).contiguous()


def test_onnx_graph_keeps_the_python_decoders_lanes(onnx_decoders):
    """The same cases through onnxruntime, each with its thresholds fed to the graph."""
    cases = 0
    for cfg, conf, preds in decoder_cases():
        decoder = build_decoder(cfg, conf_threshold=conf)
        model = onnx_decoders(cfg)
        model.use_thresholds(decoder.conf_threshold, decoder.nms_thres)
        for batch in (preds[:1], preds[:3]):
            final = model(as_image(batch))
            assert_well_formed(final, batch, decoder.top_k, score_tolerance=1e-6)  # onnxruntime's exp
            assert_same_lanes(lanes_of(decoder.decode(final)), lanes_of(decoder.decode(batch)))
            cases += 1
    assert cases == 30


def test_thresholds_are_graph_inputs_with_the_configs_defaults(onnx_decoders):
    """The file lists ``conf_threshold`` and ``nms_thres`` as inputs whose initializers hold the
    config's values: run without them it decodes as the config's decoder; fed other values, as
    the decoder built with those."""
    import onnx

    cfg = r18_config()
    model = onnx_decoders(cfg)
    graph = onnx.load(model.path).graph
    assert [i.name for i in graph.input] == ["img", "conf_threshold", "nms_thres"]
    defaults = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    assert defaults["conf_threshold"] == np.float32(0.4) and defaults["nms_thres"] == np.float32(50)
    assert all(defaults[name].shape == () and defaults[name].dtype == np.float32
               for name in ("conf_threshold", "nms_thres"))
    assert [o.name for o in graph.output] == ["valid", "scores", "xs", "start", "length", "proposals", "category",
                                              "category_score", "predictions"]
    assert model.decoder == {"top_k": 4, "num_points": 72, "img_w": 160, "conf_threshold": 0.4, "nms_thres": 50.0}
    preds = random_predictions(3)
    img = as_image(preds).numpy()
    outputs = [o.name for o in model.session.get_outputs()]

    def lanes_fed(**feeds):
        values = model.session.run(None, {"img": img, **{k: np.array(v, np.float32) for k, v in feeds.items()}})
        final = dict(zip(outputs, values))
        return [final["proposals"][b][final["valid"][b]].tolist() for b in range(3)]

    def lanes_decoded(**overrides):
        return [[p for _, p in image] for image in build_decoder(cfg, **overrides).decode(preds)]

    assert lanes_fed() == lanes_decoded()
    for conf, nms in ((0.9, 50.0), (0.4, 5.0), (0.4, 400.0), (0.9, 5.0)):
        want = lanes_decoded(conf_threshold=conf, nms_thres=nms)
        assert lanes_fed(conf_threshold=conf, nms_thres=nms) == want
        assert want != lanes_decoded()  # each pair changes the lanes
    assert lanes_fed(conf_threshold=0.9) == lanes_decoded(conf_threshold=0.9)  # the other one stays at 50
    assert lanes_fed(nms_thres=5.0) == lanes_decoded(nms_thres=5.0) != lanes_decoded(conf_threshold=0.9, nms_thres=5.0)


def test_crafted_categories_decode_as_built_in_numpy_torch_and_the_graph():
    """crafted proposal i of image b is head class (b + i) % 14 at probability 2 / 15."""
    from srlane.inference.crafted import crafted_predictions
    from srlane.lane_kinds import KNOWN_CATEGORIES

    cfg = r18_config()
    preds = crafted_predictions(3, 40, 72, 4, num_categories=14)
    decoder = build_decoder(cfg, nms_thres=10.0)  # the crafted lanes are 42 px apart at 160 wide
    for backend in ("numpy", "torch"):
        got = kinds_of(build_decoder(cfg, nms_thres=10.0, nms_backend=backend).decode(preds))
        assert [[(p, c) for p, c, _ in image] for image in got] == [
            [(i, KNOWN_CATEGORIES[(b + i) % 14]) for i in range(4)] for b in range(3)]
        assert all(abs(s - 2 / 15) < 1e-6 for image in got for _, _, s in image)
    final = GraphDecoder(cfg.img_w, cfg.num_points, decoder.top_k)(preds, decoder.conf_threshold, decoder.nms_thres)
    assert final.category.tolist() == [[KNOWN_CATEGORIES[(b + i) % 14] for i in range(4)] for b in range(3)]
    assert_same_kinds(kinds_of(decoder.decode(final)), kinds_of(decoder.decode(preds)))
    # the same geometry without the head: the same lanes, category 0 and no score
    plain = decoder.decode(preds[..., :76])
    assert_same_lanes(lanes_of(plain), lanes_of(decoder.decode(preds)))
    assert all(lane.category == 0 and lane.category_score is None for image in plain for lane, _ in image)
    plain_final = GraphDecoder(cfg.img_w, cfg.num_points, 4)(preds[..., :76], 0.4, decoder.nms_thres)
    assert not plain_final.category.any() and not plain_final.category_score.any()
    assert all(lane.category_score is None for image in decoder.decode(plain_final) for lane, _ in image)
