"""Quickstart: SRLane R18 from scratch on the synthetic road set, sized for a 2-core CPU.

The set (1000 training, 300 test images, CULane layout) is generated under datasets/synthetic
on first use. The recipe (configs/schedules/synthetic_cpu.py): small input (384x160), batch 8,
800 iterations, no ImageNet weights. A training step takes about 0.8 s on 2 quiet cores, so
800 iterations take about 11 minutes.
"""

_base_ = ["models/srlane_r18.py", "datasets/synthetic.py", "schedules/synthetic_cpu.py"]
