"""The dp strategy: every GPU's copy of the network keeps the channels-last weights (torch's
broadcast hands back NCHW copies), and validation is split over the run's GPUs.

On the CPU the copies are made as torch's ``replicate`` makes them (each module's
``_replicate_for_data_parallel``, parameters set as plain attributes), with contiguous tensors
standing for what the broadcast returns; the ``cuda`` test runs torch's own on two GPUs."""
import sys

import pytest
import torch
from lightning.fabric.strategies import DataParallelStrategy
from torch import nn

import srlane.engine.fabric as fabric_module
from helpers.engine import ToyBenchmark, ToyDecoder, ToyNet, make_cfg, toy_loader
from srlane.data.input_checks import InputChecks
from srlane.engine import validation as validation_module
from srlane.engine.data_parallel import FormatKeepingDataParallel, FormatKeepingDPStrategy, keep_memory_format
from srlane.engine.fabric import build_fabric
from srlane.engine.validation import Validator
from srlane.models.inference import InferenceOptions

DP_MODULE = sys.modules["torch.nn.parallel.data_parallel"]  # the module, which its function's name hides


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))
    return net.to(memory_format=torch.channels_last)


def broadcast_like_replicate(network: nn.Module, devices, detach: bool = False) -> list[nn.Module]:
    """Copies made the way torch's replicate makes them, each parameter a contiguous (NCHW) copy."""
    modules = list(network.modules())
    copies = [[module._replicate_for_data_parallel() for module in modules] for _ in devices]
    for replica in copies:
        for i, module in enumerate(modules):
            for key, child in module._modules.items():
                setattr(replica[i], key, replica[modules.index(child)])
            for key, param in module._parameters.items():
                setattr(replica[i], key, param.contiguous())
    return [replica[0] for replica in copies]


@pytest.mark.parametrize("wrapper, keeps", [(nn.DataParallel, False), (FormatKeepingDataParallel, True)])
def test_every_copy_keeps_the_channels_last_weights(monkeypatch, wrapper, keeps):
    monkeypatch.setattr(DP_MODULE, "replicate", broadcast_like_replicate)
    net = _net()
    replicas = wrapper(net).replicate(net, [0, 1])
    weights = [m.weight for m in replicas[1].modules() if isinstance(m, nn.Conv2d)]
    assert len(weights) == 2
    assert all(w.is_contiguous(memory_format=torch.channels_last) == keeps for w in weights)
    x = torch.randn(2, 3, 6, 6).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(replicas[1](x), net(x), rtol=0, atol=1e-6)  # the same numbers either way
    replicas[1](x).sum().backward()  # gradients reach the module's own weights through the conversion
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0


def test_keep_memory_format_leaves_contiguous_modules_and_non_4d_parameters_alone(monkeypatch):
    monkeypatch.setattr(DP_MODULE, "replicate", broadcast_like_replicate)
    channels_last, contiguous = _net(), _net().to(memory_format=torch.contiguous_format)
    assert keep_memory_format(channels_last, broadcast_like_replicate(channels_last, [0])[0]) == 2  # the two convs
    assert keep_memory_format(contiguous, broadcast_like_replicate(contiguous, [0])[0]) == 0


def test_dp_on_several_gpus_is_fabrics_dp_with_the_format_keeping_wrapper(monkeypatch):
    monkeypatch.setattr(fabric_module.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(fabric_module.torch, "set_float32_matmul_precision", lambda value: None)
    monkeypatch.setattr(fabric_module, "Fabric", lambda **kwargs: kwargs)
    strategy = build_fabric("cuda", "dp", "16-mixed", [0, 1], print)["strategy"]
    assert isinstance(strategy, FormatKeepingDPStrategy) and isinstance(strategy, DataParallelStrategy)


def test_the_dp_strategy_wraps_in_the_format_keeping_data_parallel():
    assert isinstance(FormatKeepingDPStrategy().setup_module(ToyNet()), FormatKeepingDataParallel)


class DataParallelRun:
    """What Validator asks of Fabric, for one process whose dp strategy spans two GPUs."""

    device, is_global_zero, global_rank, world_size = torch.device("cpu"), True, 0, 1
    strategy = DataParallelStrategy(parallel_devices=[torch.device("cuda", 0), torch.device("cuda", 1)])

    def broadcast(self, value, src=0):
        return value


def test_validation_under_dp_is_split_over_the_runs_gpus():
    cfg, net, lines = make_cfg(toy_size=6), ToyNet().eval(), []
    plain = InferenceOptions(fold_bn=False, channels_last=False)
    validator = Validator(DataParallelRun(), lambda: toy_loader(cfg, "test", False), net, plain, ToyDecoder(),
                          ToyBenchmark(), InputChecks([], 0, lines.append), lines.append)
    first = validator()
    spread = validator.prepared
    assert isinstance(spread, FormatKeepingDataParallel)
    with torch.no_grad():
        net.fc.bias += 1.0
    second = validator()  # the weights renewed through the wrapper, in the same copy
    assert validator.prepared is spread and torch.equal(spread.module.net.fc.bias, net.fc.bias)
    assert second["metric"] != first["metric"] and lines == []


def test_a_compiled_validation_copy_stays_on_one_gpu_and_says_so(monkeypatch):
    monkeypatch.setattr(validation_module, "prepare_for_inference", lambda net, options, device, log: net)
    cfg, lines = make_cfg(toy_size=2), []
    validator = Validator(DataParallelRun(), lambda: toy_loader(cfg, "test", False), ToyNet().eval(),
                          InferenceOptions(compile="cudagraph"), ToyDecoder(), ToyBenchmark(),
                          InputChecks([], 0, lines.append), lines.append)
    assert not isinstance(validator.inference_net(), FormatKeepingDataParallel)
    assert lines == ["validation on cuda:0 alone: inference.compile='cudagraph' is not split over the 2 GPUs of dp"]


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_torchs_own_replicas_on_two_gpus_keep_channels_last():
    net = _net().cuda()
    replicas = FormatKeepingDataParallel(net, device_ids=[0, 1]).replicate(net, [0, 1])
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
               for replica in replicas for m in replica.modules() if isinstance(m, nn.Conv2d))
    plain = nn.DataParallel(net, device_ids=[0, 1]).replicate(net, [0, 1])
    assert not plain[1][0].weight.is_contiguous(memory_format=torch.channels_last)  # the fault this fixes
