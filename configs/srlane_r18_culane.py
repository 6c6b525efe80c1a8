"""SRLane R18 on CULane with the release's training hyperparameters (spec section 8)."""

_base_ = ["models/srlane_r18.py", "datasets/culane.py"]

optimizer = dict(type="AdamW", lr=6e-4, fused=True)  # fused: one kernel per step
scheduler = dict(type="warmup_cosine", warmup_iter=800)
total_iter = 44440  # about 20 epochs of the 88880 training images at batch 40
batch_size = 40
workers = 8
eval_ep = 3
save_interval = 1000
log_interval = 500
precision = "16-mixed"
strategy = "dp"
seed = 0
