"""CULane in its official layout under datasets/CULane (see datasets/README.md)."""

dataset = dict(
    type="culane",
    data_root="datasets/CULane",
    train_split="train",  # list/train_gt.txt
    val_split="test",  # list/test.txt with list/test_split/ categories; "val" for list/val.txt
    cache_dir=None,  # None: datasets/.cache
    filter_duplicates=True,  # drop near-duplicate training frames (mean abs diff < 15)
)
ori_img_w = 1640
ori_img_h = 590
cut_height = 270
max_lanes = 4

augmentation = dict(
    flip=0.5,
    channel_shuffle=0.1,
    brightness=dict(p=0.6, mul=(0.85, 1.15), add=(-10, 10)),
    hue_saturation=dict(p=0.7, shift=(-10, 10)),
    blur=dict(p=0.2, motion=(3, 5), median=(3, 5), jpeg=(85, 95), dropout=None),
    affine=dict(p=0.7, translate=0.1, rotate=10.0, scale=(0.8, 1.2), shear=10.0),
)
