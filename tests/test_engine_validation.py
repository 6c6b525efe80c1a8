"""Validation and the run's loaders on their own, with a one-process stand-in for Fabric: the
split predicted and scored once per call, the inference copy made once and renewed, the data
preparation run once before the first loader."""
import torch

from helpers.engine import ToyBenchmark, ToyDecoder, ToyNet, make_cfg, toy_loader
from srlane.data.input_checks import InputChecks
from srlane.engine.loaders import SplitLoaders
from srlane.engine.validation import Validator
from srlane.models.inference import InferenceOptions


class OneProcess:
    """What Validator and SplitLoaders ask of Fabric, for one process on the CPU."""

    device, is_global_zero, global_rank, world_size = torch.device("cpu"), True, 0, 1

    def __init__(self):
        self.barriers = 0

    def broadcast(self, value, src=0):
        return value

    def barrier(self):
        self.barriers += 1


def test_validator_scores_the_split_with_one_inference_copy_renewed_in_place():
    torch.manual_seed(0)
    cfg, net, lines = make_cfg(toy_size=6), ToyNet().eval(), []
    validator = Validator(OneProcess(), lambda: toy_loader(cfg, "test", False), net, InferenceOptions(), ToyDecoder(),
                          ToyBenchmark(), InputChecks([], 0, lines.append), lines.append)
    first = validator()
    with torch.no_grad():
        expected = net(torch.stack([toy_loader(cfg, "test", False).dataset[i]["img"] for i in range(6)]))
    errors = [abs(float(p) - target) for p, target in zip(expected, [i % 3 for i in range(6)])]
    assert first["count"] == 6 and abs(first["metric"] + sum(errors) / 6) < 1e-6
    copy = validator.prepared
    with torch.no_grad():
        net.fc.bias += 1.0  # training moved the weights
    second = validator()
    assert validator.prepared is copy and torch.equal(copy.net.fc.bias, net.fc.bias)
    assert second["metric"] != first["metric"] and lines == []


def test_loaders_are_built_once_after_the_preparation():
    fabric, lines, built = OneProcess(), [], []
    cfg = make_cfg()

    def build(split, training, rank, world_size):
        built.append((split, training, rank, world_size))
        return toy_loader(cfg, split, training, rank, world_size)

    loaders = SplitLoaders(build, "train", "test", fabric, lines.append, prepare=lambda log: log("preparing the data"))
    assert built == [] and lines == []  # nothing before the first use
    assert loaders.val() is loaders.val() and loaders.train() is loaders.train()
    assert built == [("test", False, 0, 1), ("train", True, 0, 1)] and fabric.barriers == 1
    assert lines == ["preparing the data", "building the training loader"]
