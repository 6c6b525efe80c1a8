"""Overfitting one synthetic batch: the loss falls and decoding recovers the drawn lanes."""
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from srlane.config import Config
from srlane.data.targets import encode_lanes
from srlane.models import build_net
from srlane.models.decode import LaneDecoder

ROOT = Path(__file__).resolve().parents[1]
IMG_W, IMG_H = 160, 64
LANES = [
    [[(35, 64), (75, 10)], [(125, 64), (92, 10)]],
    [[(15, 64), (65, 12)], [(95, 64), (88, 10)], [(150, 64), (105, 15)]],
]


def _cfg():
    cfg = Config.fromfile(ROOT / "configs" / "models" / "srlane_r18.py")
    cfg.model.backbone.pretrained = False
    cfg.update(img_w=IMG_W, img_h=IMG_H, ori_img_w=IMG_W, ori_img_h=IMG_H, cut_height=0)
    return cfg


def _polyline(p0, p1, n=12):
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) * np.array(p0, float) + t * np.array(p1, float)


def _batch(cfg):
    imgs, gt_lane, gt_angle = [], [], [[], [], []]
    for lanes in LANES:
        img = np.zeros((IMG_H, IMG_W, 3), np.uint8)
        pts = [_polyline(*lane) for lane in lanes]
        for p in pts:
            cv2.polylines(img, [np.round(p).astype(np.int32)], False, (255, 255, 255), 2)
        imgs.append(torch.from_numpy(img).permute(2, 0, 1).float() / 255)
        target = encode_lanes(pts, cfg)
        gt_lane.append(torch.from_numpy(target["gt_lane"]))
        for level in range(3):
            gt_angle[level].append(torch.as_tensor(target["gt_angle"][level]))
    return {"img": torch.stack(imgs), "gt_lane": torch.stack(gt_lane),
            "gt_angle": [torch.stack(m) for m in gt_angle]}


def _raster(points, shape, thickness=7):
    mask = np.zeros(shape, np.uint8)
    cv2.polylines(mask, [np.round(points).astype(np.int32)], False, 1, thickness)
    return mask.astype(bool)


def _calibrate_batch_norm(net, batch):
    """Running statistics := this batch's statistics, so eval mode sees what training saw."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    with torch.no_grad():
        net(batch)


def test_overfit_one_batch():
    torch.manual_seed(0)
    cfg = _cfg()
    net = build_net(cfg)
    batch = _batch(cfg)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    net.train()
    first = None
    begin = time.monotonic()
    for step in range(100):
        loss = net(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = loss.item() if first is None else first
    last = net(batch)["loss"].item()
    assert last <= 0.2 * first, (first, last)
    _calibrate_batch_norm(net, batch)
    net.eval()
    with torch.no_grad():
        lanes = LaneDecoder(cfg)(net(batch["img"]))
    print(f"overfit: loss {first:.3f} -> {last:.3f} in {time.monotonic() - begin:.1f} s")
    for image_lanes, truth in zip(lanes, LANES):
        predicted = [_raster(lane.to_culane(IMG_W, IMG_H, y_start=0, y_step=1), (IMG_H, IMG_W))
                     for lane in image_lanes]
        for lane in truth:
            gt = _raster(_polyline(*lane), (IMG_H, IMG_W))
            best = max((p & gt).sum() / (p | gt).sum() for p in predicted) if predicted else 0.0
            assert best > 0.5, (lane, best)
