"""How a trained network runs for inference, shared by validation and the tools that run a
checkpoint (predict, embed, speed): BatchNorm folded into the preceding convolutions,
channels-last memory, reduced precision under autocast, torch.compile or a captured CUDA graph.

``InferenceOptions`` holds the four choices (one lookup table per axis: ``PRECISIONS``,
``COMPILERS``); ``prepare_for_inference`` applies them to a copy of a network, whose
``load_weights`` gives it the network's later weights (validation after each epoch);
``build_inference_options(cfg)`` reads them from a config's ``inference`` dict (the tools'
flags for them are ``srlane.cli.add_inference_arguments``).

Reduced precision runs the network under ``torch.autocast`` rather than casting its weights
(``net.half()``): autocast keeps the proposals, the attention softmax and the buffers in float32;
a bfloat16-cast R18 gives NaN refined outputs, autocast stays within 1e-2 of float32.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from srlane.autotune import ChoiceCache, choose, machine_key
from srlane.config import ConfigError, check_choice


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv computing ``bn(conv(x))`` with ``bn`` in eval mode (its running statistics)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused.to(conv.weight.device, conv.weight.dtype)


def fold_batch_norms(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` with every BatchNorm2d that directly follows a Conv2d folded
    into it: ``convN``/``bnN`` attribute pairs (ResNet blocks and stem) and (Conv2d,
    BatchNorm2d) pairs inside an ``nn.Sequential`` (downsample branches). Outputs agree to
    float rounding; the copy's state dict no longer matches the checkpoints."""
    net = copy.deepcopy(net).eval()
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = fold_conv_bn(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
        for name, child in list(module.named_children()):
            if name.startswith("conv") and isinstance(child, nn.Conv2d):
                bn = getattr(module, "bn" + name[4:], None)
                if isinstance(bn, nn.BatchNorm2d):
                    setattr(module, name, fold_conv_bn(child, bn))
                    setattr(module, "bn" + name[4:], nn.Identity())
    return net


class InferenceModel(nn.Module):
    """A copy of ``net`` run as ``options`` say (see :func:`inference_copy`): ``model(img)``
    without gradients, the input in the copy's memory format, the forward under autocast at the
    options' precision (none for float32, so an enclosing autocast still applies), the output
    float32 (what the decoder takes). ``img`` as ``net`` takes it: uint8 or float."""

    def __init__(self, net: nn.Module, options: InferenceOptions, device: torch.device | str) -> None:
        super().__init__()
        if any(getattr(options, name) == "auto" for name in AUTO_FIELDS):
            raise ValueError("InferenceModel takes settled options; prepare_for_inference settles \"auto\"")
        self.options = options
        self.net = inference_copy(net, options, device)
        self.dtype = PRECISIONS[options.precision]
        self.memory_format = torch.channels_last if options.channels_last else torch.contiguous_format

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        autocast = (contextlib.nullcontext() if self.dtype == torch.float32
                    else torch.autocast(img.device.type, dtype=self.dtype, cache_enabled=False))
        with torch.no_grad(), autocast:
            return self.net(img.contiguous(memory_format=self.memory_format)).float()

    def load_weights(self, net: nn.Module) -> None:
        """Give this copy the current weights of ``net`` (the network it was made from, later in
        training), made ready by the same options and copied into the copy's own tensors, which a
        compiled forward and a captured CUDA graph read: validation does this after each epoch,
        so that a CUDA graph is captured once per run, not once per validation."""
        device = next(self.net.parameters()).device
        self.net.load_state_dict(inference_copy(net, self.options, device).state_dict())  # copy_, names checked


class CudaGraphModel(nn.Module):
    """``model`` replayed from a CUDA graph captured at its first call: inputs of that call's
    shape and dtype are copied into the graph's input and the graph replays (the output is a
    copy, the next replay does not overwrite it); other inputs run ``model`` eagerly."""

    def __init__(self, model: InferenceModel) -> None:
        super().__init__()
        self.model = model
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_input: torch.Tensor | None = None
        self.static_output: torch.Tensor | None = None

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            self._capture(img)
        if img.shape != self.static_input.shape or img.dtype != self.static_input.dtype:
            return self.model(img)
        self.static_input.copy_(img)
        self.graph.replay()
        return self.static_output.clone()

    def load_weights(self, net: nn.Module) -> None:
        """As :meth:`InferenceModel.load_weights`; the graph replays with the new weights."""
        self.model.load_weights(net)

    def _capture(self, img: torch.Tensor) -> None:
        self.static_input = img.clone()
        side = torch.cuda.Stream(img.device)
        side.wait_stream(torch.cuda.current_stream(img.device))
        with torch.cuda.stream(side):  # warm-up outside the graph (cuDNN choices, lazy inits)
            for _ in range(3):
                self.model(self.static_input)
        torch.cuda.current_stream(img.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls of other threads (the loaders' pin-memory threads) do not break the capture
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.static_output = self.model(self.static_input)
        self.graph = graph


def _eager(model: InferenceModel) -> nn.Module:
    return model


def _compiled(model: InferenceModel) -> nn.Module:
    # in place (the module stays an InferenceModel); default mode: on the 2-core Xeon R18 800x320
    # ran 59 ms with it, 61 ms with "max-autotune-no-cudagraphs", whose autotuning lengthens the
    # compilation (CUDA graphs are the "cudagraph" choice)
    model.compile()
    return model


PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
COMPILERS: dict[str, Callable[[InferenceModel], nn.Module]] = {"none": _eager, "compile": _compiled,
                                                          "cudagraph": CudaGraphModel}
CUDA_ONLY_COMPILERS = ("cudagraph",)
# the fields that take "auto": the fastest value for the machine, measured (srlane.autotune)
AUTO_FIELDS = ("fold_bn", "channels_last")
# the values each InferenceOptions field takes
ALLOWED: dict[str, tuple] = {"precision": tuple(PRECISIONS), "fold_bn": (False, True, "auto"),
                             "channels_last": (False, True, "auto"), "compile": tuple(COMPILERS)}


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """How the network runs for inference (the config's ``inference`` dict, the tools' flags)."""

    precision: str = dataclasses.field(default="fp32", metadata={
        "help": "fp32 (default); fp16 or bf16: the network under autocast at that type, outputs "
                "float32 (on CPU fp16 runs, slower than fp32; bf16 is the fast one)"})
    fold_bn: bool | str = dataclasses.field(default="auto", metadata={
        "help": "fold BatchNorm into the preceding convolutions (same outputs to float rounding); "
                "default (config \"auto\"): whichever is faster on this machine, measured once"})
    channels_last: bool | str = dataclasses.field(default="auto", metadata={
        "help": "NHWC memory format for the weights and the input (same outputs to float rounding); "
                "default (config \"auto\"): whichever is faster on this machine, measured once"})
    compile: str = dataclasses.field(default="none", metadata={
        "help": "none (default); compile: torch.compile, default mode (the first call compiles); "
                "cudagraph (CUDA only): a CUDA graph captured at the first call's input shape, replayed "
                "for inputs of that shape, eager for the others"})

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check_choice(f"inference.{field.name}", getattr(self, field.name), ALLOWED[field.name])


class AutoInferenceModel(nn.Module):
    """Options with ``"auto"`` fields, settled at the first call: each combination of the auto
    fields' values is timed on the first image of that call (a few eager forwards, see
    :func:`srlane.autotune.choose`; cached per machine and input shape), and the fastest one
    is prepared and used from then on. Every candidate gives the same outputs to float rounding."""

    def __init__(self, net: nn.Module, options: InferenceOptions, device: torch.device,
                 log: Callable[[str], None]) -> None:
        super().__init__()
        self.options, self.device, self.log = options, device, log
        self.sources = [net]  # a list: not a submodule (no state of its own until settled)
        self.model: nn.Module | None = None

    def candidates(self) -> dict[str, InferenceOptions]:
        """Each combination of the auto fields' values, named ``field=value,...``."""
        auto = [name for name in AUTO_FIELDS if getattr(self.options, name) == "auto"]
        combos = itertools.product(*([False, True] for _ in auto))
        return {",".join(f"{name}={value}" for name, value in zip(auto, combo)):
                dataclasses.replace(self.options, **dict(zip(auto, combo))) for combo in combos}

    def settle(self, img: torch.Tensor) -> None:
        """Measure the candidates on ``img[:1]`` and prepare the fastest."""
        options = self.candidates()
        probe = img[:1]
        models = {name: InferenceModel(self.sources[0], dataclasses.replace(option, compile="none"), self.device)
                  for name, option in options.items()}
        runs = {name: (lambda model=model: model(probe)) for name, model in models.items()}
        key = machine_key(f"inference {self.options.precision} {','.join(options)}", self.device,
                          [probe.shape])  # uint8 or float input: the same question
        chosen = choose("inference", runs, key, ChoiceCache(warn=self.log), self.log,
                        sync=(lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else None)
        self.options = options[chosen]
        self.model = COMPILERS[self.options.compile](models[chosen])

    @property
    def net(self) -> nn.Module:
        """The settled copy's network (as ``InferenceModel.net``: hooks go there)."""
        if self.model is None:
            raise RuntimeError("the inference options are settled at the first call (or settle(img))")
        return self.model.net

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.model is None:
            self.settle(img)
        return self.model(img)

    def load_weights(self, net: nn.Module) -> None:
        """As :meth:`InferenceModel.load_weights` (before the first call: the network to copy)."""
        if self.model is None:
            self.sources = [net]
        else:
            self.model.load_weights(net)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def inference_copy(net: nn.Module, options: InferenceOptions, device: torch.device | str) -> nn.Module:
    """A copy of ``net`` on ``device`` in eval mode without gradients, BatchNorm folded and
    memory format as ``options`` say."""
    net = fold_batch_norms(net) if options.fold_bn else copy.deepcopy(net)
    net = net.to(device).eval().requires_grad_(False)
    return net.to(memory_format=torch.channels_last if options.channels_last else torch.contiguous_format)


def prepare_for_inference(net: nn.Module, options: InferenceOptions, device: torch.device | str,
                          log: Callable[[str], None] = _stderr) -> nn.Module:
    """A copy of ``net`` on ``device`` with ``options`` applied; ``net`` itself is left as it
    was. Call it as ``net``: ``model(img)`` -> float32 predictions; ``model.load_weights(net)``
    gives it later weights of ``net``; ``"auto"`` options are settled at the first call
    (:class:`AutoInferenceModel`, its line to ``log``). ConfigError (one line) for a CUDA-only
    choice on another device."""
    device = torch.device(device)
    if options.compile in CUDA_ONLY_COMPILERS and device.type != "cuda":
        raise ConfigError(f"inference.compile {options.compile!r} needs a CUDA device, got {device.type}")
    if any(getattr(options, name) == "auto" for name in AUTO_FIELDS):
        return AutoInferenceModel(net, options, device, log)
    return COMPILERS[options.compile](InferenceModel(net, options, device))


def build_inference_options(cfg: Mapping[str, Any]) -> InferenceOptions:
    """The config's ``inference`` dict as options (no key or ``None``: the defaults); ConfigError
    (one line) naming an unknown key or a bad value with what is allowed."""
    given = cfg.get("inference") or {}
    unknown = sorted(set(given) - set(ALLOWED))
    if unknown:
        raise ConfigError(f"unknown config key inference.{unknown[0]}; inference takes {', '.join(ALLOWED)}")
    return InferenceOptions(**given)
