"""Inference-only rewrites of a trained network: BatchNorm folded into the preceding conv."""
from __future__ import annotations

import copy

import torch
from torch import nn


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv computing ``bn(conv(x))`` with ``bn`` in eval mode (its running statistics)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.to(conv.weight.device, conv.weight.dtype)


def fold_batch_norms(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` with every BatchNorm2d that directly follows a Conv2d folded
    into it: ``convN``/``bnN`` attribute pairs (ResNet blocks and stem) and (Conv2d,
    BatchNorm2d) pairs inside an ``nn.Sequential`` (downsample branches). Outputs agree to
    float rounding; the copy's state dict no longer matches the checkpoints."""
    net = copy.deepcopy(net).eval()
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = fold_conv_bn(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
        for name, child in list(module.named_children()):
            if name.startswith("conv") and isinstance(child, nn.Conv2d):
                bn = getattr(module, "bn" + name[4:], None)
                if isinstance(bn, nn.BatchNorm2d):
                    setattr(module, name, fold_conv_bn(child, bn))
                    setattr(module, "bn" + name[4:], nn.Identity())
    return net
