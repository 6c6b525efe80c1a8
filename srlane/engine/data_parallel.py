"""DataParallel (the ``"dp"`` strategy, several GPUs in one process) with channels-last kept.

torch's DataParallel copies the module to every GPU at each forward through one coalesced
broadcast, which hands back contiguous (NCHW) tensors: the copy on the first GPU is the module
itself and keeps its channels-last weights, every other copy loses them. Here each copy's weights
take the memory format of the module's, so that every GPU runs the convolutions the run chose.
The same wrapper spreads validation's inference copy over the GPUs of a dp run.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from lightning.fabric import Fabric
from lightning.fabric.strategies import DataParallelStrategy
from torch import nn


def keep_memory_format(source: nn.Module, replica: nn.Module) -> int:
    """Give every 4-d parameter of ``replica`` (torch's data-parallel copy of ``source``, whose
    parameters are plain attributes) the channels-last layout where ``source``'s has it and the
    copy's has not; the conversion is a differentiable copy, so gradients still reach ``source``.
    Returns the number of parameters converted."""
    converted = 0
    for original, copy in zip(source.modules(), replica.modules()):
        for name, kept in original._parameters.items():
            param = getattr(copy, name, None)
            if (kept is None or param is None or param.dim() != 4
                    or not kept.is_contiguous(memory_format=torch.channels_last)
                    or param.is_contiguous(memory_format=torch.channels_last)):
                continue
            param = param.contiguous(memory_format=torch.channels_last)
            setattr(copy, name, param)
            if hasattr(copy, "_former_parameters"):  # what DDP reads of a replica
                copy._former_parameters[name] = param
            converted += 1
    return converted


class FormatKeepingDataParallel(nn.DataParallel):
    """:class:`torch.nn.DataParallel` whose per-GPU copies keep the module's memory format."""

    def replicate(self, module: nn.Module, device_ids: Sequence[int | torch.device]) -> list[nn.Module]:
        replicas = super().replicate(module, device_ids)
        for replica in replicas:  # the first GPU's copy holds the module's own tensors: nothing to convert
            keep_memory_format(module, replica)
        return replicas

    def load_weights(self, net: nn.Module) -> None:
        """The wrapped inference copy's ``load_weights`` (validation renews the weights in place)."""
        self.module.load_weights(net)


class FormatKeepingDPStrategy(DataParallelStrategy):
    """Fabric's ``"dp"`` strategy wrapping the network in :class:`FormatKeepingDataParallel`."""

    def setup_module(self, module: nn.Module) -> FormatKeepingDataParallel:
        return FormatKeepingDataParallel(module=module, device_ids=self.parallel_devices)


def dp_devices(fabric: Fabric) -> list[torch.device]:
    """The devices of a dp run's process (every GPU it splits batches over), else this process's
    device alone."""
    strategy = fabric.strategy
    if isinstance(strategy, DataParallelStrategy) and strategy.parallel_devices:
        return list(strategy.parallel_devices)
    return [fabric.device]


def spread_over(net: nn.Module, devices: Sequence[torch.device]) -> nn.Module:
    """``net`` split by batch over ``devices`` (its copies in ``net``'s memory format) when there
    are several, else ``net`` itself."""
    return FormatKeepingDataParallel(net, device_ids=list(devices)) if len(devices) > 1 else net
