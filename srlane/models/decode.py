"""Inference decoding (spec 7): scores, lane NMS, lanes as points, and the benchmark writers."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from srlane.lanes import Lane
from srlane.models.nms import lane_nms, suppression_matrix


class LaneDecoder:
    """Turns network outputs (B, N, 4 + num_points) into a list of :class:`Lane` per image.

    Built from a config: ``test_parameters.conf_threshold``, ``test_parameters.nms_thres``,
    ``test_parameters.nms_topk`` (else ``max_lanes``), ``img_w``, ``num_points``,
    ``ori_img_w``, ``ori_img_h``, ``cut_height``. ``conf_threshold`` overrides the config's.
    Everything up to the final conversion into point lists runs batched on the predictions'
    device.
    """

    def __init__(self, cfg: Mapping[str, Any], conf_threshold: float | None = None) -> None:
        test = cfg["test_parameters"]
        self.conf_threshold = float(test["conf_threshold"] if conf_threshold is None else conf_threshold)
        self.nms_thres = float(test["nms_thres"])
        self.top_k = int(test.get("nms_topk", cfg["max_lanes"]))
        self.img_w = float(cfg["img_w"])
        self.n_strips = int(cfg.get("num_points", 72)) - 1
        self.ori_h = float(cfg["ori_img_h"])
        self.cut_height = float(cfg["cut_height"])
        self.prior_ys = torch.linspace(1, 0, self.n_strips + 1)

    def select(self, predictions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score threshold and NMS: kept proposal ``indices`` (B, top_k) in score order and
        their ``valid`` mask (B, top_k)."""
        predictions = predictions.detach().float()
        scores = torch.softmax(predictions[..., :2], dim=-1)[..., 1]
        suppress = suppression_matrix(predictions[..., 2] * self.n_strips, predictions[..., 3] * self.n_strips,
                                      predictions[..., 4:] * self.img_w, self.nms_thres)
        return lane_nms(scores, scores >= self.conf_threshold, suppress, self.top_k)

    def point_mask(self, rows: torch.Tensor) -> torch.Tensor:
        """(..., 4 + P) kept rows -> (..., P) bool: which of the P points a lane keeps."""
        n = self.n_strips
        start = (rows[..., 2].double() * n).round().clamp(0, n).unsqueeze(-1)
        end = (start + (rows[..., 3].double() * n).round().unsqueeze(-1) - 1).clamp(max=n)
        xs = rows[..., 4:]
        inside = (xs >= 0) & (xs <= 1)
        j = torch.arange(n + 1, device=rows.device, dtype=torch.float64)
        below = j < start
        # below the start only the unbroken run of inside points ending at start - 1 survives
        last_gap = torch.where(below & ~inside, j, torch.full_like(j, -1.0)).amax(-1, keepdim=True)
        return ((below & (j > last_gap)) | (~below & inside)) & (j <= end)

    def __call__(self, predictions: torch.Tensor) -> list[list[Lane]]:
        indices, valid = self.select(predictions)
        rows = torch.gather(predictions.detach().float(), 1,
                            indices.unsqueeze(-1).expand(-1, -1, predictions.shape[-1]))
        mask = self.point_mask(rows) & valid.unsqueeze(-1)
        xs = rows[..., 4:].cpu().numpy().astype(np.float64)
        mask = mask.cpu().numpy()
        ys = self.prior_ys.numpy().astype(np.float64)
        ys = (ys * (self.ori_h - self.cut_height) + self.cut_height) / self.ori_h
        out = []
        for img_xs, img_mask in zip(xs, mask):
            lanes = []
            for lane_xs, lane_mask in zip(img_xs, img_mask):
                if lane_mask.sum() < 2:
                    continue
                points = np.stack([lane_xs[lane_mask], ys[lane_mask]], axis=1)[::-1]
                lanes.append(Lane(np.ascontiguousarray(points)))
            out.append(lanes)
        return out


def culane_lines(lanes: Sequence[Lane], ori_w: int, ori_h: int) -> list[str]:
    """One ``x y`` line per lane (5 decimals, bottom first), lanes with < 2 points dropped."""
    lines = []
    for lane in lanes:
        pts = lane.to_culane(ori_w, ori_h)
        if len(pts) >= 2:
            lines.append(" ".join(f"{x:.5f} {y:.5f}" for x, y in pts))
    return lines


def write_culane_lines(path: str | os.PathLike, lanes: Sequence[Lane], ori_w: int, ori_h: int) -> None:
    """Write a CULane ``.lines.txt`` prediction file atomically (empty when no lane)."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    lines = culane_lines(lanes, ori_w, ori_h)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".lines.txt")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(line + "\n" for line in lines))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def tusimple_json_line(raw_file: str, lanes: Sequence[Lane], h_samples: Sequence[float],
                       run_time: float, ori_w: int, ori_h: int) -> str:
    """One line of a TuSimple prediction file (``raw_file``, ``lanes``, ``run_time`` in ms)."""
    xs = [[int(v) for v in lane.to_tusimple(h_samples, ori_w, ori_h)] for lane in lanes]
    return json.dumps({"raw_file": raw_file, "lanes": xs, "run_time": run_time})
