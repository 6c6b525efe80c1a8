"""OpenLane in its official layout under datasets/OpenLane (see docs/openlane.md).

Every frame is 1920x1280. The crop keeps the bottom 800 rows (lanes start below the horizon,
about row 550 in Waymo's front camera): 1920x800 is the 800x320 input's aspect ratio.
Validation scores the official 2D F-score (width 30, IoU > 0.3, a detection matches only an
annotation of its category; ``category_aware=False``: the tool's ``-k``).
"""

dataset = dict(
    type="openlane",
    data_root="datasets/OpenLane",
    lane_set="lane3d_1000",  # or "lane3d_300", the 300-segment subset
    category_aware=True,
    train_split="training",  # every label under lane3d_1000/training
    val_split="validation",
    cache_dir=None,
    on_bad_label="error",  # a label that cannot be true (docs/labels.md) stops the run; "skip": leave that training image out
)
ori_img_w = 1920
ori_img_h = 1280
cut_height = 480
max_lanes = 16
test_parameters = dict(conf_threshold=0.4, nms_thres=50.0, nms_topk=16)

# As configs/datasets/curvelanes.py. A horizontal flip mirrors a lane's kind too (left-dashed
# right-solid becomes left-solid right-dashed, a left curb a right one): the category targets
# must swap 5/6, 11/12 and 20/21 where a flipped image trains a category head.
augmentation = dict(
    flip=0.5,
    channel_shuffle=0.1,
    brightness=dict(p=0.6, mul=(0.85, 1.15), add=(-10, 10)),
    hue_saturation=dict(p=0.7, shift=(-10, 10)),
    blur=dict(p=0.2, motion=(3, 5), median=(3, 5), jpeg=None, dropout=None),
    affine=dict(p=0.7, translate=0.1, rotate=10.0, scale=(0.8, 1.2), shear=10.0),
)
