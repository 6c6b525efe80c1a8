"""Inference options (srlane.models.inference): parsed alike from the command line and the config,
one-line errors, and what each option does to the outputs on CPU. Tolerances were measured on
seeded R18 networks (3 seeds, 160x64 and 256x96, uint8 images) and carry a margin; the fixture's
refine head outputs values of order one, as a trained one does (a random-init head scales its
features' errors by 1e-3 and hid a wrong bfloat16 grouped convolution on CPU, see
``srlane.models.refine_head.GroupedConv1d``: without it bf16 is off by ~0.5):

    option                        max |output - fp32 output|   (tolerance here)
    fold_bn and/or channels_last  1.8e-7 (1.2e-6 with the order-one head)   (1e-5)
    bf16 (autocast, CPU)          8.3e-3 (8.7e-3)              (3e-2)
    fp16 (autocast, CPU)          4.8e-4 (9.4e-4)              (2e-3)

Decoded lanes of fp32 with fold_bn and channels_last equal the plain network's to ~1e-3 px
(tolerance here: 0.01 px at 1640 px). Reduced precision is compared on the outputs alone: a
random network's lane scores lie within ~1e-3 of each other, so bf16 changes NMS's order.
The CUDA paths are in test_cuda.py.
"""
import argparse
import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from srlane.cli import add_inference_arguments, inference_options_from_args
from srlane.config import Config, ConfigError
from srlane.engine.defaults import DEFAULTS, load_experiment
from srlane.models import build_net
from srlane.models.decode import build_decoder
from srlane.models.inference import COMPILERS, PRECISIONS, InferenceOptions, build_inference_options, prepare_for_inference

ROOT = Path(__file__).resolve().parents[1]
OPTIMISED_FP32 = [InferenceOptions(fold_bn=True, channels_last=False),
                  InferenceOptions(fold_bn=False, channels_last=True),
                  InferenceOptions(fold_bn=True, channels_last=True)]


def _cfg(w: int = 160, h: int = 64) -> Config:
    cfg = Config.fromfile(ROOT / "configs" / "srlane_r18_synthetic.py")
    cfg.update(img_w=w, img_h=h)
    return cfg


@pytest.fixture(scope="module")
def seeded():
    """A seeded network whose BatchNorms have non-trivial statistics and whose proposals decode
    as full-height lanes, and four uint8 images."""
    cfg = _cfg()
    torch.manual_seed(0)
    net = build_net(cfg, pretrained=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.num_features, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=g) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=g) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=g) * 0.1)
        for name, param in net.named_parameters():
            if name.endswith("reg_layers.bias"):
                param[1] = 1.0
            if name.endswith(("cls_layers.weight", "reg_layers.weight")):  # outputs of order one, as trained
                param.copy_(torch.randn(param.shape, generator=g) * 0.05)
    net.eval()
    img = torch.randint(0, 256, (4, 3, cfg.img_h, cfg.img_w), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        ref = net(img)
    return cfg, net, img, ref


def _later(net: nn.Module) -> nn.Module:
    """``net`` after some training: every parameter and BatchNorm statistic moved (the fixed
    geometry buffers, such as the prior rows, stay)."""
    later = copy.deepcopy(net)
    moved = {name for name, _ in later.named_parameters()}
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, tensor in later.state_dict().items():
            if name in moved or name.endswith(("running_mean", "running_var")):
                tensor.mul_(1 + torch.rand(tensor.shape, generator=g) * 0.02)
    return later


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_inference_arguments(parser)
    return parser.parse_args(argv)


def test_options_from_the_command_line_over_the_config():
    assert inference_options_from_args(_parse([])) == InferenceOptions()
    argv = ["--precision", "bf16", "--fold-bn", "--channels-last", "--compile", "compile"]
    assert inference_options_from_args(_parse(argv)) == InferenceOptions("bf16", True, True, "compile")
    configured = build_inference_options({"inference": {"precision": "fp16", "fold_bn": True}})
    assert configured == InferenceOptions(precision="fp16", fold_bn=True)
    assert inference_options_from_args(_parse([]), configured) == configured  # no flag: the config stands
    assert (inference_options_from_args(_parse(["--no-fold-bn", "--channels-last"]), configured)
            == InferenceOptions(precision="fp16", fold_bn=False, channels_last=True))
    assert set(PRECISIONS) == {"fp32", "fp16", "bf16"} and set(COMPILERS) == {"none", "compile", "cudagraph"}


def test_config_defaults_are_the_options_defaults(tmp_path):
    assert DEFAULTS["inference"] == dataclasses.asdict(InferenceOptions())
    assert build_inference_options({}) == build_inference_options({"inference": None}) == InferenceOptions()
    config = tmp_path / "exp.py"
    config.write_text(f"_base_ = [{str(ROOT / 'configs' / 'srlane_r18_synthetic.py')!r}]\n"
                      "inference = dict(channels_last=True)\n")
    assert build_inference_options(load_experiment(config)) == InferenceOptions(channels_last=True)


@pytest.mark.parametrize("inference, message", [
    ({"precision": "fp64"}, "inference.precision must be one of fp32, fp16, bf16, got 'fp64'; closest: 'fp16'"),
    ({"compile": "jit"}, "inference.compile must be one of none, compile, cudagraph, got 'jit'; closest: 'compile'"),
    ({"fold_bn": 1}, "inference.fold_bn must be one of False, True, auto, got 1"),
    ({"channels_last": "yes"}, "inference.channels_last must be one of False, True, auto, got 'yes'; closest: 'auto'"),
    ({"fold": True}, "unknown config key inference.fold; inference takes precision, fold_bn, channels_last, compile"),
])
def test_a_bad_config_value_is_one_line_naming_key_and_allowed_values(inference, message):
    with pytest.raises(ConfigError) as err:
        build_inference_options({"inference": inference})
    assert str(err.value) == message


def test_a_bad_flag_value_names_the_choices(capsys):
    with pytest.raises(SystemExit):
        _parse(["--precision", "fp64"])
    err = capsys.readouterr().err
    assert "--precision: invalid choice: 'fp64'" in err and "fp32" in err and "bf16" in err


def test_cudagraph_needs_cuda(seeded):
    _, net, _, _ = seeded
    with pytest.raises(ConfigError, match=r"^inference.compile 'cudagraph' needs a CUDA device, got cpu$"):
        prepare_for_inference(net, InferenceOptions(compile="cudagraph"), "cpu")


@pytest.mark.parametrize("options", OPTIMISED_FP32, ids=["fold_bn", "channels_last", "both"])
def test_fold_and_channels_last_agree_with_the_plain_network(seeded, options):
    """Same outputs to float rounding, same decoded lanes; the caller's network untouched."""
    cfg, net, img, ref = seeded
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.requires_grad for p in net.parameters()]
    model = prepare_for_inference(net, options, "cpu")
    out = model(img)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    decoder = build_decoder(cfg, conf_threshold=0.0)
    ours, plain = decoder(out), decoder(ref)
    assert sum(map(len, plain)) > 0
    for a, b in zip(ours, plain):
        assert len(a) == len(b)
        for lane_a, lane_b in zip(a, b):
            assert lane_a.points.shape == lane_b.points.shape
            assert abs(lane_a.points - lane_b.points).max() * 1640 < 0.01
    state = net.state_dict()
    assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in state)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 20
    assert [p.requires_grad for p in net.parameters()] == grads and any(grads)
    assert net.backbone.model.conv1.weight.is_contiguous()  # the original keeps its NCHW memory


@pytest.mark.parametrize("precision, tolerance", [("bf16", 3e-2), ("fp16", 2e-3)])
def test_reduced_precision_on_cpu_within_tolerance(seeded, precision, tolerance):
    _, net, img, ref = seeded
    for options in (InferenceOptions(precision=precision),
                    InferenceOptions(precision=precision, fold_bn=True, channels_last=True)):
        out = prepare_for_inference(net, options, "cpu")(img)
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        assert (out - ref).abs().max() < tolerance


def test_the_bare_network_under_a_cpu_bfloat16_autocast_within_tolerance(seeded):
    """The refine head's grouped 1-d convolutions run in float32 under a CPU autocast
    (``GroupedConv1d``), so a caller's own autocast gets right lanes too, not only the inference
    options (oneDNN's bfloat16 kernel put this output ~0.5 off)."""
    _, net, img, ref = seeded
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(img).float()
    assert 1e-4 < (out - ref).abs().max() < 3e-2


def test_fp32_leaves_an_enclosing_autocast_in_force(seeded):
    """The fp32 option adds no autocast of its own: under a caller's autocast (the Runner's
    mixed-precision validation) the network runs at the caller's type."""
    _, net, img, ref = seeded
    model = prepare_for_inference(net, InferenceOptions(), "cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(img)
    assert out.dtype == torch.float32 and 1e-4 < (out - ref).abs().max() < 3e-2


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_on_cpu_agrees_with_eager(seeded):
    """torch.compile (default mode) with fold_bn and channels_last: ~20 s to compile on 2 cores;
    refreshed weights reach the compiled code (it holds no copy of them)."""
    _, net, img, ref = seeded
    options = InferenceOptions(fold_bn=True, channels_last=True, compile="compile")
    model = prepare_for_inference(net, options, "cpu")
    torch.testing.assert_close(model(img), ref, atol=1e-5, rtol=0)
    later = _later(net)
    model.load_weights(later)  # as validation after an epoch: the compiled code sees the new weights
    torch.testing.assert_close(model(img), later(img), atol=1e-5, rtol=0)


PLAIN = InferenceOptions(fold_bn=False, channels_last=False)


@pytest.mark.parametrize("options", [PLAIN, *OPTIMISED_FP32], ids=["plain", "fold_bn", "channels_last", "both"])
def test_refreshed_weights_run_as_a_fresh_preparation(seeded, options):
    """``load_weights`` copies a later state of the network into the prepared copy's own
    tensors (BatchNorm folded again): the outputs equal a copy prepared from that state."""
    _, net, img, _ = seeded
    model = prepare_for_inference(net, options, "cpu")
    tensors = [t.data_ptr() for t in model.state_dict().values()]
    later = _later(net)
    model.load_weights(later)
    assert [t.data_ptr() for t in model.state_dict().values()] == tensors
    assert torch.equal(model(img), prepare_for_inference(later, options, "cpu")(img))
    assert not torch.equal(model(img), prepare_for_inference(net, options, "cpu")(img))


def test_memory_format_follows_the_option_not_the_training_network(seeded):
    """A network trained in channels-last (the default) runs NCHW when the option is off."""
    _, net, img, ref = seeded
    nhwc = copy.deepcopy(net).to(memory_format=torch.channels_last)
    for channels_last in (False, True):
        model = prepare_for_inference(nhwc, InferenceOptions(fold_bn=False, channels_last=channels_last), "cpu")
        weight = model.net.backbone.model.conv1.weight
        assert weight.is_contiguous(memory_format=torch.channels_last) == channels_last
        assert weight.is_contiguous() != channels_last
        torch.testing.assert_close(model(img), ref, atol=1e-5, rtol=0)
