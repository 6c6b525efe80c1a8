"""OpenLane in its official layout under datasets/OpenLane (see docs/openlane.md).

CurveLanes' dataset settings (augmentation without JPEG compression, up to 16 lanes, its test
parameters) on OpenLane's frames. Every frame is 1920x1280; the crop keeps the bottom 800 rows
(lanes start below the horizon, about row 550 in Waymo's front camera): 1920x800 is the 800x320
input's aspect ratio. Validation scores the official 2D F-score (width 30, IoU > 0.3, a
detection matches only an annotation of its category; ``category_aware=False``: the tool's
``-k``). A horizontal flip (``augmentation.flip``) mirrors a lane's kind too (left-dashed
right-solid becomes left-solid right-dashed, a left curb a right one): category targets must
swap 5/6, 11/12 and 20/21 where a flipped image trains a category head.
"""

_base_ = ["curvelanes.py"]

dataset = dict(
    type="openlane",
    data_root="datasets/OpenLane",
    lane_set="lane3d_1000",  # or "lane3d_300", the 300-segment subset
    category_aware=True,
    train_split="training",  # every label under lane3d_1000/training
    val_split="validation",
)
ori_img_w = 1920
ori_img_h = 1280
cut_height = 480
cut_heights = None  # one image size
