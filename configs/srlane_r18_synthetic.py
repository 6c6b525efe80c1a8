"""Quickstart: SRLane R18 from scratch on the synthetic road set, sized for a 2-core CPU.

The set is generated under datasets/synthetic on first use. Small input (384x160), batch 8,
no ImageNet weights (nothing is downloaded), validation every 2 epochs and at the end.
"""

_base_ = ["models/srlane_r18.py", "datasets/synthetic.py"]

img_w = 384
img_h = 160
model = dict(backbone=dict(pretrained=False))
optimizer = dict(type="AdamW", lr=1e-3)
scheduler = dict(type="warmup_cosine", warmup_iter=100)
total_iter = 1500  # about 12 epochs of the 1000 generated images at batch 8
batch_size = 8
workers = 2
eval_ep = 4
save_interval = 250
log_interval = 50
precision = "32-true"
strategy = "ddp"
seed = 0
