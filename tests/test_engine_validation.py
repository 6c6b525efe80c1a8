"""Validation and the run's loaders on their own, with a one-process stand-in for Fabric: the
split predicted and scored once per call, the inference copy made once and renewed, the data
preparation run once before the first loader."""
import pytest
import torch
from lightning.fabric import Fabric

from helpers.engine import ToyBenchmark, ToyDecoder, ToyNet, make_cfg, toy_loader
from srlane.data.input_checks import InputChecks
from srlane.engine import distributed
from srlane.engine.distributed import RankFailure
from srlane.engine.fabric import precision_arguments
from srlane.engine.loaders import SplitLoaders
from srlane.engine.validation import Validator
from srlane.models.inference import InferenceOptions


class OneProcess:
    """What Validator and SplitLoaders ask of Fabric, for one process on the CPU."""

    device, is_global_zero, global_rank, world_size = torch.device("cpu"), True, 0, 1
    strategy = None  # no DataParallel

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
    assert second["metric"] != first["metric"]
    assert len(lines) == 1 and lines[0].startswith("autotune inference: chose ")  # the default options, settled once


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


class TwoProcesses(OneProcess):
    """Rank 0 of two: what the other process contributes to each all-gather is ``other``."""

    world_size = 2

    def __init__(self, other):
        super().__init__()
        self.other = other


@pytest.fixture
def two_ranks(monkeypatch):
    """dist.all_gather_object of two processes, the other one's values scripted per call."""
    scripted = []

    def all_gather_object(out, value):
        out[0], out[1] = value, scripted.pop(0)

    monkeypatch.setattr(distributed.dist, "all_gather_object", all_gather_object)
    return scripted


def test_a_failure_on_another_process_stops_this_one_with_its_line(two_ranks):
    two_ranks += ["cannot read image /data/b.jpg"]
    with pytest.raises(RankFailure, match=r"^process 1 failed: cannot read image /data/b.jpg$"):
        distributed.shared_failure(TwoProcesses(None), None)
    two_ranks += [None]
    with pytest.raises(ValueError, match="mine"):  # the failing process raises its own error
        distributed.shared_failure(TwoProcesses(None), ValueError("mine"))
    two_ranks += [None]
    distributed.shared_failure(TwoProcesses(None), None)  # nobody failed: no error


def test_validation_of_two_processes_agrees_on_a_failure_before_gathering(two_ranks):
    """This rank predicts its share; the other process could not read an image: this one stops
    with that line at once instead of waiting in the predictions' gather."""
    cfg, net = make_cfg(toy_size=6), ToyNet().eval()
    fabric = TwoProcesses(None)
    validator = Validator(fabric, lambda: toy_loader(cfg, "test", False), net, InferenceOptions(), ToyDecoder(),
                          ToyBenchmark(), InputChecks([], 0, print), print)
    two_ranks += ["validation image x.jpg: cannot read it"]  # only the first collective is reached
    with pytest.raises(RankFailure, match="process 1 failed: validation image x.jpg: cannot read it"):
        validator()
    assert two_ranks == []


@pytest.mark.parametrize("inference, expected", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_validation_runs_at_the_inference_precision_not_the_training_one(inference, expected):
    """In a bf16-mixed run the network trains under Fabric's autocast; validation runs it as the
    inference options say (fp32 by default), as tools/predict.py does, so both give one metric."""
    fabric = Fabric(accelerator="cpu", devices=1, **precision_arguments("bf16-mixed", "cpu"))
    cfg, net, seen = make_cfg(toy_size=4), ToyNet().eval(), []
    net.conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    validator = Validator(fabric, lambda: toy_loader(cfg, "test", False), net, InferenceOptions(precision=inference),
                          ToyDecoder(), ToyBenchmark(), InputChecks([], 0, print), print)
    validator()  # the training loop calls it outside the step's autocast
    assert seen and set(seen) == {expected}
