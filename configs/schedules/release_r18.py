"""The release's R18 training recipe on CULane (spec section 8): AdamW, warmup-cosine, batch 40,
16-mixed, DataParallel; experiment files on other data set their own total_iter."""

optimizer = dict(type="AdamW", lr=6e-4, fused=True)  # fused: one kernel per step
scheduler = dict(type="warmup_cosine", warmup_iter=800)
total_iter = 44440  # about 20 epochs of CULane's 88880 training images at batch 40
batch_size = 40
workers = 8
eval_ep = 3
save_interval = 1000
log_interval = 500
precision = "16-mixed"
strategy = "dp"
seed = 0
