"""Overfitting one batch of two synthetic road scenes: the loss falls by a large factor and
decoding brings the annotated lanes back (CULane IoU of 30-pixel-wide lines on the original
1640x590 canvas, where one input pixel at 160x64 is ten original pixels).

The run is chaotic: its float trajectory differs between CPU kinds (AVX2, AVX-512) and thread
counts, and at 150 steps that decided whether 2 or 4 lanes of the first scene came back. So the
test trains 300 steps and asserts what held, with room, in every run measured (torch seeds 0-6
standing in for other CPU kinds; Intel Xeon AVX-512, 1 and 2 threads; lr 3e-4 and 1.5e-4):
- loss falls at least 20x: measured 58x to 280x;
- each image decodes as many lanes as it has, at most one more: measured always exactly;
- at least 6 of the 7 lanes have IoU > 0.5: the second-worst lane's IoU measured >= 0.55;
- every annotated lane has a prediction with IoU > 0.1: measured minimum 0.31 (always the same
  lane, the first of scene 0, is the weak one; 0 when a lane is missed).

Choices that make this work in a few hundred steps (found while checking the training path):
- ``iou_pred_width="target"``: with the release's line IoU, a prediction whose rows are noisier
  than the target gets a band wider than the target's and those rows get exactly zero
  gradient, so the IoU loss stalls near 0.75 while the other losses vanish.
- lr 3e-4 with a short warmup: at 1e-3 one high-scoring proposal becomes the cheapest match
  for several lanes, the lanes it is not given to get no proposal and no loss, and decoding
  finds one or two lanes per image.
- BatchNorm trains on batch statistics; the running statistics are then set to this batch's
  (BatchNorm frozen at its initial statistics leaves the scratch ResNet unnormalised and the
  loss oscillates).
"""
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from srlane.config import Config
from srlane.synthetic import render
from srlane.data.targets import encode_lanes
from srlane.models import build_net
from srlane.models.decode import build_decoder

ROOT = Path(__file__).resolve().parents[1]
IMG_W, IMG_H = 160, 64
ORI_W, ORI_H, CUT = 1640, 590, 270
SCENES = (0, 1)
STEPS, WARMUP, LR = 300, 20, 3e-4


def _cfg():
    cfg = Config.fromfile(ROOT / "configs" / "models" / "srlane_r18.py")
    cfg.model.backbone.pretrained = False
    cfg.update(img_w=IMG_W, img_h=IMG_H, ori_img_w=ORI_W, ori_img_h=ORI_H, cut_height=CUT,
               iou_pred_width="target")
    # nms_thres is in input pixels: 50 at 800 wide; keep it the same fraction of the width
    cfg.test_parameters.nms_thres = 50.0 * IMG_W / 800
    return cfg


def _batch(cfg):
    """Rendered scenes cropped and resized as LaneDataset does, their targets, and the
    annotated lanes in original pixels."""
    imgs, gt_lane, gt_angle, truth = [], [], [[], [], []], []
    for index in SCENES:
        bgr, label = render("culane", 0, "train", index)
        rgb = cv2.cvtColor(bgr[CUT:], cv2.COLOR_BGR2RGB)
        img = cv2.resize(rgb, (IMG_W, IMG_H), interpolation=cv2.INTER_CUBIC)
        scale = np.array([IMG_W / ORI_W, IMG_H / (ORI_H - CUT)])
        lanes = [(lane - [0.0, CUT]) * scale for lane in label.lanes]
        target = encode_lanes(lanes, cfg)
        imgs.append(torch.from_numpy(img).permute(2, 0, 1).float() / 255)
        gt_lane.append(torch.from_numpy(target["gt_lane"]))
        for level in range(3):
            gt_angle[level].append(torch.as_tensor(target["gt_angle"][level]))
        truth.append(label.lanes)
    batch = {"img": torch.stack(imgs), "gt_lane": torch.stack(gt_lane),
             "gt_angle": [torch.stack(m) for m in gt_angle]}
    return batch, truth


def _raster(points: np.ndarray) -> np.ndarray:
    mask = np.zeros((ORI_H, ORI_W), np.uint8)
    cv2.polylines(mask, [np.round(points).astype(np.int32)], False, 1, 30)
    return mask.astype(bool)


def _calibrate_batch_norm(net, batch):
    """Running statistics := this batch's statistics, so eval mode sees what training saw."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        net(batch)


def test_overfit_one_batch():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on 2 shared cores, 2 OpenMP threads run several times slower
    try:
        _overfit()
    finally:
        torch.set_num_threads(threads)


def _overfit():
    torch.manual_seed(0)
    cfg = _cfg()
    net = build_net(cfg).train()
    batch, truth = _batch(cfg)
    assert all(len(lanes) >= 3 for lanes in truth)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=LR, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: min(1.0, (it + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * it / STEPS)))
    begin = time.monotonic()
    first = None
    for _ in range(STEPS):
        loss = net(batch)["loss"]
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    _calibrate_batch_norm(net, batch)
    with torch.no_grad():
        out = net(batch)
    last = out["loss"].item()
    print(f"overfit: loss {first:.3f} -> {last:.3f} ({ {k: round(v.item(), 3) for k, v in out['loss_status'].items()} })"
          f" in {time.monotonic() - begin:.1f} s")
    assert last <= first / 20, (first, last)
    net.eval()
    with torch.no_grad():
        decoded = build_decoder(cfg)(net(batch["img"]))
    ious = []
    for lanes, annotated in zip(decoded, truth):
        predicted = [_raster(lane.pixel_points(ORI_W, ORI_H, 270)) for lane in lanes]
        image_ious = [max(((p & gt).sum() / (p | gt).sum() for p in predicted), default=0.0)
                      for gt in map(_raster, annotated)]
        print(f"  {len(predicted)} lanes decoded, IoU of each annotated lane: {np.round(image_ious, 3)}")
        assert len(annotated) <= len(predicted) <= len(annotated) + 1
        ious += image_ious
    assert min(ious) > 0.1, ious
    assert sum(iou > 0.5 for iou in ious) >= len(ious) - 1, ious
