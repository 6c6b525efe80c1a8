"""One small trained checkpoint and one synthetic test split (CULane layout, its nine category
lists), with the prediction files and raw outputs of the checkpoint: what the end-to-end tests of
the road from image to lanes (and the report) share."""
from pathlib import Path

import main
from srlane import synthetic
from tools import predict

ROOT = Path(__file__).resolve().parents[2]
N_TRAIN, N_TEST = 8, 6


def make_road(folder: Path) -> tuple[Path, Path, Path, Path]:
    """A 256x96 experiment trained 4 steps on 8 generated scenes (run folder ``folder/run``), and
    the prediction files of its best checkpoint for the 6 test scenes with raw outputs
    (``folder/pred``, ``folder/pred/raw``). Returns the folder, config, checkpoint and test list."""
    data = folder / "data"
    synthetic.generate(data, "culane", N_TRAIN, N_TEST, seed=0, progress=False)
    config = folder / "exp.py"
    config.write_text(
        f"_base_ = [{str(ROOT / 'configs' / 'srlane_r18_synthetic.py')!r}]\n"
        "accelerator = 'cpu'\nimg_w = 256\nimg_h = 96\n"
        f"dataset = dict(data_root={str(data)!r}, cache_dir={str(folder / 'cache')!r}, "
        f"generate=dict(train={N_TRAIN}, test={N_TEST}, seed=0))\n"
        "batch_size = 2\nworkers = 0\ntotal_iter = 4\neval_ep = 100\nsave_interval = 4\nlog_interval = 2\n"
        "scheduler = dict(type='warmup_cosine', warmup_iter=2)\n"
        "test_parameters = dict(conf_threshold=0.0, nms_thres=15.0, nms_topk=4)  # 4 steps: lanes to score\n"
    )
    main.main([str(config), "--work-dir", str(folder / "run")])
    checkpoint = folder / "run" / "best.pth"
    test_list = data / "list" / "test.txt"
    predict.main([str(config), str(test_list), "--root", str(data), "--load-from", str(checkpoint),
                  "--out", str(folder / "pred"), "--save-raw", "--batch", "4", "--workers", "0",
                  "--accelerator", "cpu"])
    return folder, config, checkpoint, test_list
