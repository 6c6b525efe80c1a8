"""The training network's memory format (the config's ``channels_last``): True or False as
given, or ``"auto"``: channels-last and contiguous memory each timed on a few forward+backward
passes of the backbone and neck (where the convolutions are, and where the format matters) at
batch 2 and the config's input size, the faster kept (``srlane.autotune``: once per machine and
shape, cached). Channels-last training is 1.1-1.5x slower than contiguous on an AVX2 EPYC and
faster on AVX-512 CPUs and CUDA tensor cores; both are the same maths to float rounding."""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from srlane.autotune import ChoiceCache, choose, machine_key
from srlane.config import check_choice

FORMATS: dict[str, torch.memory_format] = {"contiguous": torch.contiguous_format,
                                           "channels_last": torch.channels_last}
SETTINGS = (False, True, "auto")  # the config's channels_last
PROBE_BATCH = 2


def _step(net: nn.Module, img: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        net.zero_grad(set_to_none=True)
        sum(feat.float().sum() for feat in net.neck(net.backbone(img))).backward()
    return run


def training_memory_format(setting: bool | str, net: nn.Module, size: tuple[int, int] | None,
                           device: torch.device, log: Callable[[str], None]) -> str:
    """The name (a key of ``FORMATS``) of the memory format to train ``net`` in at input
    ``size`` (h, w) on ``device``; ``setting`` is the config's ``channels_last`` (ConfigError,
    one line, for another value)."""
    check_choice("channels_last", setting, SETTINGS)
    if setting != "auto":
        return choose("training memory format", FORMATS, "", ChoiceCache(warn=log), log,
                      forced="channels_last" if setting else "contiguous")
    runs = {}
    for name, memory_format in FORMATS.items():
        probe = copy.deepcopy(net).to(device, memory_format=memory_format).train()
        noise = torch.Generator(device).manual_seed(0)  # the run's random streams stay untouched
        img = torch.rand(PROBE_BATCH, 3, *size, device=device, generator=noise).contiguous(memory_format=memory_format)
        runs[name] = _step(probe, img)
    key = machine_key("training memory format", device, [(PROBE_BATCH, 3, *size)])
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    return choose("training memory format", runs, key, ChoiceCache(warn=log), log, repeats=2, sync=sync)
