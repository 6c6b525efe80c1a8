"""SRLane with a ResNet-18 backbone: the released R18 architecture (spec sections 5-7)."""

img_w = 800
img_h = 320
num_points = 72
max_lanes = 4

model = dict(
    backbone=dict(type="resnet18", pretrained=True),  # resnet18, resnet34 or resnet50
    # K > 0 adds a category head on the refine stage's per-lane feature: K logits over
    # srlane.lane_kinds.KNOWN_CATEGORIES[:K] (14: all of OpenLane's kinds) after the lane's
    # geometry, trained with loss_weights.category (default 1.0). 0: the released network.
    num_lane_categories=0,
    neck=dict(out_channels=64),
    sketch_head=dict(angle_map_size=(4, 10), feat_ds_strides=(8, 16, 32)),
    refine_head=dict(
        refine_layers=1,
        fc_hidden_dim=192,
        sample_points=36,
        num_groups=6,
        z_mean=0.9269,
        z_std=0.2379,
    ),
)
# category: a category head's cross-entropy on matched proposals (no head: not used)
loss_weights = dict(iou=2.0, cls=2.0, l1=0.2, angle=5.0, attn=0.0, seg=0.0, category=1.0)
# Line-IoU loss band of a predicted row: "prediction" widens it by the prediction's own slope
# (the release); "target" uses the target's width, which keeps a gradient on noisy rows and
# trains much faster from scratch (see srlane.models.losses.line_iou).
iou_pred_width = "prediction"
test_parameters = dict(conf_threshold=0.4, nms_thres=50.0, nms_topk=4)
