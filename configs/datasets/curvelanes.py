"""CurveLanes in its official layout under datasets/CurveLanes (see datasets/README.md).

Images come in several sizes; each is read, cropped and scored at its own size. The crop keeps
the bottom rows, as CondLaneNet and CLRerNet do: 800 of 1440, 480 of 660, 352 of 720
(``cut_heights``, by "WxH"); an image of another size drops ``cut_height`` rows and gets one
warning per size. ``ori_img_w x ori_img_h`` is the most common size.
"""

dataset = dict(
    type="curvelanes",
    data_root="datasets/CurveLanes",
    train_split="train",  # train/train.txt
    val_split="valid",  # valid/valid.txt (test labels are not public)
    cache_dir=None,
    on_bad_label="error",  # a label that cannot be true (docs/labels.md) stops the run; "skip": leave that training image out
)
ori_img_w = 2560
ori_img_h = 1440
cut_height = 640
cut_heights = {"2560x1440": 640, "1570x660": 180, "1280x720": 368}
max_lanes = 16
test_parameters = dict(conf_threshold=0.4, nms_thres=50.0, nms_topk=16)

# As configs/datasets/culane.py, without JPEG compression (CurveLanes images are large and clean).
augmentation = dict(
    flip=0.5,
    channel_shuffle=0.1,
    brightness=dict(p=0.6, mul=(0.85, 1.15), add=(-10, 10)),
    hue_saturation=dict(p=0.7, shift=(-10, 10)),
    blur=dict(p=0.2, motion=(3, 5), median=(3, 5), jpeg=None, dropout=None),
    affine=dict(p=0.7, translate=0.1, rotate=10.0, scale=(0.8, 1.2), shear=10.0),
)
