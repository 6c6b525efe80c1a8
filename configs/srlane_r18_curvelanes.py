"""SRLane R18 on CurveLanes (the release has no CurveLanes recipe).

The CULane recipe scaled to CurveLanes' 100k training images: 800x320 input as CondLaneNet,
up to 16 lanes, about 20 epochs at batch 40. On the synthetic CurveLanes set (CPU, minutes):

    python main.py configs/srlane_r18_curvelanes.py --set dataset.data_root=datasets/synthetic_curvelanes \\
        "dataset.generate=dict(train=1000, test=300, seed=0)" img_w=384 img_h=160 batch_size=8 workers=2 \\
        total_iter=800 scheduler.warmup_iter=400 optimizer.lr=1e-3 iou_pred_width=target eval_ep=2 \\
        save_interval=200 log_interval=50 precision=32-true model.backbone.pretrained=False \\
        test_parameters.nms_thres=24.0
"""

_base_ = ["models/srlane_r18.py", "datasets/curvelanes.py", "schedules/release_r18.py"]

total_iter = 50000  # about 20 epochs of the 100k training images at batch 40
