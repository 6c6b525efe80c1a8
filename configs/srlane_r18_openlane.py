"""SRLane R18 on OpenLane's 2D lanes (the release has no OpenLane recipe).

The CULane recipe scaled to OpenLane's 157k training frames (lane3d_1000): 800x320 input of the
bottom 800 rows, up to 16 lanes, about 20 epochs at batch 40. Validation reports the official
2D F-score, which counts a lane only with the right category: a network without a category head
(``model.num_lane_categories = 0``) predicts category 0 and scores with ``--set
dataset.category_aware=False`` (the tool's ``-k``). Score result files with
``tools/evaluate.py openlane`` (docs/openlane.md).
"""

_base_ = ["models/srlane_r18.py", "datasets/openlane.py", "schedules/release_r18.py"]

total_iter = 80000  # about 20 epochs of the 157k training frames at batch 40
