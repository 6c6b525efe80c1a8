"""The synthetic quickstarts' recipe, sized for a 2-core CPU: SRLane R18 from scratch (no ImageNet
weights, nothing is downloaded) at 384x160, batch 8, 800 iterations.

Two choices differ from the CULane recipe, both for training from scratch in minutes:
- a long warmup (half the run): the sketch head's angle maps settle before the refine head's
  regression commits to proposals;
- ``iou_pred_width = "target"``: the line-IoU loss gives every predicted row the target's band,
  so noisy rows keep a gradient (the release's band has a zero-gradient zone there; see
  srlane.models.losses.line_iou).
"""

img_w = 384
img_h = 160
model = dict(backbone=dict(pretrained=False))
iou_pred_width = "target"
optimizer = dict(type="AdamW", lr=1e-3, fused=True)  # fused: one kernel per step
scheduler = dict(type="warmup_cosine", warmup_iter=400)
total_iter = 800
batch_size = 8
workers = 2
eval_ep = 2
save_interval = 200
log_interval = 50
precision = "32-true"
strategy = "ddp"
seed = 0
