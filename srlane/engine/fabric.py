"""Lightning Fabric for one run: the device, the strategy, the precision, and the checks that the
processes a launcher started (torchrun, SLURM's srun) are the ones the command line asks for.

- ``accelerator``: ``"auto"`` takes CUDA when it exists (never MPS: ask for it by name), ``"cpu"``,
  ``"cuda"`` and ``"mps"`` (Apple GPUs, one device) say so.
- ``strategy``: Fabric's names (``STRATEGIES``: what each needs beyond torch, checked before anything
  is built). One device on one node runs without a wrapper whatever ``strategy`` says (DataParallel
  or a one-process DDP group would only add copies, a port and a process group).
- Several devices: ``"dp"`` (the release: one process, every GPU's copy of the network in its
  memory format, see :mod:`srlane.engine.data_parallel`), the ``"ddp"`` family (one process per device; main.py
  starts them as scripts, so ``ddp_spawn``, ``ddp_fork`` and ``ddp_notebook`` run as ``ddp``),
  ``"fsdp"`` and ``"deepspeed*"`` (CUDA only; DeepSpeed needs its package). On CPU, each ``--gpus``
  entry is one process (DDP over gloo), always 32-bit.
- ``matmul_precision`` (``"highest"``, ``"high"``, ``"medium"``) is set on CUDA before anything
  runs: ``"high"`` lets float32 matrix products use TF32 tensor cores.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from lightning.fabric import Fabric
from lightning.fabric.loggers import Logger
from lightning.fabric.plugins import MixedPrecision
from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.fabric.strategies import DDPStrategy
from torch.nn.parallel import DistributedDataParallel

from srlane.config import ConfigError, check_choice
from srlane.engine.data_parallel import FormatKeepingDPStrategy

ACCELERATORS = ("auto", "cpu", "cuda", "mps")


@dataclasses.dataclass(frozen=True)
class StrategyNeeds:
    """What a strategy needs: CUDA devices, a package beyond torch and Lightning; ``ddp``: the
    keyword arguments of this trainer's DDP strategy (None: not a DDP variant)."""

    cuda: bool = False
    package: str | None = None
    ddp: Mapping[str, Any] | None = None


_DEEPSPEED = StrategyNeeds(cuda=True, package="deepspeed")
# Fabric's strategy names (lightning.fabric.strategies.STRATEGY_REGISTRY, its XLA/TPU ones left out)
STRATEGIES: dict[str, StrategyNeeds] = {
    "auto": StrategyNeeds(), "dp": StrategyNeeds(),
    "ddp": StrategyNeeds(ddp={}),
    "ddp_find_unused_parameters_true": StrategyNeeds(ddp={"find_unused_parameters": True}),
    "ddp_spawn": StrategyNeeds(ddp={}), "ddp_fork": StrategyNeeds(ddp={}), "ddp_notebook": StrategyNeeds(ddp={}),
    "fsdp": StrategyNeeds(cuda=True), "fsdp_cpu_offload": StrategyNeeds(cuda=True),
    **{name: _DEEPSPEED for name in ("deepspeed", "deepspeed_stage_1", "deepspeed_stage_1_offload", "deepspeed_stage_2",
                                     "deepspeed_stage_2_offload", "deepspeed_stage_3", "deepspeed_stage_3_offload",
                                     "deepspeed_stage_3_offload_nvme")},
}
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")  # what the training step supports of Fabric's
MATMUL_PRECISIONS = ("highest", "high", "medium")


def resolve_accelerator(accelerator: str) -> str:
    """``"cpu"``, ``"cuda"`` or ``"mps"`` for a config's ``accelerator``; ConfigError (one line)
    when the device asked for is absent."""
    check_choice("accelerator", accelerator, ACCELERATORS)
    cuda = torch.cuda.is_available()
    if accelerator == "cuda" and not cuda:
        raise ConfigError(
            f"accelerator 'cuda' asked for, but torch {torch.__version__} sees no CUDA device "
            "(a CPU build of torch, or no driver); use accelerator 'cpu' or 'auto'"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"accelerator 'mps' asked for, but torch {torch.__version__} sees no MPS device (Apple "
                          "silicon GPUs, macOS builds of torch only); use accelerator 'cpu' or 'auto'")
    if accelerator == "auto":
        return "cuda" if cuda else "cpu"
    return accelerator


def check_strategy_available(strategy: str, device: str) -> None:
    """ConfigError (one line) when ``strategy`` needs CUDA and the run is on ``device``, or needs a
    package that is not installed."""
    needs = STRATEGIES[strategy]
    if needs.cuda and device != "cuda":
        raise ConfigError(f"strategy {strategy!r} needs CUDA devices (Lightning runs it on GPUs only), this run is "
                          f"on {device}; use strategy 'ddp' (or 'auto' on one device)")
    if needs.package and importlib.util.find_spec(needs.package) is None:
        raise ConfigError(f"strategy {strategy!r} needs the {needs.package} package, not installed here "
                          f"(pip install {needs.package}); or use strategy 'ddp'")


# the config keys of the device settings and the values each takes
SETTINGS = {"accelerator": ACCELERATORS, "strategy": tuple(STRATEGIES), "precision": PRECISIONS,
            "matmul_precision": MATMUL_PRECISIONS}


def check_settings(settings: Mapping[str, Any]) -> None:
    """ConfigError (one line with the allowed values and the closest) for a device setting this
    trainer does not know, on any machine: a typo meant for the GPU run is found on the CPU too,
    before anything is built. ``settings`` holds the keys of ``SETTINGS`` (a config)."""
    for key, allowed in SETTINGS.items():
        check_choice(key, settings[key], allowed)


def launched_world_size() -> tuple[str, int] | None:
    """``(launcher, processes)`` when torchrun or SLURM's srun started this process, else None."""
    if SLURMEnvironment.detect():
        return "srun", SLURMEnvironment().world_size()
    if TorchElasticEnvironment.detect():
        return "torchrun", TorchElasticEnvironment().world_size()
    return None


class DefaultStreamDDPStrategy(DDPStrategy):
    """Fabric's DDP, with the model wrapped on the current CUDA stream.

    Lightning builds ``DistributedDataParallel`` under a fresh side stream (which only whole-network
    CUDA graph capture needs). DDP keeps a reference to each parameter's AccumulateGrad node, so
    those nodes belong to the side stream while every backward runs on the default stream, and
    torch (2.10 and later) warns at each backward that the streams do not match. We capture no
    CUDA graphs, so we wrap where the forwards run.
    """

    def setup_module(self, module: torch.nn.Module) -> DistributedDataParallel:
        return DistributedDataParallel(module=module, device_ids=self._determine_ddp_device_ids(), **self._ddp_kwargs)


class MixedPrecisionKeepingInputs(MixedPrecision):
    """Fabric's mixed precision without its cast of the model's floating inputs to the autocast
    type: the batch also carries the training targets (lane x positions, the -1e5 "invalid"
    marker, angle maps), which bfloat16 would snap to 2-4 px steps and float16 turn to -inf.
    The images are uint8; autocast alone picks the compute type of each operation."""

    def convert_input(self, data: Any) -> Any:
        return data


def set_determinism(deterministic: bool, device: str, log: Callable[[str], None]) -> None:
    """``deterministic``: torch's deterministic algorithms, cuDNN deterministic and without its
    autotuner (slower convolutions), a fixed cuBLAS workspace. Else cuDNN's autotuner picks the
    fastest convolution per shape (``cudnn.benchmark``, as the release sets it). CPU runs are
    bitwise repeatable either way; on CUDA, grid_sample's backward (the refine head's sampling)
    has no deterministic kernel, so torch warns and a CUDA run still differs from run to run."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if device == "cuda":
            log("deterministic: deterministic cuDNN and torch algorithms, no cuDNN autotuning (slower); "
                "grid_sample's backward has no deterministic CUDA kernel, so CUDA runs are not bitwise repeatable")


def precision_arguments(precision: str, device: str) -> dict[str, Any]:
    """Fabric's keyword arguments for ``precision`` on ``device``: mixed precisions through
    :class:`MixedPrecisionKeepingInputs` (a grad scaler for ``16-mixed``)."""
    if precision == "32-true":
        return {"precision": precision}
    return {"plugins": [MixedPrecisionKeepingInputs(precision, device)]}


def build_fabric(
    accelerator: str,
    strategy: str,
    precision: str,
    gpus: Sequence[int],
    log: Callable[[str], None],
    num_nodes: int = 1,
    matmul_precision: str = "high",
    deterministic: bool = False,
    loggers: Sequence[Logger] = (),
) -> Fabric:
    """A Fabric (not yet launched) for ``len(gpus)`` devices on each of ``num_nodes`` machines.

    Under ``torchrun --nnodes N --nproc-per-node G`` or ``srun`` Fabric takes ranks and addresses
    from the launcher's environment, and ``G x N`` must equal the processes it started.
    ``deterministic``: see :func:`set_determinism`; ``loggers``: Fabric's (``fabric.log_dict``
    writes to each).
    """
    check_settings({"accelerator": accelerator, "strategy": strategy, "precision": precision,
                    "matmul_precision": matmul_precision})
    device = resolve_accelerator(accelerator)
    check_strategy_available(strategy, device)
    if num_nodes > 1 and STRATEGIES[strategy].ddp is None:
        raise ConfigError(f"num_nodes={num_nodes} needs strategy='ddp', got {strategy!r}")
    launched = launched_world_size()
    if launched is not None and len(gpus) * num_nodes != launched[1]:
        launcher, world_size = launched
        raise ConfigError(
            f"{launcher} started {world_size} processes but --gpus lists {len(gpus)} device(s) x num_nodes={num_nodes}; "
            f"give --gpus one id per process of a node and --set num_nodes=<nodes>"
        )
    set_determinism(deterministic, device, log)
    several = len(gpus) > 1 or num_nodes > 1
    needs = STRATEGIES[strategy]
    if device == "mps" and several:
        raise ConfigError(f"accelerator 'mps' has one device, --gpus lists {len(gpus)} x num_nodes={num_nodes}")
    if not several and strategy != "auto":
        log(f"one device: strategy {strategy} runs without a wrapper")
        strategy, needs = "auto", STRATEGIES["auto"]
    elif several and device == "cpu" and needs.ddp is None:
        log(f"on CPU: strategy {strategy} runs as ddp over {len(gpus)} process(es) per node")
        strategy, needs = "ddp", STRATEGIES["ddp"]
    elif several and strategy in ("ddp_spawn", "ddp_fork", "ddp_notebook"):
        log(f"strategy {strategy} runs as ddp: main.py starts one process per device as a script "
            "(Lightning's spawn and fork launchers need the run as a function)")
    if device == "cuda" and strategy == "dp" and several and precision == "bf16-mixed":
        # torch's DataParallel enters autocast in its replica threads without the dtype: float16,
        # and bf16-mixed has no grad scaler to keep float16 gradients from overflowing
        raise ConfigError(f"precision 'bf16-mixed' with strategy 'dp' on {len(gpus)} GPUs would compute in float16 "
                          "(DataParallel's replicas autocast without the type); use strategy='ddp', "
                          "or precision='16-mixed' with dp")
    if device == "cpu":
        if precision != "32-true":
            log(f"on CPU: precision {precision} runs as 32-true")
        devices: int | list[int] = len(gpus)
        precision = "32-true"
    elif device == "mps":
        devices = 1
    else:
        torch.set_float32_matmul_precision(matmul_precision)
        log(f"float32 matmul precision {matmul_precision!r} (TF32 {'on' if matmul_precision != 'highest' else 'off'})")
        devices = list(gpus)
    chosen: str | DDPStrategy | FormatKeepingDPStrategy = strategy
    if needs.ddp is not None:
        chosen = DefaultStreamDDPStrategy(**needs.ddp)
    elif strategy == "dp":
        chosen = FormatKeepingDPStrategy()
    if needs.cuda:  # fsdp, deepspeed: their own precision plugins (Lightning's: they cast the batch's floats)
        log(f"strategy {strategy}: Lightning's own {precision} plugin (under mixed precision it casts the batch's "
            "float tensors, the training targets too); not run in this project's tests")
        precision_kwargs: dict[str, Any] = {"precision": precision}
    else:
        precision_kwargs = precision_arguments(precision, device)
    return Fabric(accelerator=device, devices=devices, num_nodes=num_nodes, strategy=chosen, loggers=list(loggers),
                  **precision_kwargs)
