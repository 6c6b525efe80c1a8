"""Detector plumbing: autocast, wrappers, batched decoding equals per-image decoding."""
import numpy as np
import torch

from helpers.inference import ROOT, r18_config, random_predictions
from srlane.inference.crafted import crafted_predictions
from srlane.models import build_net
from srlane.models.decode import build_decoder


def test_autocast_bf16_cpu_and_data_parallel():
    torch.manual_seed(0)
    net = build_net(r18_config(), pretrained=False).eval()
    img = torch.rand(2, 3, 64, 160)
    with torch.no_grad():
        ref = net(img)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(img)
        wrapped = torch.nn.DataParallel(net)(img)
    assert low.shape == ref.shape == (2, 40, 76)
    assert torch.isfinite(low).all()
    assert (low.float()[..., 4:] - ref[..., 4:]).abs().max() < 0.05
    assert torch.equal(wrapped, ref)


def test_batched_decoding_equals_single():
    preds = random_predictions()
    decoder = build_decoder(r18_config())
    batched = decoder(preds)
    assert sum(len(lanes) for lanes in batched) > 8
    for i in range(8):
        single = decoder(preds[i:i + 1])[0]
        assert [lane.points.tolist() for lane in single] == [lane.points.tolist() for lane in batched[i]]


def test_no_module_attribute_access():
    for path in (ROOT / "srlane" / "models").glob("*.py"):
        assert "net.module." not in path.read_text(), path


def test_writers(tmp_path):
    import json

    import numpy as np

    from srlane.lanes import Lane, tusimple_json_line, write_culane_lines

    ys = np.linspace(0.5, 1.0, 10)
    lane = Lane(np.stack([np.full_like(ys, 0.5), ys], axis=1))
    short = Lane(np.array([[0.5, 0.99], [0.5, 0.995]]))  # one CULane sample only: dropped
    path = tmp_path / "a" / "b.lines.txt"
    write_culane_lines(path, [lane, short], 1640, 590)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("820.00000 582.00000 820.00000 574.00000")
    assert lines[0].endswith("820.00000 302.00000 820.00000 294.00000")  # rows 270 + 8k inside y >= 0.49
    write_culane_lines(path, [lane], 1640, 590, y_start=300)  # rows 300, 308, ..., 588 (e.g. cut_height 300)
    values = [float(v) for v in path.read_text().split()]
    assert values[1::2] == list(range(588, 299, -8)) and set(values[0::2]) == {820.0}
    write_culane_lines(tmp_path / "empty.lines.txt", [], 1640, 590)
    assert (tmp_path / "empty.lines.txt").read_text() == ""
    record = json.loads(tusimple_json_line("clips/x/20.jpg", [lane], [160, 400, 710], 5.0, 1280, 720))
    assert record == {"raw_file": "clips/x/20.jpg", "lanes": [[-2, 640, 640]], "run_time": 5.0}


def test_sixteen_lanes_decode_train_and_stay_finite():
    """With max_lanes and nms_topk 16 (CurveLanes) the decoder keeps up to 16 lanes, and a
    training step on images with 10 lanes gives a finite loss and gradients."""
    cfg = r18_config(w=320, h=128)
    cfg.max_lanes, cfg.test_parameters.nms_topk, cfg.test_parameters.nms_thres = 16, 16, 5.0
    preds = crafted_predictions(2, 40, 72, 12)
    assert [len(lanes) for lanes in build_decoder(cfg)(preds)] == [12, 12]
    cfg.test_parameters.nms_topk = 4
    assert [len(lanes) for lanes in build_decoder(cfg)(preds)] == [4, 4]
    from srlane.data.targets import encode_lanes

    cfg.test_parameters.nms_topk = 16
    torch.manual_seed(0)
    net = build_net(cfg, pretrained=False).train()
    lanes = [np.stack([np.full(30, 15.0 + 29.0 * k), np.linspace(127.0, 20.0, 30)], 1) for k in range(10)]
    targets = [encode_lanes(lanes, cfg) for _ in range(2)]
    batch = {"img": torch.rand(2, 3, 128, 320),
             "gt_lane": torch.stack([torch.from_numpy(t["gt_lane"]) for t in targets]),
             "gt_angle": [torch.stack([torch.as_tensor(t["gt_angle"][level]) for t in targets]) for level in range(3)]}
    assert batch["gt_lane"].shape == (2, 16, 76) and int((batch["gt_lane"][..., 1] == 1).sum()) == 20
    out = net(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
