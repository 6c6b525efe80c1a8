"""Refine head: depth-weighted feature sampling along proposals, multi-segment attention and
the class / regression branches (spec section 5)."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class GroupedConv1d(nn.Conv1d):
    """A grouped ``nn.Conv1d`` (the same parameters and checkpoint keys) computed in float32
    under a CPU autocast. oneDNN's bfloat16 grouped 1-d convolution on CPU (torch 2.13, an
    AVX-512/AMX Xeon) returns wrong values: relative error ~1 on ``gather_fc``, which made every
    lane of a trained net wrong. In float32 these small layers cost little; without a CPU
    autocast, and on CUDA, it is ``nn.Conv1d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


class SegmentAttention(nn.Module):
    """Grouped attention among the proposals of one image.

    The query is shared by all groups, keys are a grouped 1x1 convolution and the values are
    the input split into ``num_groups`` channel groups.
    """

    def __init__(self, dim: int, num_groups: int) -> None:
        super().__init__()
        if dim % num_groups:
            raise ValueError(f"fc_hidden_dim {dim} is not divisible by num_groups {num_groups}")
        self.num_groups = num_groups
        self.group_dim = dim // num_groups
        self.q_proj = nn.Linear(dim, self.group_dim)
        self.k_proj = GroupedConv1d(dim, dim, 1, groups=num_groups)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, N, C) -> output (B, N, C) and attention (B, groups, N, N)."""
        b, n, c = x.shape
        q = self.q_proj(x).unsqueeze(1)  # (B, 1, N, d)
        k = self.k_proj(x.transpose(1, 2)).view(b, self.num_groups, self.group_dim, n)
        attn = torch.softmax(q @ k / math.sqrt(self.group_dim), dim=-1)  # (B, G, N, N)
        v = x.view(b, n, self.num_groups, self.group_dim).transpose(1, 2)  # (B, G, N, d)
        out = (attn @ v.to(attn.dtype)).transpose(1, 2).reshape(b, n, c)
        return out, attn


class RefineStage(nn.Module):
    """One refinement stage: proposals (B, N, 4 + P [+ K]) -> refined predictions (B, N, 4 + P + K).

    ``num_categories`` K > 0 adds the category head (``category_modules``, ``category_layers``,
    mirroring the class branch) on the per-lane feature; its K logits are the last columns.
    """

    def __init__(self, num_points: int = 72, in_channels: int = 64, n_levels: int = 3,
                 sample_points: int = 36, fc_hidden_dim: int = 192, num_groups: int = 6,
                 z_mean: float = 0.9269, z_std: float = 0.2379, num_categories: int = 0) -> None:
        super().__init__()
        self.num_points = num_points
        self.n_strips = num_points - 1
        self.n_levels = n_levels
        self.sample_points = sample_points
        idx = (torch.linspace(0, 1, sample_points) * self.n_strips).long()
        self.register_buffer("sample_x_indexs", idx)
        self.register_buffer("prior_feat_ys", torch.flip(1 - idx.float() / self.n_strips, dims=[-1]))
        self.z_embeddings = nn.Parameter(torch.empty(sample_points))
        self.gather_fc = GroupedConv1d(sample_points, fc_hidden_dim, in_channels, groups=num_groups)
        # Present in the released checkpoints but unused by the released forward: kept for
        # strict loading, frozen so that it never asks DDP for a gradient.
        self.shuffle_fc = nn.Linear(fc_hidden_dim, fc_hidden_dim).requires_grad_(False)
        self.channel_fc = nn.ModuleList([nn.Sequential(
            nn.Linear(fc_hidden_dim, 2 * fc_hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(2 * fc_hidden_dim, fc_hidden_dim))])
        self.segment_attn = nn.ModuleList([SegmentAttention(fc_hidden_dim, num_groups)])
        self.reg_modules = nn.Sequential(nn.Linear(fc_hidden_dim, fc_hidden_dim), nn.ReLU(inplace=True))
        self.cls_modules = nn.Sequential(nn.Linear(fc_hidden_dim, fc_hidden_dim), nn.ReLU(inplace=True))
        self.reg_layers = nn.Linear(fc_hidden_dim, num_points + 2)
        self.cls_layers = nn.Linear(fc_hidden_dim, 2)
        head_layers = [self.reg_layers, self.cls_layers]
        self.num_categories = int(num_categories)
        if self.num_categories > 0:
            self.category_modules = nn.Sequential(nn.Linear(fc_hidden_dim, fc_hidden_dim), nn.ReLU(inplace=True))
            self.category_layers = nn.Linear(fc_hidden_dim, self.num_categories)
            head_layers.append(self.category_layers)
        for layer in head_layers:
            nn.init.normal_(layer.weight, 0.0, 1e-3)
            nn.init.normal_(layer.bias, 0.0, 1e-3)
        nn.init.normal_(self.z_embeddings, z_mean, z_std)

    def level_weights(self) -> torch.Tensor:
        """(sample_points, n_levels) softmax weights of each level at each sample point."""
        levels = torch.arange(self.n_levels, device=self.z_embeddings.device, dtype=self.z_embeddings.dtype)
        return torch.softmax(-(self.z_embeddings.unsqueeze(-1) - levels).pow(2) / 2.0, dim=-1)

    def pool(self, feats_coarse_first: Sequence[torch.Tensor], priors: torch.Tensor) -> torch.Tensor:
        """Sampled features (B*N, sample_points, C) along the proposals, levels mixed by depth."""
        b, n = priors.shape[:2]
        xs = priors[..., 4 + self.sample_x_indexs].flip(-1)
        ys = self.prior_feat_ys.to(xs.dtype).expand(b, n, -1)
        grid = torch.stack((xs, ys), dim=-1) * 2 - 1  # (B, N, S, 2)
        weights = self.level_weights()
        pooled = 0
        for level, feat in enumerate(feats_coarse_first):
            sampled = F.grid_sample(feat, grid.to(feat.dtype), align_corners=True)  # (B, C, N, S)
            pooled = pooled + sampled * weights[:, level].to(sampled.dtype)
        return pooled.permute(0, 2, 3, 1).reshape(b * n, self.sample_points, -1)

    def forward(self, feats_coarse_first: Sequence[torch.Tensor],
                priors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns predictions (B, N, 4 + P + K) and the attention map (B, groups, N, N)."""
        b, n = priors.shape[:2]
        fc = self.gather_fc(self.pool(feats_coarse_first, priors)).view(b, n, -1)
        for attn_layer, mlp in zip(self.segment_attn, self.channel_fc):
            out, attn = attn_layer(fc)
            fc = fc + mlp(out)
        logits = self.cls_layers(self.cls_modules(fc))
        reg = self.reg_layers(self.reg_modules(fc))
        parts = [logits.to(priors.dtype), priors[..., 2:4 + self.num_points] + reg]
        if self.num_categories > 0:
            parts.append(self.category_layers(self.category_modules(fc)).to(priors.dtype))
        return torch.cat(parts, dim=-1), attn


class RefineHead(nn.Module):
    """``refine_layers`` stages; each refines the (detached) output of the previous one."""

    def __init__(self, refine_layers: int = 1, z_mean: float | Sequence[float] = 0.9269,
                 z_std: float | Sequence[float] = 0.2379, num_points: int = 72, **stage_kwargs) -> None:
        super().__init__()
        z_mean = _per_stage(z_mean, refine_layers, "z_mean")
        z_std = _per_stage(z_std, refine_layers, "z_std")
        self.register_buffer("prior_ys", torch.linspace(1, 0, num_points))
        self.stage_heads = nn.ModuleList(
            RefineStage(num_points=num_points, z_mean=m, z_std=s, **stage_kwargs)
            for m, s in zip(z_mean, z_std))

    def forward(self, feats: Sequence[torch.Tensor], priors: torch.Tensor) -> list[torch.Tensor]:
        """``feats`` fine to coarse. Returns each stage's predictions (the last is the output)."""
        coarse_first = list(feats)[::-1]
        outputs = []
        for stage in self.stage_heads:
            predictions, _ = stage(coarse_first, priors)
            outputs.append(predictions)
            priors = predictions.detach()
        return outputs


def _per_stage(value: float | Sequence[float], n: int, name: str) -> list[float]:
    values = [float(value)] * n if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != n:
        raise ValueError(f"model.refine_head.{name}: need {n} values (one per refine layer), got {len(values)}")
    return values
