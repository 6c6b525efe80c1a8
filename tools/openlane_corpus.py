"""Write a corpus of OpenLane-layout frames with every hard case of the 2D metric, to compare
``tools/evaluate.py openlane`` with the official C++ tool image by image (docs/openlane.md).

    python tools/openlane_corpus.py OUT [--frames 300] [--seed 0]

OUT gets ``images/validation/<segment>/<frame>.jpg`` (black 1920x1280 frames: the official tool
reads them to draw its pictures), labels under ``lane3d_1000/validation/...``, result files under
``results/validation/...`` and ``lists/validation.txt`` (the official ``-l`` format). Each frame
mixes cases: lanes that overlap (clusters whose assignments are nearly equal), detections of
another category, lanes of 0 or 1 point, empty and missing result files, empty labels, lanes
leaving the image or wholly off it, many lanes, 2-point lanes, points out of v order and
detections shifted to an IoU near the 0.3 threshold.
"""
import argparse
import os
from collections.abc import Sequence

import cv2
import numpy as np

from srlane.benchmarks import openlane
from srlane.fileio import atomic_write_bytes, atomic_write_json
from srlane.lane_kinds import CATEGORY_IDS

SPLIT = "validation"
HEIGHT, WIDTH = openlane.IMAGE_SIZE


def random_lane(rng: np.random.Generator) -> np.ndarray:
    """A curved lane of 2 to 40 points at distinct rows, sometimes leaving the image."""
    n = int(rng.choice([2, 3, 4, rng.integers(5, 41)]))
    top, bottom = rng.uniform(550, 900), rng.uniform(1000, 1500)  # below 1280: leaves the image
    v = np.sort(rng.choice(np.arange(int(top), int(bottom)), size=n, replace=False)).astype(np.float64)
    v += rng.uniform(0, 0.9, n)  # fractional rows, still distinct
    u0, slope, bend = rng.uniform(-300, 2200), rng.uniform(-2.5, 2.5), rng.uniform(-2e-3, 2e-3)
    u = u0 + slope * (v - top) + bend * (v - top) ** 2
    return np.stack([u, v], axis=1)


def detection(rng: np.random.Generator, lane: np.ndarray) -> np.ndarray:
    """A detection of ``lane``: close, shifted to an IoU near 0.3 (about 16 px for width 30) or far."""
    case = rng.integers(4)
    shift = [rng.uniform(-4, 4), rng.uniform(13, 19) * rng.choice([-1, 1]), rng.uniform(30, 200), 0.0][case]
    out = lane.copy()
    out[:, 0] += shift + rng.normal(0, 1.0, len(lane))
    if case == 3 and len(lane) > 3:  # a shorter detection: part of the lane
        out = out[: max(2, len(lane) // 2)]
    return out


def frame_lanes(rng: np.random.Generator) -> tuple[list[np.ndarray], list[int], list[np.ndarray], list[int]]:
    """Annotation lanes and detections (with categories) of one frame."""
    many = rng.random() < 0.15
    num = 0 if rng.random() < 0.1 else int(rng.integers(8, 17) if many else rng.integers(1, 6))
    annos = [random_lane(rng) for _ in range(num)]
    if num >= 2 and rng.random() < 0.3:  # two annotations overlapping
        twin = annos[0].copy()
        twin[:, 0] += rng.uniform(5, 25)
        annos.append(twin)
    if num >= 1 and rng.random() < 0.15:  # a cluster: lanes 6-20 px apart, near-equal assignments
        for _ in range(int(rng.integers(2, 4))):
            near = annos[0].copy()
            near[:, 0] += rng.uniform(6, 20) * rng.choice([-1, 1])
            annos.append(near)
    anno_cats = [int(rng.choice(CATEGORY_IDS)) for _ in annos]
    preds, pred_cats = [], []
    for lane, cat in zip(annos, anno_cats):
        if rng.random() < 0.8:
            preds.append(detection(rng, lane))
            pred_cats.append(cat if rng.random() < 0.7 else int(rng.choice(CATEGORY_IDS)))
    preds += [random_lane(rng) for _ in range(int(rng.integers(0, 3)))]
    pred_cats += [int(rng.choice(CATEGORY_IDS)) for _ in range(len(preds) - len(pred_cats))]
    for lanes, cats in ((annos, anno_cats), (preds, pred_cats)):
        if rng.random() < 0.2:  # lanes of 0 and 1 point
            lanes += [np.zeros((0, 2)), random_lane(rng)[:1]]
            cats += [int(rng.choice(CATEGORY_IDS)), int(rng.choice(CATEGORY_IDS))]
        for i in range(len(lanes)):
            if rng.random() < 0.3:  # points out of v order
                lanes[i] = lanes[i][rng.permutation(len(lanes[i]))]
    return annos, anno_cats, preds, pred_cats


def write_result(path: str, name: str, lanes: Sequence[np.ndarray], categories: Sequence[int]) -> None:
    """A result file in the official layout."""
    atomic_write_json(path, {"file_path": name + ".jpg",
                             "lane_lines": [openlane.lane_entry(p, c) for p, c in zip(lanes, categories)]},
                      indent=None)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder to write the corpus in")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    jpeg = cv2.imencode(".jpg", np.zeros((HEIGHT, WIDTH, 3), np.uint8))[1].tobytes()
    names = []
    for i in range(args.frames):
        name = f"{SPLIT}/segment-{i // 50:03d}/{i:06d}"
        annos, anno_cats, preds, pred_cats = frame_lanes(rng)
        openlane.write_frame_label(args.out, SPLIT, name.split("/", 1)[1], annos, anno_cats)
        atomic_write_bytes(openlane.image_path(args.out, name), jpeg)
        result = rng.random()
        if result < 0.05:
            preds, pred_cats = [], []  # an empty result file
        if result >= 0.02:  # else no result file: the official tool reads it as no lanes
            write_result(openlane.result_path(os.path.join(args.out, "results"), name), name, preds, pred_cats)
        names.append(name)
    openlane.write_list(args.out, SPLIT, names)


if __name__ == "__main__":
    main()
