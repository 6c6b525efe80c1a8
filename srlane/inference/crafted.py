"""Network outputs made by hand for timing and testing the decoder: a known number of lanes per
image whatever the weights (a random network's proposals rarely pass the score threshold)."""
from __future__ import annotations

import math

import torch


def crafted_predictions(batch: int, num_priors: int, num_points: int, max_lanes: int,
                        num_categories: int = 0) -> torch.Tensor:
    """Outputs (batch, num_priors, 4 + num_points + num_categories) with exactly ``max_lanes``
    confident, well separated full-height lanes per image (the first ``max_lanes`` proposals) and
    low scores elsewhere. With ``num_categories`` C > 0 the last C columns are category logits:
    proposal i of image b is head class ``(b + i) % C`` with probability ``2 / (C + 1)`` (its logit
    ``log 2``, the others 0)."""
    preds = torch.zeros(batch, num_priors, 4 + num_points + num_categories)
    preds[..., 0] = 2.0  # background
    preds[..., 3] = 1.0
    rows = torch.linspace(0, 1, num_points)
    for i in range(num_priors):
        preds[:, i, 4:4 + num_points] = (0.1 + 0.8 * (i % max_lanes) / max(1, max_lanes - 1)) + 0.05 * rows
    preds[:, :max_lanes, 0], preds[:, :max_lanes, 1] = -2.0, 2.0
    if num_categories:
        classes = (torch.arange(batch)[:, None] + torch.arange(num_priors)) % num_categories
        preds[..., 4 + num_points:].scatter_(-1, classes[..., None], math.log(2.0))
    return preds
