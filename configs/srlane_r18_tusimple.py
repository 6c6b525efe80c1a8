"""SRLane R18 on TuSimple.

The release ships no TuSimple training keys (its TuSimple experiment file only sets the data
paths), so these follow the CULane recipe scaled to TuSimple's 3626 train+val images: about 70
epochs at batch 40, as CLRNet trains TuSimple.
"""

_base_ = ["models/srlane_r18.py", "datasets/tusimple.py"]

max_lanes = 5
optimizer = dict(type="AdamW", lr=6e-4, fused=True)  # fused: one kernel per step
scheduler = dict(type="warmup_cosine", warmup_iter=800)
total_iter = 6300  # 70 epochs of 90 iterations
batch_size = 40
workers = 8
eval_ep = 10
save_interval = 1000
log_interval = 100
precision = "16-mixed"
strategy = "dp"
seed = 0
