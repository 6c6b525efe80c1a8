"""SRLane R18 on CULane with the release's training hyperparameters (spec section 8)."""

_base_ = ["models/srlane_r18.py", "datasets/culane.py", "schedules/release_r18.py"]
