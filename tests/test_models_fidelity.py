"""SRLane R18 against the release's fidelity vectors (seeded weights and inputs)."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from srlane.config import Config
from srlane.models import build_net, load_state_dict_compat
from srlane.lanes import culane_lines
from srlane.models.decode import build_decoder

ROOT = Path(__file__).resolve().parents[1]
FIDELITY = Path(__file__).parent / "fixtures" / "fidelity"
TSV = Path(__file__).parent / "fixtures" / "state_dict" / "srlane_r18_state_dict.tsv"
TOL = 1e-4


def _seeded_module():
    spec = importlib.util.spec_from_file_location("seeded_weights", FIDELITY / "seeded_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sw = _seeded_module()


def _cfg():
    cfg = Config.fromfile(ROOT / "configs" / "models" / "srlane_r18.py")
    cfg.model.backbone.pretrained = False
    cfg.update(ori_img_w=1640, ori_img_h=590, cut_height=270)
    return cfg


@pytest.fixture(scope="module")
def seeded():
    torch.manual_seed(0)
    net = build_net(_cfg())
    entries = sw.read_entries(TSV)
    state = sw.seeded_state_dict(entries, net.state_dict())
    net.load_state_dict(state, strict=True)
    return net, state


def test_state_dict_matches_release_listing():
    net = build_net(_cfg())
    ours = [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in net.state_dict().items()]
    release = [(name, shape, dtype) for name, shape, dtype, _ in sw.read_entries(TSV)]
    assert ours == release
    buffers = np.load(FIDELITY / "buffers.npz")
    for name in buffers.files:
        np.testing.assert_array_equal(net.state_dict()[name].numpy(), buffers[name])


def test_eval_outputs(seeded):
    net, _ = seeded
    net.eval()
    x = sw.seeded_input(sw.EVAL_INPUT_SEED)
    with torch.no_grad():
        feats = net.neck(net.backbone(x))
        priors, _ = net.rpn_head(feats)
        out = net(x)
        out_dict = net({"img": x, "meta": [{}, {}]})
    assert out.shape == (2, 40, 76)
    np.testing.assert_allclose(priors.numpy(), np.load(FIDELITY / "eval_priors.npy"), atol=TOL, rtol=0)
    np.testing.assert_allclose(out.numpy(), np.load(FIDELITY / "eval_predictions.npy"), atol=TOL, rtol=0)
    assert torch.equal(out, out_dict)


@pytest.mark.parametrize("key", ["conf_threshold_0.4", "conf_threshold_0.0", "conf_threshold_0.5935",
                                 "conf_threshold_0.7"])
def test_decoding(key):
    reference = json.loads((FIDELITY / "eval_decoded.json").read_text())[key]
    predictions = torch.from_numpy(np.load(FIDELITY / "eval_predictions.npy"))
    decoder = build_decoder(_cfg(), conf_threshold=float(key.rsplit("_", 1)[1]))
    indices, valid = decoder.select(predictions)
    lanes = decoder(predictions)
    for i, image in enumerate(reference):
        assert indices[i][valid[i]].tolist() == image["kept_prior_indices"]
        kept = predictions[i][indices[i][valid[i]]].clone()
        kept[:, 3] = torch.round(kept[:, 3] * 71)
        np.testing.assert_allclose(kept.numpy().reshape(-1, 76),
                                   np.array(image["kept_predictions"]).reshape(-1, 76), atol=TOL)
        assert len(lanes[i]) == image["num_lanes"]
        for lane, ref in zip(lanes[i], image["lanes"]):
            np.testing.assert_allclose(lane.points, np.array(ref["points"]), atol=TOL, rtol=0)
        assert "\n".join(culane_lines(lanes[i], 1640, 590)) == image["culane_prediction_string"]


def _train_batch():
    gt_lane = np.stack([np.load(FIDELITY / f"gt_lane_{i}.npy") for i in range(2)])
    gt_angle = [torch.from_numpy(np.stack([np.load(FIDELITY / f"gt_angle_{i}_{lvl}.npy") for i in range(2)]))
                for lvl in range(3)]
    return {"img": sw.seeded_input(sw.TRAIN_INPUT_SEED), "gt_lane": torch.from_numpy(gt_lane), "gt_angle": gt_angle}


def test_training_losses(seeded):
    net, state = seeded
    net.load_state_dict(state)
    net.train()
    out = net(_train_batch())
    reference = json.loads((FIDELITY / "train_losses.json").read_text())["weighted"]
    status = {k: float(v) for k, v in out["loss_status"].items()}
    assert set(status) == {"cls_loss", "l1_loss", "iou_loss", "angle_loss"}
    for name, value in status.items():
        assert value == pytest.approx(reference[name], abs=TOL), name
    assert float(out["loss"].detach()) == pytest.approx(reference["loss"], abs=TOL)
    out["loss"].backward()
    assert net.roi_head.stage_heads[0].shuffle_fc.weight.grad is None
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    net.load_state_dict(state)


def test_criterion_on_release_intermediates(seeded):
    """Given the release's own train predictions, the losses and matches are exact."""
    net, _ = seeded
    inter = np.load(FIDELITY / "train_intermediates.npz")
    batch = _train_batch()
    preds = torch.from_numpy(inter["predictions"])
    angles = [torch.from_numpy(inter[f"pred_angle_{lvl}"]) for lvl in range(3)]
    out = net.criterion([preds], angles, batch["gt_lane"], batch["gt_angle"])
    reference = json.loads((FIDELITY / "train_losses.json").read_text())["weighted"]
    for name, value in out["loss_status"].items():
        assert float(value) == pytest.approx(reference[name], abs=1e-6), name


def test_release_checkpoint_loading(seeded, tmp_path):
    _, state = seeded
    for prefix in ("", "module."):
        path = tmp_path / f"ckpt{prefix}.pth"
        torch.save({"net": {prefix + k: v for k, v in state.items()}}, path)
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        for target in (build_net(_cfg()), torch.nn.DataParallel(build_net(_cfg()))):
            load_state_dict_compat(target, loaded, strict=True)
            got = target.state_dict()
            key = next(k for k in got if k.endswith("gather_fc.weight"))
            assert torch.equal(got[key], state["roi_head.stage_heads.0.gather_fc.weight"])
    with pytest.raises(RuntimeError):
        load_state_dict_compat(build_net(_cfg()), {"net": {"bogus.weight": torch.zeros(1)}}, strict=True)


def test_category_head_adds_exactly_its_keys_and_the_released_state_loads_without_it():
    cfg = _cfg()
    released = sw.read_entries(TSV)
    state = sw.seeded_state_dict(released, build_net(cfg).state_dict())
    build_net(cfg).load_state_dict(state, strict=True)  # head off: the release's keys, strictly
    cfg.model.num_lane_categories = 14
    net = build_net(cfg)
    extra = [k for k in net.state_dict() if k not in {name for name, *_ in released}]
    head = [f"roi_head.stage_heads.0.{m}.{p}" for m in ("category_modules.0", "category_layers")
            for p in ("weight", "bias")]
    assert extra == head
    assert [tuple(net.state_dict()[k].shape) for k in head] == [(192, 192), (192,), (14, 192), (14,)]
    result = net.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == sorted(head) and result.unexpected_keys == []
    net.eval()
    with torch.no_grad():
        out = net(sw.seeded_input(sw.EVAL_INPUT_SEED))
    assert out.shape == (2, 40, 76 + 14)
    # the geometry columns are the released network's (its predictions' fidelity vectors)
    np.testing.assert_allclose(out[..., :76].numpy(), np.load(FIDELITY / "eval_predictions.npy"), atol=TOL, rtol=0)
