"""SRLane R18 on TuSimple.

The release ships no TuSimple training keys (its TuSimple experiment file only sets the data
paths), so these follow the CULane recipe scaled to TuSimple's 3626 train+val images: about 70
epochs at batch 40, as CLRNet trains TuSimple.
"""

_base_ = ["models/srlane_r18.py", "datasets/tusimple.py", "schedules/release_r18.py"]

max_lanes = 5
total_iter = 6300  # 70 epochs of 90 iterations
eval_ep = 10
log_interval = 100
