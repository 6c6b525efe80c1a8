"""CULane in its official layout under datasets/CULane (see datasets/README.md)."""

dataset = dict(
    type="culane",
    data_root="datasets/CULane",
    train_split="train",  # list/train_gt.txt
    val_split="test",  # list/test.txt with list/test_split/ categories; "val" for list/val.txt
    cache_dir=None,  # None: datasets/.cache
    on_bad_label="error",  # a label that cannot be true (docs/labels.md) stops the run; "skip": leave that training image out
    filter_duplicates=True,  # drop near-duplicate training frames (mean abs diff < 15)
)
ori_img_w = 1640
ori_img_h = 590
cut_height = 270
max_lanes = 4

# Training augmentation (srlane/data/transforms.py), applied in this order after the resize to
# img_w x img_h; every entry is a probability or a dict with its probability "p".
augmentation = dict(
    flip=0.5,  # horizontal flip, x -> img_w - x
    channel_shuffle=0.1,  # random permutation of R, G, B
    brightness=dict(p=0.6, mul=(0.85, 1.15), add=(-10, 10)),  # on luma (YCrCb), add is an integer
    hue_saturation=dict(p=0.7, shift=(-10, 10)),  # integer, imgaug's -255..255 scale
    # one of the entries that are not None: motion blur kernel size, median blur kernel size
    # (odd sizes only), JPEG compression strength on imgaug's 0-100 scale as the release
    # (85-95 means JPEG quality 17-7), coarse dropout dict(p=(lo, hi), size=(lo, hi)).
    blur=dict(p=0.2, motion=(3, 5), median=(3, 5), jpeg=(85, 95), dropout=None),
    # translate: fraction of the size in x and y; rotate and shear (x) in degrees
    affine=dict(p=0.7, translate=0.1, rotate=10.0, scale=(0.8, 1.2), shear=10.0),
)
