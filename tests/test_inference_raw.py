"""srlane.inference.raw: raw outputs saved and read back in one format, old folders included."""
import json

import numpy as np
import pytest

from srlane.inference.predict import ImagePrediction
from srlane.inference.raw import RAW_FORMAT, RawError, RawWriter, load_raw

CFG = {"img_w": 256, "img_h": 96, "num_points": 72}


def prediction(meta, seed):
    raw = np.random.default_rng(seed).normal(size=(40, 76)).astype(np.float32)
    return ImagePrediction(meta, [], np.zeros(0, np.int64), 0.0, raw=raw)


def test_saved_rows_load_back_in_order(tmp_path):
    image = prediction({"img_name": "a/b.jpg", "img_path": "/x/a/b.jpg", "img_size": (590, 1640),
                        "cut_height": 270, "index": 0}, 0)
    frames = [prediction({"img_name": "clip.avi", "img_path": "/x/clip.avi", "img_size": (720, 1280),
                          "cut_height": 160, "frame": i, "time": i / 10}, i + 1) for i in range(2)]
    writer, video = RawWriter(), RawWriter()
    writer.add(image)
    for frame in frames:
        video.add(frame)
    writer.extend(video)
    writer.save(str(tmp_path / "raw"), CFG, "configs/x.py")
    outputs, index = load_raw(str(tmp_path / "raw"))
    assert np.array_equal(outputs, np.stack([image.raw] + [f.raw for f in frames]))
    assert index["rows"] == [{"name": "a/b.jpg", "size": [590, 1640], "crop": 270},
                             {"name": "clip.avi", "frame": 0, "time": 0.0, "size": [720, 1280], "crop": 160},
                             {"name": "clip.avi", "frame": 1, "time": 0.1, "size": [720, 1280], "crop": 160}]
    assert index["format"] == RAW_FORMAT == "srlane-raw-outputs/1" and index["shape"] == [40, 76]
    assert (index["img_w"], index["img_h"], index["num_points"]) == (256, 96, 72)
    assert index["config"].endswith("configs/x.py") and index["config"].startswith("/")
    assert not list((tmp_path / "raw").glob(".*"))  # no temp file left


def test_a_folder_written_by_hand_in_the_documented_format_loads(tmp_path):
    """The layout of docs/outputs.md, section 6 (as predict.py --save-raw has written it since
    the format's first version)."""
    outputs = np.zeros((1, 40, 76), np.float32)
    np.save(tmp_path / "outputs.npy", outputs)
    (tmp_path / "index.json").write_text(json.dumps({
        "format": "srlane-raw-outputs/1", "config": "/c.py", "img_w": 800, "img_h": 320, "num_points": 72,
        "shape": [40, 76], "rows": [{"name": "x.jpg", "size": [590, 1640], "crop": 270}]}))
    loaded, index = load_raw(str(tmp_path))
    assert np.array_equal(loaded, outputs) and index["rows"][0]["name"] == "x.jpg"


@pytest.mark.parametrize("edit, message", [
    (lambda index: {**index, "format": "other/1"}, r"index.json: not an index of srlane-raw-outputs/1"),
    (lambda index: {k: v for k, v in index.items() if k != "img_h"}, r"index.json: no img_h$"),
    (lambda index: {**index, "rows": [{"name": "x.jpg", "size": [590, 1640]}]}, r"row 0 lacks name, size or crop$"),
    (lambda index: {**index, "shape": [40, 40]}, r"rows are \(40, 76\), .*index.json says \(40, 40\)$"),
])
def test_a_malformed_index_is_one_line(tmp_path, edit, message):
    writer = RawWriter()
    writer.add(prediction({"img_name": "x.jpg", "img_size": (590, 1640), "cut_height": 270}, 0))
    writer.save(str(tmp_path), CFG, "c.py")
    index = json.loads((tmp_path / "index.json").read_text())
    (tmp_path / "index.json").write_text(json.dumps(edit(index)))
    with pytest.raises(RawError, match=message) as err:
        load_raw(str(tmp_path))
    assert "\n" not in str(err.value)


def test_rows_with_category_logits_round_trip_and_decode_their_categories(tmp_path):
    import torch

    from srlane.config import Config
    from srlane.inference.crafted import crafted_predictions
    from srlane.inference.raw import check_geometry, decode_rows
    from srlane.models.decode import LaneDecoder

    preds = crafted_predictions(2, 40, 72, 4, num_categories=14)
    writer = RawWriter()
    for i, raw in enumerate(preds.numpy()):
        meta = {"img_name": f"{i}.jpg", "img_size": (590, 1640), "cut_height": 270}
        writer.add(ImagePrediction(meta, [], np.zeros(0, np.int64), 0.0, raw=raw))
    cfg = Config({**CFG, "model": {"num_lane_categories": 14}})
    writer.save(str(tmp_path / "raw"), cfg, "configs/x.py")
    outputs, index = load_raw(str(tmp_path / "raw"))
    assert index["num_lane_categories"] == 14 and index["shape"] == [40, 90]
    assert np.array_equal(outputs, preds.numpy())
    check_geometry(outputs, index, cfg, "configs/x.py")
    decoder = LaneDecoder(256, 72, 0.4, 10.0, 4)
    lanes = decode_rows(outputs, index["rows"], decoder)
    want = decoder(preds, [(270, 590)] * 2)
    assert [[(lane.category, lane.category_score) for lane in image] for image in lanes] == \
        [[(lane.category, lane.category_score) for lane in image] for image in want]
    assert [lane.category for lane in lanes[1]] == [2, 3, 4, 5]  # head classes 1-4 of image 1
    with pytest.raises(RawError, match=r"num_lane_categories=14.*rows \(40, 90\).*num_lane_categories=0 \(rows of 76\)"):
        check_geometry(outputs, index, Config({**CFG, "model": {}}), "configs/y.py")
    # an index of a network without a head (no num_lane_categories: the format's first layout)
    del index["num_lane_categories"]
    check_geometry(outputs[..., :76], index, Config(CFG), "configs/y.py")
