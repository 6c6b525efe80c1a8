"""The engine tests' stand-ins: a tiny network, dataset, benchmark, loader and decoder; a config
and a Runner over them (``make_runner``, built by ``build_runner`` as main.py builds its own);
hooks that record or interrupt a run; a benchmark whose metric is scripted per step; and the
``experiment`` fixture: a tiny synthetic CULane set and the real network trained 4 steps on CPU."""
import functools
import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import main
from srlane import synthetic
from srlane.config import Config
from srlane.data.loader import make_loader
from srlane.engine.build import build_runner
from srlane.engine.defaults import DEFAULTS
from srlane.engine.hooks import Hook
from srlane.models.weights import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
N_TRAIN, N_TEST = 8, 4  # images of the experiment's splits


class ToyData(Dataset):
    """Fixed random images; the target of image i is i % 3 (its record)."""

    def __init__(self, size: int, training: bool) -> None:
        self.records, self.training = [i % 3 for i in range(size)], training

    def __len__(self):
        return len(self.records)

    def __getitem__(self, key):
        i = key[1] if isinstance(key, tuple) else key  # (epoch, index) from the training sampler; no augmentation
        img = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(i))
        item = {"img": img, "meta": {"index": i, "img_name": f"{i}.jpg", "img_size": (4, 4), "cut_height": 0}}
        if self.training:
            item["target"] = torch.tensor(float(self.records[i]))
        return item


class ToyBenchmark:
    """Scores predictions by their mean distance to the targets (higher is better)."""

    def evaluator(self, records):
        def evaluate(predictions):
            errors = [abs(p[0] - target) for target, p in zip(records, predictions, strict=True)]
            return {"metric": -sum(errors) / len(errors), "count": len(predictions)}

        return evaluate

    def category_evaluator(self, records):
        return None  # its records carry no lane kinds


def collate(items):
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0] if k != "meta"}
    batch["meta"] = [it["meta"] for it in items]
    return batch


def toy_loader(cfg, split, training, rank=0, world_size=1):
    return make_loader(ToyData(cfg.toy_size, training), cfg.batch_size, cfg.workers, training, cfg.seed, rank,
                       world_size, collate_fn=collate)


class ToyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 1)
        self.nan_from_call = None
        self.calls = 0

    def forward(self, batch):
        img = batch["img"] if isinstance(batch, dict) else batch
        out = self.fc(self.conv(img).relu().mean((2, 3))).squeeze(1)
        if not self.training:
            return out
        self.calls += 1
        loss = ((out - batch["target"]) ** 2).mean()
        if self.nan_from_call is not None and self.calls >= self.nan_from_call:
            loss = loss * float("nan")
        return {"loss": loss, "loss_status": {"l2": loss.detach()}}


class ToyDecoder:
    """One "lane" per image: the toy network's float output, as proposal 0."""

    def decode(self, output, crops=None):
        return [[(float(v), 0)] for v in output]


def toy_parts(cfg, net=None):
    """build_runner's seams for the stand-in: network, benchmark, loaders and decoder."""
    return dict(net=net or ToyNet(), benchmark=ToyBenchmark(), build_loader=functools.partial(toy_loader, cfg),
                decoder=ToyDecoder())


def make_cfg(**overrides):
    cfg = Config(DEFAULTS)
    cfg.update(dict(dataset=dict(train_split="train", val_split="test"), toy_size=8, batch_size=4,
                    total_iter=6, eval_ep=2, save_interval=2, log_interval=1, workers=0,
                    accelerator="cpu", precision="32-true", strategy="ddp", max_nonfinite=2,
                    optimizer=dict(type="AdamW", lr=1e-2), scheduler=dict(type="warmup_cosine", warmup_iter=2),
                    # forced: a toy network has no backbone to measure (the measured defaults: test_autotune)
                    channels_last=False, inference=dict(DEFAULTS["inference"], fold_bn=False, channels_last=False)))
    cfg.update(overrides)
    return cfg


def make_runner(tmp_path, name="run", hooks=(), net=None, benchmark=None, gpus=(0,), resume=None, load_from=None,
                **overrides):
    """A Runner of the stand-in in ``tmp_path / name``; ``overrides`` are config keys."""
    torch.manual_seed(123)
    cfg = make_cfg(**overrides)
    parts = toy_parts(cfg, net)
    if benchmark is not None:
        parts["benchmark"] = benchmark
    return build_runner(cfg, str(tmp_path / name), gpus=gpus, hooks=hooks, resume=resume, load_from=load_from,
                        **parts)


class Record(Hook):
    """The learning rate before each step; (step, epoch, metric, is_best) of each validation."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.lrs, self.validations = [], []

    def before_step(self, state):
        self.lrs.append(self.optimizer.param_groups[0]["lr"])

    def after_validation(self, state, metrics, is_best):
        self.validations.append((state.step, state.epoch, metrics["metric"], is_best))


def add_record(runner) -> Record:
    """A ``Record`` of ``runner``, run after its other hooks."""
    record = Record(runner.optimizer)
    runner.hooks.append(record)
    return record


class Interrupt(Hook):
    """After step ``at_step``: a crash (``how="crash"``) or the signal ``how`` sent to this process."""

    def __init__(self, at_step, how):
        self.at_step, self.how = at_step, how

    def after_step(self, state):
        if state.step == self.at_step:
            if self.how == "crash":
                raise RuntimeError("simulated kill -9")
            os.kill(os.getpid(), self.how)


def weights(path):
    return load_checkpoint(path)["net"]


# 8 images at batch 4: 2 steps per epoch; eval_ep=1 validates at steps 2, 4, 6, ... and at the end.
SCHEDULE = dict(total_iter=20, eval_ep=1, save_interval=2)
# best 0.3 at step 4; then 0.2, 0.3 (not higher), 0.25: the third validation without improvement is at step 10.
# A run that forgot the count on resume would take 0.3 at step 8 as its first best and stop at step 14.
PLATEAU = {2: 0.1, 4: 0.3, 6: 0.2, 8: 0.3, 10: 0.25, 12: 0.2, 14: 0.1, 16: 0.1, 18: 0.1, 20: 0.1}


class ScriptedBenchmark(ToyBenchmark):
    """The metric of a validation is ``by_step[step]`` (the run's step when it validates)."""

    def __init__(self, by_step):
        self.by_step, self.state = by_step, None

    def evaluator(self, records):
        return lambda predictions: {"metric": self.by_step[self.state.step], "count": len(predictions)}


def scripted_runner(tmp_path, by_step, name="run", hooks=(), **overrides):
    """``make_runner`` on ``SCHEDULE`` whose validations score ``by_step[step]``."""
    benchmark = ScriptedBenchmark(by_step)
    runner = make_runner(tmp_path, name, hooks, benchmark=benchmark, **{**SCHEDULE, **overrides})
    benchmark.state = runner.state
    return runner


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A 256x96 experiment config over a generated set of 8 train and 4 test scenes, trained
    4 steps by main.py into ``full``; returns the folder holding ``exp.py``, ``data``, ``full``."""
    folder = tmp_path_factory.mktemp("e2e")
    synthetic.generate(folder / "data", "culane", N_TRAIN, N_TEST, seed=0, progress=False)
    cfg = folder / "exp.py"
    cfg.write_text(
        f"_base_ = [{str(ROOT / 'configs' / 'srlane_r18_synthetic.py')!r}]\n"
        "accelerator = 'cpu'\nimg_w = 256\nimg_h = 96\n"
        f"dataset = dict(data_root={str(folder / 'data')!r}, generate=dict(train={N_TRAIN}, test={N_TEST}, seed=0))\n"
        "batch_size = 2\nworkers = 0\ntotal_iter = 4\neval_ep = 100\nsave_interval = 2\nlog_interval = 1\n"
        "scheduler = dict(type='warmup_cosine', warmup_iter=2)\n"
        "test_parameters = dict(conf_threshold=0.0)  # an untrained net still predicts lanes to score\n"
    )
    main.main([str(cfg), "--work-dir", str(folder / "full")])
    return folder
