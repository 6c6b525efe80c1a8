"""Network outputs made by hand for timing and testing the decoder: a known number of lanes per
image whatever the weights (a random network's proposals rarely pass the score threshold)."""
from __future__ import annotations

import torch


def crafted_predictions(batch: int, num_priors: int, num_points: int, max_lanes: int) -> torch.Tensor:
    """Outputs (batch, num_priors, 4 + num_points) with exactly ``max_lanes`` confident, well
    separated full-height lanes per image (the first ``max_lanes`` proposals) and low scores elsewhere."""
    preds = torch.zeros(batch, num_priors, 4 + num_points)
    preds[..., 0] = 2.0  # background
    preds[..., 3] = 1.0
    rows = torch.linspace(0, 1, num_points)
    for i in range(num_priors):
        preds[:, i, 4:] = (0.1 + 0.8 * (i % max_lanes) / max(1, max_lanes - 1)) + 0.05 * rows
    preds[:, :max_lanes, 0], preds[:, :max_lanes, 1] = -2.0, 2.0
    return preds
