"""srlane.inference.video: frames as validation batches, the .lanes.jsonl writer, a video's files
put in place whole or not at all (no network: CPU, fractions of a second)."""
import json

import numpy as np
import pytest
import torch
from helpers.disk import small_disk

from srlane.data.crop import Crop
from srlane.data.video import Frame, lanes_json_line, prepare_image
from srlane.inference.predict import ImagePrediction
from srlane.fileio import DiskFullError
from srlane.inference.video import FrameError, VideoFiles, check_video, frame_batches, lanes_jsonl
from srlane.lanes import Lane

LANE = Lane(np.stack([np.full(10, 0.5), np.linspace(0.5, 1.0, 10)], axis=1))


def frames(n, h=120, w=200):
    rng = np.random.default_rng(0)
    return [Frame(i, i / 10, rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for i in range(n)]


def test_frames_become_batches_of_prepared_images():
    given = frames(7)
    batches = list(frame_batches(given, "/v/clip.avi", (64, 32), Crop(20), 3))
    assert [len(batch["meta"]) for batch in batches] == [3, 3, 1]
    assert all(batch["img"].dtype == torch.uint8 and batch["img"].shape[1:] == (3, 32, 64) for batch in batches)
    for i, frame in enumerate(given):
        batch, row = batches[i // 3], i % 3
        image, cut = prepare_image(frame.image, 64, 32, Crop(20))
        assert torch.equal(batch["img"][row], image) and cut == 20
        meta = batch["meta"][row]
        assert {k: meta[k] for k in ("img_path", "img_name", "img_size", "cut_height", "frame", "time")} == {
            "img_path": "/v/clip.avi", "img_name": "clip.avi", "img_size": (120, 200), "cut_height": 20,
            "frame": i, "time": i / 10}
        assert meta["image"] is frame.image


def test_a_crop_that_does_not_fit_is_a_frame_error():
    with pytest.raises(FrameError, match=r"^cut_height 270 does not fit a 200x120 image$"):
        list(frame_batches(frames(2), "/v/clip.avi", (64, 32), Crop(270), 2))


def test_lanes_jsonl_writes_the_json_lines_of_the_frames(tmp_path):
    with lanes_jsonl(str(tmp_path / "clip.lanes.jsonl")) as write:
        write(0, 0.0, [LANE], 1640, 590, 270)
        write(1, None, [], 1640, 590, 270)
    lines = (tmp_path / "clip.lanes.jsonl").read_text().splitlines()
    assert lines == [lanes_json_line(0, 0.0, [LANE], 1640, 590, 270), lanes_json_line(1, None, [], 1640, 590, 270)]
    assert json.loads(lines[1]) == {"frame": 1, "time": None, "lanes": []}


def frame_prediction(frame):
    meta = {"img_size": frame.image.shape[:2], "cut_height": 20, "frame": frame.index, "time": frame.time,
            "image": frame.image}
    return ImagePrediction(meta, [LANE], np.zeros(1, np.int64), 0.0)


def test_video_files_appear_whole_or_not_at_all(tmp_path):
    with VideoFiles(str(tmp_path), "none", 10.0, view=True):
        pass  # no frame: nothing to write
    assert list(tmp_path.rglob("*")) == []
    with VideoFiles(str(tmp_path), "clip", 10.0, view=True) as files:
        for frame in frames(3):
            files.write(frame_prediction(frame))
        assert list(tmp_path.glob("*.jsonl")) == []  # in place only when the block ends
    assert [json.loads(line)["frame"] for line in (tmp_path / "clip.lanes.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert len(list((tmp_path / "visualization").glob("clip.*"))) == 1
    with pytest.raises(RuntimeError):
        with VideoFiles(str(tmp_path), "broken", 10.0, view=True) as files:
            files.write(frame_prediction(frames(1)[0]))
            raise RuntimeError("a later frame failed")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["clip.lanes.jsonl", "clip.mp4", "visualization"]


def test_a_video_cut_short_by_a_full_disk_is_one_line_and_leaves_no_file(tmp_path):
    disk = tmp_path / "disk"
    with small_disk(disk, 256 * 1024):
        with pytest.raises(DiskFullError, match=r"^cannot write .*disk/visualization/clip\.(mp4|avi): no space left "
                                                r"on device \(\d+ bytes free in .*\); its previous version"):
            with VideoFiles(str(disk), "clip", 10.0, view=True) as files:
                for frame in frames(60, 240, 400):  # noise: tens of kB a frame
                    files.write(frame_prediction(frame))
        assert sorted(p.name for p in disk.rglob("*")) == ["visualization"]  # no partial file, no temp file


def test_a_video_missing_frames_is_an_error(tmp_path):
    with VideoFiles(str(tmp_path), "clip", 10.0, view=True) as files:
        for frame in frames(3):
            files.write(frame_prediction(frame))
    (video,) = (tmp_path / "visualization").glob("clip.*")
    check_video(str(video), 3)
    with pytest.raises(OSError, match=r"^OpenCV wrote 3 of the 4 frames of .*clip\."):
        check_video(str(video), 4)
