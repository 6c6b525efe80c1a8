"""Quickstart: SRLane R18 from scratch on the synthetic road set, sized for a 2-core CPU.

The set is generated under datasets/synthetic on first use. Small input (384x160), batch 8,
no ImageNet weights (nothing is downloaded), validation every 2 epochs and at the end.
Sizing (estimated from forward/backward timings on 2 busy cores): a training step at batch 8 takes about 2.5 s and a
validation of the 300 test images about 70 s, so 300 iterations (2.4 epochs of 125) with two
validations take about 15 minutes.
"""

_base_ = ["models/srlane_r18.py", "datasets/synthetic.py"]

img_w = 384
img_h = 160
model = dict(backbone=dict(pretrained=False))
optimizer = dict(type="AdamW", lr=1e-3)
scheduler = dict(type="warmup_cosine", warmup_iter=50)
total_iter = 300
batch_size = 8
workers = 2
eval_ep = 2
save_interval = 100
log_interval = 10
precision = "32-true"
strategy = "ddp"
seed = 0
