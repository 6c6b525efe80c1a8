"""TuSimple in its official layout under datasets/tusimple (see datasets/README.md)."""

dataset = dict(
    type="tusimple",
    data_root="datasets/tusimple",
    train_split="trainval",  # train (0313+0601), val (0531), trainval (all three)
    val_split="test",  # test_label.json
    cache_dir=None,
    on_bad_label="error",  # a label that cannot be true (docs/labels.md) stops the run; "skip": leave that training image out
    filter_duplicates=False,
)
ori_img_w = 1280
ori_img_h = 720
cut_height = 160
max_lanes = 5

# As configs/datasets/culane.py, with coarse dropout (fraction of pixels p, regions of `size`
# times the image size) in place of JPEG compression.
augmentation = dict(
    flip=0.5,
    channel_shuffle=0.1,
    brightness=dict(p=0.6, mul=(0.85, 1.15), add=(-10, 10)),
    hue_saturation=dict(p=0.7, shift=(-10, 10)),
    blur=dict(p=0.2, motion=(3, 5), median=(3, 5), jpeg=None, dropout=dict(p=(0.0, 0.05), size=(0.02, 0.05))),
    affine=dict(p=0.7, translate=0.1, rotate=10.0, scale=(0.8, 1.2), shear=10.0),
)
