"""LaneDataset items, per-size crops, collate, seeding with 0 and 2 workers, end-to-end lane/image
alignment."""
import os

import cv2
import numpy as np
import pytest
import torch

from srlane.benchmarks import build_benchmark
from srlane.config import Config
from srlane.data.crop import Crop
from srlane.data.dataset import LaneDataset, build_dataset
from srlane.data.input_checks import readable_part
from srlane.data.loader import build_dataloader, collate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORI_W, ORI_H, CUT = 256, 128, 32
IMG_W, IMG_H = 128, 64
N_IMAGES = 6


def make_cfg(data_root, cache_dir, **augmentation):
    cfg = Config.fromfile(os.path.join(ROOT, "configs", "srlane_r18_culane.py"))
    cfg.img_w, cfg.img_h, cfg.cut_height = IMG_W, IMG_H, CUT
    cfg.ori_img_w, cfg.ori_img_h = ORI_W, ORI_H
    cfg.batch_size, cfg.workers, cfg.seed = 3, 0, 7
    cfg.dataset.data_root, cfg.dataset.cache_dir = str(data_root), str(cache_dir)
    cfg.dataset.filter_duplicates = False
    for key, value in augmentation.items():
        cfg.augmentation[key] = value
    return cfg


def dataset(cfg, split, training):
    return build_dataset(cfg, build_benchmark(cfg).read_split(split, training), training)


def loader(cfg, split, training):
    return build_dataloader(cfg, dataset(cfg, split, training), training)


def lane_points(i):
    ys = np.arange(ORI_H - 1, 40, -6, dtype=np.float64)
    return [np.stack([40 + 20 * i + 0.9 * (ORI_H - ys), ys], 1),
            np.stack([200 - 10 * i - 0.7 * (ORI_H - ys), ys], 1)]


@pytest.fixture(scope="module")
def culane(tmp_path_factory):
    root = tmp_path_factory.mktemp("CULane")
    names = []
    for i in range(N_IMAGES):
        name = f"driver_0/clip.MP4/{i:05d}.jpg"
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        img = np.zeros((ORI_H, ORI_W, 3), np.uint8)
        img[:, :, 2] = 30 * i   # red in BGR
        lanes = lane_points(i)
        for lane in lanes:
            cv2.polylines(img, [np.round((lane - 0.5) * 16).astype(np.int32)], False, (255, 255, 255), 4, shift=4)
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 98])
        with open(str(path)[:-3] + "lines.txt", "w") as f:
            for lane in lanes:
                f.write(" ".join(f"{x:.3f} {y:.3f}" for x, y in lane) + " \n")
        names.append(name)
    (root / "list").mkdir()
    (root / "list" / "train_gt.txt").write_text("".join(f"/{n} /mask/{n} 1 1 0 0\n" for n in names))
    (root / "list" / "test.txt").write_text("".join(f"/{n}\n" for n in names))
    return root


def test_training_item_layout(culane, tmp_path):
    ds = dataset(make_cfg(culane, tmp_path), "train", training=True)
    item = ds[2]
    assert set(item) == {"img", "gt_lane", "gt_angle", "gt_seg", "meta"}
    assert item["img"].shape == (3, IMG_H, IMG_W) and item["img"].dtype == torch.uint8  # the net divides by 255
    assert item["gt_lane"].shape == (4, 76) and item["gt_lane"].dtype == torch.float32
    assert [m.shape for m in item["gt_angle"]] == [(8, 16), (4, 8), (2, 4)]
    assert all(m.dtype == torch.float32 for m in item["gt_angle"] + item["gt_seg"])
    meta = item["meta"]
    assert meta["index"] == 2 and meta["img_name"] == "driver_0/clip.MP4/00002.jpg"
    assert meta["img_path"] == os.path.join(str(culane), meta["img_name"]) and meta["img_size"] == (ORI_H, ORI_W)


def test_validation_item_is_crop_resize_rgb(culane, tmp_path):
    ds = dataset(make_cfg(culane, tmp_path), "test", training=False)
    item = ds[3]
    assert set(item) == {"img", "meta"}
    bgr = cv2.imread(os.path.join(str(culane), "driver_0/clip.MP4/00003.jpg"))
    expected = cv2.resize(bgr[CUT:], (IMG_W, IMG_H), interpolation=cv2.INTER_CUBIC)[..., ::-1]
    assert torch.equal(item["img"], torch.from_numpy(expected.transpose(2, 0, 1).copy()))
    assert abs(item["img"][0].float().mean().item() - 90) < 13   # red channel first (RGB)


def test_collate_stacks_levels_and_keeps_meta(culane, tmp_path):
    ds = dataset(make_cfg(culane, tmp_path), "train", training=True)
    batch = collate([ds[0], ds[1]])
    assert batch["img"].shape == (2, 3, IMG_H, IMG_W) and batch["gt_lane"].shape == (2, 4, 76)
    assert [m.shape for m in batch["gt_seg"]] == [(2, 8, 16), (2, 4, 8), (2, 2, 4)]
    assert [m["index"] for m in batch["meta"]] == [0, 1]
    assert torch.equal(batch["gt_angle"][1][1], ds[1]["gt_angle"][1])


def epoch_batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return list(loader)


def assert_same(a, b):
    assert [m["index"] for m in a["meta"]] == [m["index"] for m in b["meta"]]
    for key in ("img", "gt_lane"):
        assert torch.equal(a[key], b[key])
    for key in ("gt_angle", "gt_seg"):
        assert all(torch.equal(x, y) for x, y in zip(a[key], b[key]))


def test_batches_identical_with_0_and_2_workers_and_epochs_differ(culane, tmp_path):
    cfg = make_cfg(culane, tmp_path)
    loader0 = loader(cfg, "train", training=True)
    cfg.workers = 2
    loader2 = loader(cfg, "train", training=True)
    assert loader2.num_workers == 2
    for epoch in (0, 1):
        b0, b2 = epoch_batches(loader0, epoch), epoch_batches(loader2, epoch)
        assert len(b0) == len(b2) == N_IMAGES // 3
        for x, y in zip(b0, b2):
            assert_same(x, y)
    first, second = epoch_batches(loader0, 0), epoch_batches(loader0, 1)
    order = lambda batches: [m["index"] for b in batches for m in b["meta"]]  # noqa: E731
    assert order(first) != order(second) and sorted(order(first)) == list(range(N_IMAGES))
    by_index = lambda batches: {m["index"]: b["img"][k] for b in batches for k, m in enumerate(b["meta"])}  # noqa: E731
    a, b = by_index(first), by_index(second)
    assert sum(not torch.equal(a[i], b[i]) for i in range(N_IMAGES)) >= N_IMAGES - 1
    again = epoch_batches(loader0, 0)
    for x, y in zip(first, again):
        assert_same(x, y)


def test_validation_loader_keeps_order(culane, tmp_path):
    val = loader(make_cfg(culane, tmp_path), "test", training=False)
    indices = [m["index"] for b in val for m in b["meta"]]
    assert indices == list(range(N_IMAGES)) and "gt_lane" not in next(iter(val))
    shards = [build_dataloader(make_cfg(culane, tmp_path), val.dataset, False, rank, 4) for rank in range(4)]
    assert [[m["index"] for b in shard for m in b["meta"]] for shard in shards] == [[0, 4], [1, 5], [2], [3]]


def test_targets_follow_the_augmented_image(culane, tmp_path):
    """Lanes drawn into the original image end up under the encoded lane rows."""
    cfg = make_cfg(culane, tmp_path, channel_shuffle=0.0, brightness=None, hue_saturation=None, blur=None)
    ds = dataset(cfg, "train", training=True)
    hits, total = 0, 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(N_IMAGES):
            item = ds[i]
            img = np.ascontiguousarray(item["img"].numpy().transpose(1, 2, 0))
            mask = img.min(axis=2) > 100
            dist = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
            for row in item["gt_lane"].numpy():
                if row[1] != 1:
                    continue
                n = int(row[2] + row[3])
                xs, ys = row[4:4 + n], IMG_H - np.arange(n) * IMG_H / 71
                ok = (xs >= 1) & (xs < IMG_W - 1) & (ys >= 1) & (ys < IMG_H - 1)
                c, r = np.round(xs[ok] - 0.5).astype(int), np.round(ys[ok] - 0.5).astype(int)
                hits += int(np.sum(dist[r, c] <= 1.5))
                total += int(ok.sum())
    assert total > 300
    assert hits / total >= 0.97, hits / total


def test_crop_by_image_size(culane, tmp_path):
    """An image whose size has its own crop loses those rows; its meta says how many."""
    records = build_benchmark(make_cfg(culane, tmp_path)).read_split("test", training=False)
    ds = LaneDataset(records, IMG_W, IMG_H, Crop(CUT, {f"{ORI_W}x{ORI_H}": 64}))
    item = ds[3]
    bgr = cv2.imread(records[3].img_path)
    expected = cv2.resize(bgr[64:], (IMG_W, IMG_H), interpolation=cv2.INTER_CUBIC)[..., ::-1]
    assert torch.equal(item["img"], torch.from_numpy(expected.transpose(2, 0, 1).copy()))
    assert item["meta"]["cut_height"] == 64 and Crop(CUT, {"1x1": 0})(ORI_H, ORI_W) == CUT
    with pytest.raises(ValueError, match="needs both an augmenter and a target encoder"):
        LaneDataset(records, IMG_W, IMG_H, Crop(CUT), augmenter=lambda img, lanes, rng: (img, lanes))


def test_readable_part_of_a_batch():
    """The read images and their metas; each unreadable one reported; a batch read whole keeps
    its own tensor (pinned memory stays pinned, no copy)."""
    img = torch.arange(3 * 2, dtype=torch.uint8).view(3, 2)
    metas = [{"index": 0}, {"index": 1, "unreadable": True}, {"index": 2}]
    reported = []
    images, kept = readable_part({"img": img, "meta": metas}, reported.append)
    assert images.tolist() == [[0, 1], [4, 5]] and kept == [metas[0], metas[2]] and reported == [metas[1]]
    whole, kept = readable_part({"img": img, "meta": [metas[0], metas[2], metas[0]]}, reported.append)
    assert whole is img and len(kept) == 3 and len(reported) == 1
    assert readable_part({"img": img[:1], "meta": [metas[1]]}, reported.append) is None and len(reported) == 2


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_lane_categories_reach_the_batch_and_flip_with_the_image(culane, tmp_path, flip):
    import dataclasses

    from srlane.data.crop import build_crop
    from srlane.data.targets import build_target_encoder
    from srlane.data.transforms import LaneAugmenter

    cfg = make_cfg(culane, tmp_path)
    cfg.model.num_lane_categories = 14
    records = build_benchmark(cfg).read_split("train", True)
    labelled = [dataclasses.replace(r, lane_categories=(5, 8)) for r in records[:2]] + records[2:3]
    ds = LaneDataset(labelled, IMG_W, IMG_H, build_crop(cfg), 0, LaneAugmenter(flip=flip),
                     build_target_encoder(cfg))
    batch = collate([ds[0], ds[1], ds[2]])
    # rows keep the label order; white-ldash-rsolid (5: class 4) mirrors to 6 (class 5),
    # yellow-solid (8: class 7) stays; a record without categories gives -1
    first = [5, 7] if flip else [4, 7]
    assert batch["gt_category"].dtype == torch.int64
    assert batch["gt_category"].tolist() == [first + [-1, -1], first + [-1, -1], [-1, -1, -1, -1]]
    assert batch["gt_lane"][:, :2, 1].tolist() == [[1, 1]] * 3
    cfg.model.num_lane_categories = 0
    assert "gt_category" not in dataset(cfg, "train", training=True)[0]
