"""Write SRLane's features of a benchmark split: one global vector per image and one vector per
detected lane, as NumPy arrays with an index tying rows to images and lanes.

    python tools/embed.py CONFIG --load-from CKPT --split test --out DIR
                          [--accelerator cpu|cuda|auto] [--batch B] [--workers N] [--conf-threshold T]
                          [--set KEY=VALUE ...]

Images are read as validation reads them (the split of the config's benchmark, each image
cropped as its size says, resized, /255) and the network runs in eval mode; its outputs and
lanes are exactly those of validation and tools/predict.py (the features are read with forward
hooks, the computation is unchanged). Written atomically:
  DIR/global.npy   float32 (N_images, C): the backbone's last stage (stride 32; C = 512 for
                   ResNet-18/34, 2048 for ResNet-50) averaged over its height and width
  DIR/lanes.npy    float32 (N_lanes, D): per lane the refine head's proposal feature (the last
                   stage's D = fc_hidden_dim = 192 vector after multi-segment attention, the one
                   its classification and regression branches read)
  DIR/index.json   which image and lane each row is (see docs/outputs.md)
Lanes are the decoder's: score >= conf_threshold, lane NMS, at most nms_topk, two points or more.
An image that cannot be read is reported by name and left out; the command then exits with 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from srlane.benchmarks import build_benchmark
from srlane.cli import checkpoint_tool_parser, run_cli
from srlane.data.dataset import build_dataset
from srlane.data.input_checks import image_crops, readable_part
from srlane.data.loader import make_loader
from srlane.data.records import DataFormatError
from srlane.models.weights import inference_weights, load_checkpoint, load_net_weights
from srlane.engine.defaults import load_experiment
from srlane.engine.fabric import ACCELERATORS, resolve_accelerator
from srlane.fileio import atomic_path, atomic_write_text
from srlane.models import build_net
from srlane.models.decode import build_decoder


class FeatureTap:
    """Forward hooks on ``net`` that keep, from its last forward, ``global_features`` (B, C): the
    backbone's last output averaged over H and W, and ``proposal_features`` (B, N, D): the input of
    the last refine stage's classification branch (the same tensor feeds its regression branch)."""

    def __init__(self, net: nn.Module) -> None:
        self.global_features: torch.Tensor | None = None
        self.proposal_features: torch.Tensor | None = None
        stage = net.roi_head.stage_heads[-1]
        self._handles = [net.backbone.register_forward_hook(self._backbone),
                         stage.cls_modules.register_forward_pre_hook(self._proposals)]

    def _backbone(self, module: nn.Module, inputs: tuple, output: Sequence[torch.Tensor]) -> None:
        self.global_features = output[-1].float().mean(dim=(2, 3))

    def _proposals(self, module: nn.Module, inputs: tuple) -> None:
        self.proposal_features = inputs[0].float()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = checkpoint_tool_parser(__doc__)
    parser.add_argument("--split", default="test", help="split of the config's benchmark (default: test)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--accelerator", "--device", dest="accelerator", choices=ACCELERATORS,
                        help="auto: CUDA when present, else CPU (default: the config's accelerator)")
    parser.add_argument("--batch", type=int, default=8, metavar="B", help="images per forward pass (default: 8)")
    parser.add_argument("--workers", type=int, default=2, metavar="N", help="image reading processes (default: 2)")
    parser.add_argument("--conf-threshold", type=float, metavar="T",
                        help="lane score threshold (default: the config's test_parameters.conf_threshold)")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f"--batch must be at least 1, got {args.batch}")
    if args.workers < 0:
        parser.error(f"--workers must be 0 or more, got {args.workers}")
    return args


def save_npy(path: str, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def embed(args: argparse.Namespace) -> dict:
    """Run the command line; returns a summary (images, lanes, unreadable images, shapes)."""
    cfg = load_experiment(args.config, args.set)
    device = torch.device(resolve_accelerator(args.accelerator or cfg.accelerator))
    records = build_benchmark(cfg).read_split(args.split, False)
    if not records:
        raise DataFormatError(args.split, None, "the split has no images")
    cfg.model.backbone.pretrained = False  # the checkpoint holds every weight
    net = build_net(cfg)
    load_net_weights(net, inference_weights(load_checkpoint(args.load_from)), args.load_from)
    net = net.to(device).eval()
    loader = make_loader(build_dataset(cfg, records, training=False), args.batch, args.workers, training=False)
    decoder = build_decoder(cfg, conf_threshold=args.conf_threshold)
    tap = FeatureTap(net)
    global_rows: list[np.ndarray] = []
    lane_rows: list[np.ndarray] = []
    names: list[str] = []
    columns: dict[str, list] = {"image": [], "lane": [], "proposal": [], "score": []}
    unreadable: list[str] = []

    def report(meta: dict) -> None:
        tqdm.write(f"error: cannot read image {meta['img_path']}; left out", file=sys.stderr)
        unreadable.append(meta["img_path"])

    with torch.inference_mode():
        for batch in tqdm(loader, desc="Embed", unit="batch", dynamic_ncols=True):
            readable = readable_part(batch, report)
            if readable is None:
                continue
            images, metas = readable
            output = net(images.to(device)).float()
            lanes = decoder(output, image_crops(metas))
            indices, valid = decoder.select(output)
            predictions = output.cpu().numpy()
            scores = torch.softmax(output[..., :2], dim=-1)[..., 1].cpu().numpy()
            proposals = tap.proposal_features.cpu().numpy()
            global_rows.append(tap.global_features.cpu().numpy())
            for i, meta in enumerate(metas):
                kept = indices[i][valid[i]].numpy()
                # the decoder drops kept proposals with fewer than two points: so do we
                kept = kept[decoder.point_mask(predictions[i, kept]).sum(-1) >= 2]
                if len(kept) != len(lanes[i]):
                    raise RuntimeError(f"{meta['img_name']}: {len(kept)} kept proposals for {len(lanes[i])} lanes")
                image_row = len(names)
                names.append(meta["img_name"])
                lane_rows.append(proposals[i, kept])
                columns["image"] += [image_row] * len(kept)
                columns["lane"] += list(range(len(kept)))
                columns["proposal"] += [int(p) for p in kept]
                columns["score"] += [round(float(scores[i, p]), 6) for p in kept]
    tap.remove()
    width = int(cfg.model.refine_head.get("fc_hidden_dim", 192))
    global_features = (np.concatenate(global_rows) if global_rows
                       else np.zeros((0, net.backbone.out_channels[-1]), np.float32)).astype(np.float32)
    lane_features = (np.concatenate(lane_rows) if lane_rows else np.zeros((0, width), np.float32)).astype(np.float32)
    index = {
        "config": os.path.abspath(args.config), "checkpoint": os.path.abspath(args.load_from), "split": args.split,
        "conf_threshold": decoder.conf_threshold, "nms_thres": decoder.nms_thres, "nms_topk": decoder.top_k,
        "global": {"file": "global.npy", "shape": list(global_features.shape),
                   "feature": "backbone last stage (stride 32), mean over height and width"},
        "lanes": {"file": "lanes.npy", "shape": list(lane_features.shape),
                  "feature": "last refine stage's proposal feature (input of its cls and reg branches)"},
        "images": names,
        "lane_rows": columns,
    }
    save_npy(os.path.join(args.out, "global.npy"), global_features)
    save_npy(os.path.join(args.out, "lanes.npy"), lane_features)
    atomic_write_text(os.path.join(args.out, "index.json"), json.dumps(index, indent=1) + "\n")
    summary = {"images": len(names), "lanes": len(lane_features), "unreadable": len(unreadable),
               "global_shape": global_features.shape, "lanes_shape": lane_features.shape}
    print(f"{len(names)} images, {len(lane_features)} lanes; wrote global.npy {global_features.shape}, "
          f"lanes.npy {lane_features.shape} and index.json to {os.path.abspath(args.out)}"
          + (f"; {len(unreadable)} unreadable image(s) left out" if unreadable else ""))
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    return embed(parse_args(argv))


if __name__ == "__main__":
    run_cli(main, ValueError, failed=lambda result: result["unreadable"] > 0)
