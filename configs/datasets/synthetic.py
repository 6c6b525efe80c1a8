"""The synthetic road set, written in the CULane layout under datasets/synthetic on first use."""

_base_ = ["culane.py"]

dataset = dict(
    data_root="datasets/synthetic",
    filter_duplicates=False,
    generate=dict(train=1000, test=300, seed=0),  # generated when data_root is missing
)
