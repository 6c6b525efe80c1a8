"""Networks, configs and outputs the inference tests share."""
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from srlane.cli import run_cli
from srlane.config import Config
from srlane.inference.crafted import crafted_predictions
from srlane.models import build_net

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ROOT / "configs" / "srlane_r18_synthetic.py"


def r18_config(w: int = 160, h: int = 64) -> Config:
    """The R18 model config at a ``w x h`` input for CULane's 1640x590 images (crop 270), no
    ImageNet weights."""
    cfg = Config.fromfile(ROOT / "configs" / "models" / "srlane_r18.py")
    cfg.model.backbone.pretrained = False
    cfg.update(img_w=w, img_h=h, ori_img_w=1640, ori_img_h=590, cut_height=270)
    return cfg


def lane_emitting_net(cfg: Config) -> nn.Module:
    """A random-init network (seed 0), in eval mode, whose proposals decode as lanes: random
    proposals have length ~0, so the refine head's length bias gives them the full height."""
    torch.manual_seed(0)
    net = build_net(cfg, pretrained=False).eval()
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith("reg_layers.bias"):
                param[1] = 1.0
    return net


def trained_like(net: nn.Module) -> nn.Module:
    """``net`` with refine-head outputs of order one (a random-init head outputs ~1e-3 around the
    proposals), where precision errors show."""
    stage = net.roi_head.stage_heads[-1]
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in (stage.cls_layers, stage.reg_layers):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.05)
        stage.reg_layers.bias[1] = 1.0
    return net


def random_predictions(batch: int = 8) -> torch.Tensor:
    """Network-like outputs (batch, 40, 76): random scores, starts and lengths, near-vertical lanes."""
    g = torch.Generator().manual_seed(0)
    preds = torch.randn(batch, 40, 76, generator=g)
    preds[..., 2:4] = torch.rand(batch, 40, 2, generator=g)
    preds[..., 4:] = torch.rand(batch, 40, 1, generator=g) + 0.02 * torch.randn(batch, 40, 72, generator=g)
    return preds


def tie_heavy_predictions(batch: int, img_w: int, nms_thres: float) -> torch.Tensor:
    """Outputs (batch, 40, 76) made of ties: three score levels (0.5 exactly: equal logits, on a
    0.5 threshold; about 0.63 and 0.75), a third of the proposals copies of another
    (equal scores and lanes), the others integer pixels apart by whole multiples of ``nms_thres``
    (distances exactly at the threshold); x on a grid of 1 / ``img_w`` (a power of two: exact
    pixels), starts and lengths on whole and half rows."""
    g = torch.Generator().manual_seed(1)
    preds = torch.zeros(batch, 40, 76)
    preds[..., 1] = torch.randint(0, 3, (batch, 40), generator=g).float() * math.log(3) / 2
    preds[..., 2] = torch.randint(0, 12, (batch, 40), generator=g).float() / 2 / 71
    preds[..., 3] = torch.randint(40, 144, (batch, 40), generator=g).float() / 2 / 71
    base = torch.randint(0, img_w // 2, (batch, 1, 1), generator=g).float()
    offsets = torch.randint(-3, 4, (batch, 40, 1), generator=g).float() * nms_thres
    slope = torch.randint(-1, 2, (batch, 40, 1), generator=g).float() * torch.arange(72.0) / 4
    preds[..., 4:] = (base + offsets + slope).round() / img_w
    copies = torch.randint(0, 40, (batch, 13), generator=g)
    for b in range(batch):
        preds[b, 27:] = preds[b, copies[b]]
    return preds


def decoder_cases():
    """``(config, conf_threshold or None, outputs)`` on which decoders must agree: random outputs,
    the same with equal scores and equal lanes, tie-heavy ones, at 4 lanes (800x320) and 16
    lanes (CurveLanes' top_k, a 5 px NMS threshold); batch 8."""
    preds = random_predictions()
    tied = preds.clone()
    tied[:, 1::2, :2] = tied[:, ::2, :2]  # equal scores
    tied[:, 1::4, 4:] = tied[:, ::4, 4:][:, :tied[:, 1::4].shape[1]]  # equal lanes
    cfg16 = r18_config(w=256, h=128)
    cfg16.max_lanes, cfg16.test_parameters.nms_topk, cfg16.test_parameters.nms_thres = 16, 16, 5.0
    for conf in (None, 0.0, 0.3, 0.9, 1.0):
        yield r18_config(), conf, preds
        yield r18_config(), conf, tied
    yield cfg16, None, crafted_predictions(2, 40, 72, 12)
    yield cfg16, 0.0, preds
    for conf in (0.0, 0.5, 0.7):
        yield cfg16, conf, tie_heavy_predictions(8, 256, 5.0)


def save_checkpoint(path: Path, net: nn.Module, config: Config | None = None) -> Path:
    """A checkpoint of ``net``'s weights and, when given, the config it was trained with (as the
    Runner saves it)."""
    torch.save({"net": net.state_dict(), **({"config": config.to_dict()} if config is not None else {})}, path)
    return path


# what a checkpoint's config may differ in, each a change that makes its outputs mean another thing
GEOMETRY_CHANGES = {"input size": {"img_w": 384, "img_h": 160}, "num_points": {"num_points": 36},
                    "max_lanes": {"max_lanes": 5}}


def checkpoint_of_other_geometry(folder: Path, net: nn.Module, cfg: Config, change: str) -> tuple[Path, list[str]]:
    """A checkpoint of ``net`` whose config differs from ``cfg`` as ``GEOMETRY_CHANGES[change]``
    says, and what the refusal must name: each key with both values."""
    other = Config(cfg.to_dict())
    other.update(GEOMETRY_CHANGES[change])
    path = save_checkpoint(folder / f"other {change}.pth", net, other)
    return path, [f"{key} {value!r} in the checkpoint, {cfg[key]!r} in this config"
                  for key, value in GEOMETRY_CHANGES[change].items()]


def exit_status(main: Callable[[list[str]], object], argv: list[str], *errors: type[BaseException]) -> int:
    """The exit status of ``main(argv)`` ended as its script ends it (``run_cli`` with ``errors``)."""
    with pytest.raises(SystemExit) as done:
        run_cli(lambda: main(argv), *errors)
    return done.value.code


def assert_geometry_refused(stderr: str, checkpoint: Path, named: list[str]) -> None:
    """``stderr`` is the one line refusing ``checkpoint`` that names each of ``named``."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {checkpoint} was trained with another"), lines
    assert all(part in lines[0] for part in named), lines[0]
