"""A category head learns the kinds of the lanes of two synthetic road scenes (CPU, seconds).

The network is a random-init R18 whose only trainable part is the category head (its geometry
and the assignment stay those of the untrained network, so the matched proposals are fixed):
the head must tell apart the kinds given to the lanes of two images from the refine stage's
per-lane features. Measured (2-core AMD EPYC, 1 thread): the category loss falls from 2.64 to
0.003 in 150 steps (6.5 s); each of the 7 matched proposals of a known kind then decodes its
lane's kind, at probability >= 0.99.
"""
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from srlane.config import Config
from srlane.data.targets import build_target_encoder
from srlane.lane_kinds import KNOWN_CATEGORIES
from srlane.models import build_net
from srlane.models.assign import assign
from srlane.models.decode import lane_categories
from srlane.synthetic import render

ROOT = Path(__file__).resolve().parents[1]
IMG_W, IMG_H, ORI_W, ORI_H, CUT = 160, 64, 1640, 590, 270
KINDS = ((1, 8, 21, 5), (2, 7, 20, 12))  # the kinds given to the lanes of scene 0 and scene 1
STEPS = 150


def _cfg():
    cfg = Config.fromfile(ROOT / "configs" / "models" / "srlane_r18.py")
    cfg.model.backbone.pretrained = False
    cfg.model.num_lane_categories = 14
    cfg.update(img_w=IMG_W, img_h=IMG_H, ori_img_w=ORI_W, ori_img_h=ORI_H, cut_height=CUT)
    return cfg


def _batch(cfg):
    encoder = build_target_encoder(cfg)
    imgs, targets = [], []
    for index, kinds in enumerate(KINDS):
        bgr, label = render("culane", 0, "train", index)
        img = cv2.resize(cv2.cvtColor(bgr[CUT:], cv2.COLOR_BGR2RGB), (IMG_W, IMG_H), interpolation=cv2.INTER_CUBIC)
        scale = np.array([IMG_W / ORI_W, IMG_H / (ORI_H - CUT)])
        lanes = [(lane - [0.0, CUT]) * scale for lane in label.lanes]
        imgs.append(torch.from_numpy(img).permute(2, 0, 1))
        targets.append(encoder(lanes, [kinds[i % len(kinds)] for i in range(len(lanes))]))
    return {"img": torch.stack(imgs), "gt_lane": torch.stack([torch.from_numpy(t["gt_lane"]) for t in targets]),
            "gt_angle": [torch.stack([torch.from_numpy(t["gt_angle"][level]) for t in targets]) for level in range(3)],
            "gt_category": torch.stack([torch.from_numpy(t["gt_category"]) for t in targets])}


def test_category_head_learns_the_kinds_of_two_images():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _learn()
    finally:
        torch.set_num_threads(threads)


def _learn():
    torch.manual_seed(0)
    cfg = _cfg()
    net = build_net(cfg, pretrained=False).eval()  # BatchNorm on its running statistics
    net.rpn_head.train()  # the angle maps of all levels, as in training (the sketch head has no BatchNorm)
    batch = _batch(cfg)
    assert (batch["gt_category"] >= 0).sum() >= 6
    stage = net.roi_head.stage_heads[0]
    head = [*stage.category_modules.parameters(), *stage.category_layers.parameters()]
    for param in net.parameters():
        param.requires_grad_(False)
    for param in head:
        param.requires_grad_(True)
    with torch.no_grad():  # the frozen part runs once
        feats = net.neck(net.backbone(batch["img"].float() / 255))
        priors, thetas = net.rpn_head(feats)
    optimizer = torch.optim.Adam(head, lr=1e-2)
    begin = time.monotonic()
    losses = []
    for _ in range(STEPS):
        out = net.criterion(net.roi_head(feats, priors), thetas, batch["gt_lane"], batch["gt_angle"],
                            batch["gt_category"])
        losses.append(out["loss_status"]["category_loss"].item())
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
    with torch.no_grad():
        (predictions,) = net.roi_head(feats, priors)
    scaled = torch.cat((predictions[..., :2], predictions[..., 2:4] * 71, predictions[..., 4:76] * IMG_W), -1)
    valid = batch["gt_lane"][..., 1] == 1
    matched, gt_index = assign(scaled, batch["gt_lane"], valid, IMG_W)
    wanted = torch.gather(batch["gt_category"], 1, gt_index)[matched]
    known = wanted >= 0
    kinds, scores = lane_categories(predictions[..., 76:][matched].numpy())
    print(f"category loss {losses[0]:.3f} -> {losses[-1]:.4f} in {time.monotonic() - begin:.1f} s; "
          f"{int(known.sum())} matched proposals of a known kind, min probability {scores[known.numpy()].min():.3f}")
    assert losses[-1] < losses[0] / 50, losses
    assert kinds[known.numpy()].tolist() == [KNOWN_CATEGORIES[c] for c in wanted[known].tolist()]
    assert len(set(kinds[known.numpy()].tolist())) >= 5  # several kinds, not one guessed for all
