"""Inference decoding (spec 7): scores, lane NMS, lanes as points (writers: ``srlane.lanes``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from srlane.lanes import Lane
from srlane.models.graph_decode import NO_POINT, FinalLanes, categories_torch
from srlane.models.nms import lane_nms, lane_nms_torch

NMS_BACKENDS = ("auto", "numpy", "torch")


class LaneDecoder:
    """Turns network outputs (B, N, 4 + num_points + C) into a list of :class:`Lane` per image.
    With a category head (C > 0 logits after the points) each lane gets its ``category`` (an
    OpenLane id, head class i is ``KNOWN_CATEGORIES[i]``) and ``category_score`` (its softmax
    probability); without one, category 0 and no score.

    Args:
        img_w: the network's input width (x of the outputs is a fraction of it).
        num_points: points per proposal (``4 + num_points`` geometry values a row).
        conf_threshold: lowest kept lane score.
        nms_thres: lane NMS distance threshold (spec 7.2), in input pixels.
        top_k: lanes kept per image at most.
        default_crop: ``(cut rows, image height)`` of images given no crop of their own
            (``(0, 1)``: y is a fraction of the network's input).
        nms_backend: where the threshold and NMS run: ``"auto"`` in torch on the predictions'
            device when it is not the CPU (:func:`lane_nms_torch`; only the kept rows are copied
            to the host, in one transfer), else in NumPy on the few proposals above the
            threshold (:func:`lane_nms`, the faster one on a CPU); ``"numpy"`` and ``"torch"``
            force one. Both keep the same proposals, so they give the same lanes.

    ``build_decoder(cfg)`` reads these from a config. Scores are computed on the predictions'
    device.
    """

    def __init__(self, img_w: int, num_points: int, conf_threshold: float, nms_thres: float, top_k: int,
                 default_crop: tuple[int, int] = (0, 1), nms_backend: str = "auto") -> None:
        if nms_backend not in NMS_BACKENDS:
            raise ValueError(f"nms_backend must be one of {NMS_BACKENDS}, not {nms_backend!r}")
        self.nms_backend = nms_backend
        self.conf_threshold = float(conf_threshold)
        self.nms_thres = float(nms_thres)
        self.top_k = int(top_k)
        self.img_w = float(img_w)
        self.n_strips = int(num_points) - 1
        self.end = 4 + int(num_points)  # the first column after a row's points
        self.default_crop = (int(default_crop[0]), int(default_crop[1]))
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
                        predictions[..., 4:self.end] * self.img_w, self.conf_threshold, self.nms_thres,
                        self.top_k)

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
                                        predictions[..., 3] * self.n_strips,
                                        predictions[..., 4:self.end] * self.img_w,
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
        """(K, 4 + P [+ C]) kept rows -> (K, P) bool: which of the P points a lane keeps."""
        n = self.n_strips
        start = np.clip(np.round(rows[:, 2].astype(np.float64) * n), 0, n)[:, None]
        end = np.minimum(start + np.round(rows[:, 3].astype(np.float64) * n)[:, None] - 1, n)
        xs = rows[:, 4:self.end]
        inside = (xs >= 0) & (xs <= 1)
        below = self.rows < start
        # below the start only the unbroken run of inside points ending at start - 1 survives
        last_gap = np.where(below & ~inside, self.rows, -1.0).max(-1, keepdims=True)
        return ((below & (self.rows > last_gap)) | (~below & inside)) & (self.rows <= end)

    def __call__(self, predictions: torch.Tensor | FinalLanes,
                 crops: Sequence[tuple[int, int]] | None = None) -> list[list[Lane]]:
        """Lanes per image; ``crops`` gives each image's ``(cut rows, height)`` (default: the
        decoder's ``default_crop`` for every image)."""
        return [[lane for lane, _ in image] for image in self.decode(predictions, crops)]

    def decode(self, predictions: torch.Tensor | FinalLanes,
               crops: Sequence[tuple[int, int]] | None = None) -> list[list[tuple[Lane, int]]]:
        """Per image, each lane with the index of the proposal it comes from (best score first):
        what ``__call__`` returns, with the proposal ids that features and raw outputs are read at.
        ``predictions`` may be the final lanes a graph decoded (an ONNX file of ``tools/export.py
        --with-decoder``): their points are taken as they are (no threshold, NMS or point rule
        here; the graph ran them with its own thresholds)."""
        if isinstance(predictions, FinalLanes):
            valid = predictions.valid.cpu().numpy()
            xs = predictions.xs.cpu().numpy()[valid]
            kinds = None
            if predictions.predictions.shape[-1] > self.end:
                kinds = (predictions.category.cpu().numpy()[valid], predictions.category_score.cpu().numpy()[valid])
            return self._lanes(xs, xs != NO_POINT, predictions.proposals.cpu().numpy()[valid],
                               valid.sum(-1).tolist(), crops, kinds)
        if self.on_device(predictions):
            preds, indices, valid = self._keep_on_device(predictions)
            kept_rows = preds.gather(1, indices[..., None].expand(-1, -1, preds.shape[-1]))
            packed = torch.cat([kept_rows, valid[..., None].to(kept_rows.dtype),
                                indices[..., None].to(kept_rows.dtype)], -1).cpu().numpy()  # one transfer
            found = packed[..., -2] > 0
            rows, counts = packed[..., :-2][found], found.sum(-1).tolist()
            ids = packed[..., -1][found].astype(np.int64)
        else:
            preds, scores = self._host(predictions)
            kept = self._keep(preds, scores)
            rows = np.concatenate([p[idx] for p, idx in zip(preds, kept)])
            counts = [len(idx) for idx in kept]
            ids = np.concatenate(kept).astype(np.int64) if kept else np.zeros(0, np.int64)
        kinds = lane_categories(rows[:, self.end:]) if rows.shape[-1] > self.end else None
        return self._lanes(rows[:, 4:self.end], self.point_mask(rows), ids, counts, crops, kinds)

    def _lanes(self, xs: np.ndarray, masks: np.ndarray, ids: np.ndarray, counts: Sequence[int],
               crops: Sequence[tuple[int, int]] | None,
               kinds: tuple[np.ndarray, np.ndarray] | None = None) -> list[list[tuple[Lane, int]]]:
        """Lanes (with their proposal ids) per image from the kept lanes' (K, P) xs, which of
        those rows hold a point (``masks``), their (K,) ids and, with a category head, their
        (K,) categories and scores (``kinds``), ``counts[i]`` of them image i's; a lane of fewer
        than two points is dropped."""
        xs = xs.astype(np.float64)
        out: list[list[tuple[Lane, int]]] = []
        lane = 0
        for image, count in enumerate(counts):
            lane_ys = self.lane_ys(*(crops[image] if crops is not None else self.default_crop))
            lanes = []
            for k in range(lane, lane + count):
                keep = masks[k]
                if np.count_nonzero(keep) >= 2:  # points top first, as the release emits them
                    points = np.stack((xs[k][keep][::-1], lane_ys[keep][::-1]), axis=1)
                    kind = {} if kinds is None else {"category": int(kinds[0][k]),
                                                     "category_score": float(kinds[1][k])}
                    lanes.append((Lane(points, **kind), int(ids[k])))
            out.append(lanes)
            lane += count
        return out


def lane_categories(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Category head logits (K, C) -> each lane's kind (an OpenLane id, head class i is
    ``KNOWN_CATEGORIES[i]``) and its softmax probability (float32, as the graph decoder's)."""
    category, score = categories_torch(torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)))
    return category.numpy(), score.numpy()


def build_decoder(cfg: Mapping[str, Any], **overrides: Any) -> LaneDecoder:
    """The decoder a config describes: ``test_parameters.conf_threshold``, ``nms_thres`` and
    ``nms_topk`` (else ``max_lanes``), ``img_w``, ``num_points`` and the default crop
    ``cut_height`` of an ``ori_img_h`` high image (neither: y is a fraction of the input).
    ``overrides`` replace any of the constructor's arguments (``conf_threshold=0.3``); None
    leaves the config's value."""
    test = cfg["test_parameters"]
    args = {"img_w": int(cfg["img_w"]), "num_points": int(cfg["num_points"]),
            "conf_threshold": float(test["conf_threshold"]), "nms_thres": float(test["nms_thres"]),
            "top_k": int(test.get("nms_topk", cfg["max_lanes"])),
            "default_crop": (int(cfg.get("cut_height", 0)), int(cfg.get("ori_img_h", 1)))}
    unknown = sorted(set(overrides) - set(args) - {"nms_backend"})
    if unknown:
        raise TypeError(f"build_decoder: unknown argument {unknown[0]}")
    args.update({key: value for key, value in overrides.items() if value is not None})
    return LaneDecoder(**args)
