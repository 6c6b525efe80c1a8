"""The run's two loaders, training and validation, each built on first use: after the data
preparation (e.g. generating the synthetic set), which runs once, on rank 0, while the other
ranks wait."""
from __future__ import annotations

from collections.abc import Callable

from lightning.fabric import Fabric
from torch.utils.data import DataLoader

from srlane.benchmarks import Benchmark
from srlane.config import Config
from srlane.data.dataset import build_dataset
from srlane.data.loader import build_dataloader

LoaderBuilder = Callable[[str, bool, int, int], DataLoader]  # (split, training, rank, world size)
Prepare = Callable[[Callable[[str], None]], None]  # data preparation, given a log function


def split_loader(cfg: Config, benchmark: Benchmark, split: str, training: bool, rank: int = 0, world_size: int = 1,
                 pin_memory: bool = False, report: Callable[[str], None] | None = None) -> DataLoader:
    """The loader of a benchmark split as the config says (dataset, batch size, workers, seed);
    ``pin_memory`` (for CUDA) makes its host-to-device copies asynchronous; ``report`` gets the
    line of each training image left out for a bad label (``Benchmark.read_split``)."""
    dataset = build_dataset(cfg, benchmark.read_split(split, training, report), training)
    return build_dataloader(cfg, dataset, training, rank, world_size, pin_memory)


class SplitLoaders:
    """Args:
        build: ``(split, training, rank, world size) -> DataLoader`` whose dataset has ``records``;
            a training loader's sampler is an ``EpochSampler``, whose ``(epoch, index)`` keys its
            dataset takes. Under several processes each rank reads its own share.
        train_split, val_split: the splits ``build`` is given.
        fabric: this process's rank, the number of processes, the barrier.
        log: where the preparation and the training loader's start are told.
        prepare: the data preparation, given ``log``; None: nothing to prepare.
    """

    def __init__(self, build: LoaderBuilder, train_split: str, val_split: str, fabric: Fabric,
                 log: Callable[[str], None], prepare: Prepare | None = None) -> None:
        self.build, self.splits, self.fabric, self.log = build, {True: train_split, False: val_split}, fabric, log
        self.prepare = prepare
        self._loaders: dict[bool, DataLoader] = {}

    def train(self) -> DataLoader:
        """The training loader (this rank's share)."""
        return self._loader(True)

    def val(self) -> DataLoader:
        """The validation loader (this rank's share)."""
        return self._loader(False)

    def _loader(self, training: bool) -> DataLoader:
        if training not in self._loaders:
            if self.prepare is not None:
                if self.fabric.is_global_zero:
                    self.prepare(self.log)
                self.fabric.barrier()
                self.prepare = None  # once
            if training:
                self.log("building the training loader")
            self._loaders[training] = self.build(self.splits[training], training, self.fabric.global_rank,
                                                 self.fabric.world_size)
        return self._loaders[training]
