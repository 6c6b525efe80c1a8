"""The network as an ONNX file (decoding stays outside the graph) and a runner for such a file.

``export_onnx(net, path, img_h, img_w)`` writes the eval-mode network: input ``img`` float32
(or float16 with ``fp16=True``) of shape (batch, 3, img_h, img_w), RGB in [0, 1] (the crop and
resize already done), output ``predictions`` float32 (batch, 40, 76), exactly what ``net(img)``
returns in eval mode (see docs/outputs.md). The batch dimension is dynamic; the image size is
fixed by the export.

The graph comes from PyTorch's TorchScript-based exporter (``dynamo=False``; deprecated since
torch 2.9 but present in 2.13): it needs no ``onnxscript``/``onnx-ir``, takes a dynamic batch
through ``dynamic_axes``, folds BatchNorm into the convolutions of an eval-mode network, exports
in about a third of the dynamo exporter's time and reproduces the network within float rounding
(``compare_with_torch``; the dynamo exporter, tried with onnxscript 0.7.2, agrees as closely, so
it is the way out if a later torch drops this one). The refine head's ``grid_sample`` needs
opset 16 or later.

``OnnxModel(path)`` runs such a file with onnxruntime: ``model(img)`` -> float32 CPU tensor
(B, 40, 76), ``model.input_size`` -> (h, w), ``model.check_input_size(img_h, img_w)``.
"""
from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from srlane.fileio import atomic_path
from srlane.models.detector import input_images

INPUT_NAME = "img"
OUTPUT_NAME = "predictions"
DEFAULT_OPSET = 17
MIN_OPSET = 16  # GridSample entered the default ONNX domain in opset 16
# Largest max |onnxruntime - PyTorch fp32| accepted per column group of the output.
# fp16: the file computes in half precision against the float32 network (about 3 decimal digits).
TOLERANCES = {
    "fp32": {"logits": 1e-4, "start/length": 1e-4, "xs": 1e-4},
    "fp16": {"logits": 5e-2, "start/length": 5e-3, "xs": 5e-3},
}
COLUMNS = {"logits": slice(0, 2), "start/length": slice(2, 4), "xs": slice(4, None)}


def export_onnx(net: nn.Module, path: str | os.PathLike, img_h: int, img_w: int, opset: int = DEFAULT_OPSET,
                fp16: bool = False, batch: int = 1) -> None:
    """Write ``net`` (an eval-mode copy on the CPU; ``net`` itself is untouched) to ``path``
    atomically. ``batch`` is the example batch used for tracing; the file accepts any batch."""
    if int(opset) < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: the refine head's grid_sample needs opset {MIN_OPSET} or later")
    model = copy.deepcopy(net).cpu().eval()
    model = model.half() if fp16 else model.float()
    example = torch.rand(int(batch), 3, int(img_h), int(img_w), generator=torch.Generator().manual_seed(0))
    example = example.to(torch.float16 if fp16 else torch.float32)
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter announces its deprecation and traces Python-level shape code
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), tmp, dynamo=False, opset_version=int(opset),
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=True)
        _declare_output_shape(tmp, tuple(model(example).shape[1:]))


def _declare_output_shape(path: str, shape: tuple[int, ...]) -> None:
    """Write the output's fixed dimensions (proposals, 4 + points) into the file, which the
    exporter's shape inference leaves symbolic."""
    import onnx

    model = onnx.load(path)
    for dim, size in zip(model.graph.output[0].type.tensor_type.shape.dim[1:], shape):
        dim.dim_value = int(size)
    onnx.save(model, path)


def default_providers() -> list[str]:
    """onnxruntime's CUDA provider first when the installed build has it (onnxruntime-gpu), then
    the CPU provider."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxModel:
    """An exported SRLane run by onnxruntime: ``model(img)`` is ``net(img)`` in eval mode.

    ``threads``: onnxruntime's intra-op threads (default: ``torch.get_num_threads()``, so both
    frameworks get the same cores); ``providers``: onnxruntime execution providers (default:
    :func:`default_providers`). All graph optimisations are enabled.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None,
                 providers: Sequence[str] | None = None) -> None:
        import onnxruntime as ort

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"ONNX model {self.path}: file not found")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        # idle threads sleep instead of spinning: no CPU taken from other work between calls
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: fp16 graphs warn about folding they skip
        try:
            self.session = ort.InferenceSession(self.path, options, providers=list(providers or default_providers()))
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"ONNX model {self.path}: onnxruntime cannot load it: "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not all(isinstance(d, int) for d in inputs[0].shape[1:]):
            raise ValueError(f"ONNX model {self.path}: expected one input (batch, 3, H, W) with a fixed H and W, "
                             f"got {[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        self.input_size: tuple[int, int] = (int(inputs[0].shape[2]), int(inputs[0].shape[3]))
        self.providers = self.session.get_providers()

    def check_input_size(self, img_h: int, img_w: int) -> None:
        """Raise ValueError (one line) unless the file takes ``img_w x img_h`` images."""
        h, w = self.input_size
        if (h, w) != (int(img_h), int(img_w)):
            raise ValueError(f"ONNX model {self.path} takes {w}x{h} images (width x height) but the config "
                             f"expects {int(img_w)}x{int(img_h)}; export it again from this config")

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        """``img`` (B, 3, h, w) RGB, uint8 or in [0, 1] (as the network takes it), any device ->
        float32 CPU tensor (B, 40, 76)."""
        if img.dim() != 4 or tuple(img.shape[2:]) != self.input_size:
            raise ValueError(f"ONNX model {self.path} takes (batch, 3, {self.input_size[0]}, {self.input_size[1]}) "
                             f"inputs, got {tuple(img.shape)}")
        array = np.ascontiguousarray(input_images(img.detach()).cpu().numpy(), dtype=self.input_dtype)
        (out,) = self.session.run([OUTPUT_NAME], {self.input_name: array})
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


def compare_with_torch(net: nn.Module, model: OnnxModel, batches: Sequence[int] = (1, 3),
                       seed: int = 0) -> list[tuple[int, str, float]]:
    """``(batch, column group, max |onnxruntime - net|)`` on random [0, 1] images of the file's
    size, ``net`` run in eval mode in float32 on the CPU (the reference)."""
    reference = copy.deepcopy(net).cpu().float().eval()
    generator = torch.Generator().manual_seed(seed)
    h, w = model.input_size
    rows = []
    for batch in batches:
        img = torch.rand(int(batch), 3, h, w, generator=generator)
        with torch.no_grad():
            expected = reference(img)
        diff = (model(img) - expected).abs()
        rows += [(int(batch), name, float(diff[..., cols].max())) for name, cols in COLUMNS.items()]
    return rows
