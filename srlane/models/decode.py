"""Inference decoding (spec 7): scores, lane NMS, lanes as points (writers: ``srlane.lanes``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from srlane.lanes import Lane
from srlane.models.nms import lane_nms, lane_nms_torch

NMS_BACKENDS = ("auto", "numpy", "torch")


class LaneDecoder:
    """Turns network outputs (B, N, 4 + num_points) into a list of :class:`Lane` per image.

    It reads the decoding keys of a config: ``test_parameters.conf_threshold``, ``nms_thres`` and
    ``nms_topk`` (else ``max_lanes``), ``img_w``, ``num_points``, and the default crop
    ``cut_height`` of an ``ori_img_h`` high image (none when the config has neither: y is then a
    fraction of the network's input; ``conf_threshold`` overrides the config's). The
    config is the constructor's argument because the release-fidelity tests build it so.
    Scores are computed on the predictions' device. ``nms_backend`` picks where the threshold
    and NMS run: ``"auto"`` (the default) runs them in torch on the predictions' device when it is
    not the CPU (:func:`lane_nms_torch`; only the kept rows are copied to the host, in one
    transfer), else in NumPy on the few proposals above the threshold (:func:`lane_nms`, the
    faster one on a CPU); ``"numpy"`` and ``"torch"`` force one. Both keep the same proposals,
    so they give the same lanes.
    """

    def __init__(self, cfg: Mapping[str, Any], conf_threshold: float | None = None, nms_backend: str = "auto") -> None:
        if nms_backend not in NMS_BACKENDS:
            raise ValueError(f"nms_backend must be one of {NMS_BACKENDS}, not {nms_backend!r}")
        self.nms_backend = nms_backend
        test = cfg["test_parameters"]
        self.conf_threshold = float(test["conf_threshold"] if conf_threshold is None else conf_threshold)
        self.nms_thres = float(test["nms_thres"])
        self.top_k = int(test.get("nms_topk", cfg["max_lanes"]))
        self.img_w = float(cfg["img_w"])
        self.n_strips = int(cfg.get("num_points", 72)) - 1
        self.default_crop = (int(cfg.get("cut_height", 0)), int(cfg.get("ori_img_h", 1)))
        self.rows = np.arange(self.n_strips + 1, dtype=np.float64)
        self._lane_ys: dict[tuple[int, int], np.ndarray] = {}

    def lane_ys(self, cut: int, height: int) -> np.ndarray:
        """The rows of the predicted points as fractions of an image ``height`` whose top ``cut``
        rows were cropped away, bottom first."""
        key = (int(cut), int(height))
        if key not in self._lane_ys:
            ys = torch.linspace(1, 0, self.n_strips + 1).numpy().astype(np.float64)
            self._lane_ys[key] = (ys * (float(height) - cut) + cut) / float(height)
        return self._lane_ys[key]

    def _host(self, predictions: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        predictions = predictions.detach().float()
        scores = torch.softmax(predictions[..., :2], dim=-1)[..., 1]
        return predictions.cpu().numpy(), scores.cpu().numpy()

    def _keep(self, predictions: np.ndarray, scores: np.ndarray) -> list[np.ndarray]:
        """Kept proposal indices of each image of (B, N, 4 + P) predictions, best first."""
        return lane_nms(scores, predictions[..., 2] * self.n_strips, predictions[..., 3] * self.n_strips,
                        predictions[..., 4:] * self.img_w, self.conf_threshold, self.nms_thres, self.top_k)

    def on_device(self, predictions: torch.Tensor) -> bool:
        """Whether the threshold and NMS of ``predictions`` run in torch on their device."""
        if self.nms_backend == "auto":
            return predictions.device.type != "cpu"
        return self.nms_backend == "torch"

    def _keep_on_device(self, predictions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Float predictions, kept ``indices`` and ``valid`` (B, top_k), all on the predictions'
        device, the same arithmetic as :meth:`_keep`."""
        predictions = predictions.detach().float()
        scores = torch.softmax(predictions[..., :2], dim=-1)[..., 1]
        indices, valid = lane_nms_torch(scores, predictions[..., 2] * self.n_strips,
                                        predictions[..., 3] * self.n_strips, predictions[..., 4:] * self.img_w,
                                        self.conf_threshold, self.nms_thres, self.top_k)
        return predictions, indices, valid

    def select(self, predictions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score threshold and NMS: kept proposal ``indices`` (B, top_k) in score order and
        their ``valid`` mask (B, top_k), on the CPU."""
        if self.on_device(predictions):
            _, indices, valid = self._keep_on_device(predictions)
            packed = torch.cat([indices, valid.long()], -1).cpu()  # one transfer
            return packed[:, :self.top_k], packed[:, self.top_k:].bool()
        kept = self._keep(*self._host(predictions))
        indices = torch.zeros(len(kept), self.top_k, dtype=torch.long)
        valid = torch.zeros(len(kept), self.top_k, dtype=torch.bool)
        for i, idx in enumerate(kept):
            indices[i, :len(idx)] = torch.from_numpy(idx)
            valid[i, :len(idx)] = True
        return indices, valid

    def point_mask(self, rows: np.ndarray) -> np.ndarray:
        """(K, 4 + P) kept rows -> (K, P) bool: which of the P points a lane keeps."""
        n = self.n_strips
        start = np.clip(np.round(rows[:, 2].astype(np.float64) * n), 0, n)[:, None]
        end = np.minimum(start + np.round(rows[:, 3].astype(np.float64) * n)[:, None] - 1, n)
        xs = rows[:, 4:]
        inside = (xs >= 0) & (xs <= 1)
        below = self.rows < start
        # below the start only the unbroken run of inside points ending at start - 1 survives
        last_gap = np.where(below & ~inside, self.rows, -1.0).max(-1, keepdims=True)
        return ((below & (self.rows > last_gap)) | (~below & inside)) & (self.rows <= end)

    def __call__(self, predictions: torch.Tensor, crops: Sequence[tuple[int, int]] | None = None) -> list[list[Lane]]:
        """Lanes per image; ``crops`` gives each image's ``(cut rows, height)`` (default: the
        config's ``cut_height`` and ``ori_img_h`` for every image)."""
        if self.on_device(predictions):
            preds, indices, valid = self._keep_on_device(predictions)
            kept_rows = preds.gather(1, indices[..., None].expand(-1, -1, preds.shape[-1]))
            packed = torch.cat([kept_rows, valid[..., None].to(kept_rows.dtype)], -1).cpu().numpy()  # one transfer
            found = packed[..., -1] > 0
            rows, counts = packed[..., :-1][found], found.sum(-1).tolist()
        else:
            preds, scores = self._host(predictions)
            kept = self._keep(preds, scores)
            rows = np.concatenate([p[idx] for p, idx in zip(preds, kept)])
            counts = [len(idx) for idx in kept]
        return self._lanes(rows, counts, crops)

    def _lanes(self, rows: np.ndarray, counts: Sequence[int],
               crops: Sequence[tuple[int, int]] | None) -> list[list[Lane]]:
        """Lanes per image from the kept (K, 4 + P) rows, ``counts[i]`` of them image i's."""
        masks = self.point_mask(rows)
        xs = rows[:, 4:].astype(np.float64)
        out: list[list[Lane]] = []
        lane = 0
        for image, count in enumerate(counts):
            lane_ys = self.lane_ys(*(crops[image] if crops is not None else self.default_crop))
            lanes = []
            for keep, lane_xs in zip(masks[lane:lane + count], xs[lane:lane + count]):
                if np.count_nonzero(keep) >= 2:  # points top first, as the release emits them
                    lanes.append(Lane(np.stack((lane_xs[keep][::-1], lane_ys[keep][::-1]), axis=1)))
            out.append(lanes)
            lane += count
        return out

