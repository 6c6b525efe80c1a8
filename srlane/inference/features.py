"""Features of a prediction read during the network's own forward (``tools/embed.py``): a
``FeatureTap`` for ``predict_batches`` whose per-lane rows are those of the proposals the
decoder kept, so they belong exactly to the lanes written (docs/outputs.md, section 5).

The hooks sit on the network inside a prepared model (``prepare_for_inference``): BatchNorm
folding and channels-last keep the modules they read, ``torch.compile`` traces them; a CUDA
graph's replay runs no Python hooks, so ``check_tappable`` refuses it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from srlane.config import ConfigError
from srlane.models.inference import InferenceOptions

UNTAPPABLE_COMPILERS = ("cudagraph",)  # replays kernels: no forward hook runs


def check_tappable(options: InferenceOptions) -> None:
    """ConfigError (one line) when a model run as ``options`` say cannot be tapped."""
    if options.compile in UNTAPPABLE_COMPILERS:
        raise ConfigError(f"compile {options.compile!r} replays a captured CUDA graph, which runs no forward hooks: "
                          "features cannot be read from it; use --compile none or compile")


class EmbeddingTap:
    """Forward hooks on ``net`` (an SRLane) keeping, from its last forward, the backbone's last
    stage, the input of the last refine stage's classification branch (the same tensor feeds
    its regression branch) and the output. ``features(i, proposals)`` gives image ``i``'s:
    ``global`` (C,): the last stage averaged over height and width; ``lanes`` (K, D): the
    proposal feature of each of ``proposals``; ``scores`` (K,): their lane scores, as the
    decoder computes them. All float32."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self.seen: dict[str, torch.Tensor] = {}
        stage = net.roi_head.stage_heads[-1]
        self.handles = [net.backbone.register_forward_hook(self._backbone),
                        stage.cls_modules.register_forward_pre_hook(self._proposals),
                        net.register_forward_hook(self._output)]

    def _backbone(self, module: nn.Module, inputs: tuple, output: list[torch.Tensor]) -> None:
        self.seen["top"] = output[-1].detach()

    def _proposals(self, module: nn.Module, inputs: tuple) -> None:
        self.seen["proposals"] = inputs[0].detach()

    def _output(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.seen["output"] = output.detach()

    @property
    def widths(self) -> tuple[int, int]:
        """``(C, D)``: the widths of a global and of a lane feature."""
        stage = self.net.roi_head.stage_heads[-1]
        return int(self.net.backbone.out_channels[-1]), int(stage.cls_modules[0].in_features)

    def features(self, image: int, proposals: np.ndarray) -> dict[str, np.ndarray]:
        kept = torch.as_tensor(proposals, dtype=torch.long, device=self.seen["output"].device)
        logits = self.seen["output"][image, kept, :2].float()
        return {"global": self.seen["top"][image].float().mean(dim=(1, 2)).cpu().numpy(),
                "lanes": self.seen["proposals"][image, kept].float().cpu().numpy(),
                "scores": torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()}

    def remove(self) -> None:
        """Take the hooks off the network."""
        for handle in self.handles:
            handle.remove()
