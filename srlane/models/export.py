"""The network as an ONNX file, with or without the decoder inside the graph, and a runner for it.

``export_onnx(net, path, img_h, img_w)`` writes the eval-mode network: input ``img`` float32
(or float16 with ``fp16=True``) of shape (batch, 3, img_h, img_w), RGB in [0, 1] (the crop and
resize already done), output ``predictions`` float32 (batch, 40, 76 + K), exactly what ``net(img)``
returns in eval mode (see docs/outputs.md). With a category head (``num_categories`` K > 0) a
second output ``category_logits`` (batch, 40, K) holds its logits alone (the last K columns of
``predictions``). The batch dimension is dynamic; the image size is fixed by the export.

``export_onnx(..., decoder=build_decoder(cfg))`` writes the network followed by
:class:`srlane.models.graph_decode.GraphDecoder`: the outputs are the final lanes
(``FINAL_OUTPUTS``: valid, scores, xs, start, length, proposals, category, category_score; then
the raw predictions), and
the score threshold and the NMS threshold are the scalar graph inputs ``conf_threshold`` and
``nms_thres`` whose initializers hold the decoder's values: a caller feeds them or leaves the
defaults. The file's metadata ``DECODER_KEY`` records the decoder (top_k, num_points, img_w and
the default thresholds), which is how ``OnnxModel`` knows it.

The graph comes from PyTorch's TorchScript-based exporter (``dynamo=False``; deprecated since
torch 2.9 but present in 2.13): it needs no ``onnxscript``/``onnx-ir``, takes a dynamic batch
through ``dynamic_axes``, folds BatchNorm into the convolutions of an eval-mode network, exports
in about a third of the dynamo exporter's time and reproduces the network within float rounding
(``compare_with_torch``; the dynamo exporter, tried with onnxscript 0.7.2, agrees as closely, so
it is the way out if a later torch drops this one). The refine head's ``grid_sample`` needs
opset 16 or later.

``OnnxModel(path)`` runs such a file with onnxruntime: ``model(img)`` -> float32 CPU tensor
(B, 40, 76 + K), or :class:`FinalLanes` of CPU tensors for a file with the decoder (its thresholds
set by ``model.use_thresholds``); ``model.input_size`` -> (h, w),
``model.check_input_size(img_h, img_w)``; ``model.decoder`` -> the recorded decoder or None.
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from srlane.fileio import atomic_path
from srlane.models.decode import LaneDecoder
from srlane.models.detector import input_images
from srlane.models.graph_decode import FinalLanes, GraphDecoder

INPUT_NAME = "img"
OUTPUT_NAME = "predictions"
CATEGORY_OUTPUT = "category_logits"  # the category head's logits, of a network-only file with a head
FINAL_OUTPUTS = FinalLanes._fields  # the outputs of a file with the decoder, ``OUTPUT_NAME`` last
THRESHOLD_INPUTS = ("conf_threshold", "nms_thres")  # its scalar inputs, defaults in the file
DECODER_KEY = "srlane.decoder"  # metadata of a file with the decoder: json of ``decoder_metadata``
DEFAULT_OPSET = 17
MIN_OPSET = 16  # GridSample entered the default ONNX domain in opset 16
# Largest max |onnxruntime - PyTorch fp32| accepted per column group of the output
# (``categories``: the category head's logits, as the class logits).
# fp16: the file computes in half precision against the float32 network (about 3 decimal digits).
TOLERANCES = {
    "fp32": {"logits": 1e-4, "start/length": 1e-4, "xs": 1e-4, "categories": 1e-4},
    "fp16": {"logits": 5e-2, "start/length": 5e-3, "xs": 5e-3, "categories": 5e-2},
}


def output_columns(num_points: int) -> dict[str, slice]:
    """The column groups of the predictions the check compares (``categories``: what follows the
    points, the category head's logits)."""
    return {"logits": slice(0, 2), "start/length": slice(2, 4), "xs": slice(4, 4 + num_points),
            "categories": slice(4 + num_points, None)}


class _NetworkWithCategories(nn.Module):
    """``net`` whose predictions' last ``num_categories`` columns are also a second output."""

    def __init__(self, net: nn.Module, num_categories: int) -> None:
        super().__init__()
        self.net, self.num_categories = net, num_categories

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        predictions = self.net(img)
        return predictions, predictions[..., -self.num_categories:]


class _NetworkWithDecoder(nn.Module):
    """``net`` followed by the graph decoder: ``(img, conf_threshold, nms_thres)`` -> the
    fields of :class:`FinalLanes` as a tuple."""

    def __init__(self, net: nn.Module, decoder: GraphDecoder) -> None:
        super().__init__()
        self.net, self.decoder = net, decoder

    def forward(self, img: torch.Tensor, conf_threshold: torch.Tensor, nms_thres: torch.Tensor) -> tuple:
        return tuple(self.decoder(self.net(img), conf_threshold, nms_thres))


def decoder_metadata(decoder: LaneDecoder) -> dict:
    """What a file with the decoder records of it (``DECODER_KEY``)."""
    return {"top_k": decoder.top_k, "num_points": decoder.n_strips + 1, "img_w": int(decoder.img_w),
            "conf_threshold": decoder.conf_threshold, "nms_thres": decoder.nms_thres}


def export_onnx(net: nn.Module, path: str | os.PathLike, img_h: int, img_w: int, opset: int = DEFAULT_OPSET,
                fp16: bool = False, batch: int = 1, decoder: LaneDecoder | None = None,
                num_categories: int = 0) -> None:
    """Write ``net`` (an eval-mode copy on the CPU; ``net`` itself is untouched) to ``path``
    atomically, followed by ``decoder``'s steps as tensor ops when one is given (its top_k,
    points and thresholds; the thresholds become the defaults of the graph's threshold inputs).
    Without a decoder, ``num_categories`` > 0 (``net``'s category head) adds the output
    ``CATEGORY_OUTPUT``. ``batch`` is the example batch used for tracing; the file accepts any batch."""
    if int(opset) < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old: the refine head's grid_sample needs opset {MIN_OPSET} or later")
    model = copy.deepcopy(net).cpu().eval()
    model = model.half() if fp16 else model.float()
    example = torch.rand(int(batch), 3, int(img_h), int(img_w), generator=torch.Generator().manual_seed(0))
    example = (example.to(torch.float16 if fp16 else torch.float32),)
    inputs, outputs, defaults = [INPUT_NAME], [OUTPUT_NAME], {}
    if decoder is not None:
        graph_decoder = GraphDecoder(int(decoder.img_w), decoder.n_strips + 1, decoder.top_k)
        model = _NetworkWithDecoder(model, graph_decoder).eval()
        defaults = dict(zip(THRESHOLD_INPUTS, (decoder.conf_threshold, decoder.nms_thres)))
        example += tuple(torch.tensor(value, dtype=torch.float32) for value in defaults.values())
        inputs, outputs = inputs + list(THRESHOLD_INPUTS), list(FINAL_OUTPUTS)
    elif num_categories > 0:
        model, outputs = _NetworkWithCategories(model, int(num_categories)).eval(), [OUTPUT_NAME, CATEGORY_OUTPUT]
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings(), torch.no_grad():
        # the TorchScript exporter announces its deprecation and traces Python-level shape code
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, tmp, dynamo=False, opset_version=int(opset),
                          input_names=inputs, output_names=outputs,
                          dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME] + outputs},
                          do_constant_folding=True)
        result = model(*example)
        shapes = [tuple(t.shape[1:]) for t in (result if isinstance(result, tuple) else (result,))]
        _finish_graph(tmp, shapes, defaults, None if decoder is None else decoder_metadata(decoder))


def _finish_graph(path: str, shapes: list[tuple[int, ...]], defaults: dict[str, float],
                  metadata: dict | None) -> None:
    """Write the outputs' fixed dimensions (all but the batch) into the file, which the
    exporter's shape inference leaves symbolic; give each input of ``defaults`` an initializer
    of that value (float32: the caller may feed another) and record ``metadata`` under
    ``DECODER_KEY``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    for output, shape in zip(model.graph.output, shapes):
        for dim, size in zip(output.type.tensor_type.shape.dim[1:], shape):
            dim.dim_value = int(size)
    for name, value in defaults.items():
        model.graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
    if metadata is not None:
        model.metadata_props.add(key=DECODER_KEY, value=json.dumps(metadata))
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
        recorded = self.session.get_modelmeta().custom_metadata_map.get(DECODER_KEY)
        self.decoder: dict | None = json.loads(recorded) if recorded else None
        self._feeds: dict[str, np.ndarray] = {}

    def use_thresholds(self, conf_threshold: float, nms_thres: float) -> None:
        """Feed these thresholds to a file with the decoder at every call (instead of its
        defaults, ``decoder["conf_threshold"]`` and ``["nms_thres"]``)."""
        if self.decoder is None:
            raise ValueError(f"ONNX model {self.path} holds the network only: its thresholds are the decoder's")
        values = (conf_threshold, nms_thres)
        self._feeds = {name: np.array(value, dtype=np.float32) for name, value in zip(THRESHOLD_INPUTS, values)}

    def check_input_size(self, img_h: int, img_w: int) -> None:
        """Raise ValueError (one line) unless the file takes ``img_w x img_h`` images."""
        h, w = self.input_size
        if (h, w) != (int(img_h), int(img_w)):
            raise ValueError(f"ONNX model {self.path} takes {w}x{h} images (width x height) but the config "
                             f"expects {int(img_w)}x{int(img_h)}; export it again from this config")

    def __call__(self, img: torch.Tensor) -> torch.Tensor | FinalLanes:
        """``img`` (B, 3, h, w) RGB, uint8 or in [0, 1] (as the network takes it), any device ->
        float32 CPU tensor (B, 40, 76 + K), or the final lanes (CPU tensors) of a file with the
        decoder."""
        if img.dim() != 4 or tuple(img.shape[2:]) != self.input_size:
            raise ValueError(f"ONNX model {self.path} takes (batch, 3, {self.input_size[0]}, {self.input_size[1]}) "
                             f"inputs, got {tuple(img.shape)}")
        array = np.ascontiguousarray(input_images(img.detach()).cpu().numpy(), dtype=self.input_dtype)
        if self.decoder is not None:
            names = [o.name for o in self.session.get_outputs()]
            outs = dict(zip(names, self.session.run(names, {self.input_name: array, **self._feeds})))
            # a file exported before the lanes had categories: category 0, score 0 (no head)
            valid = outs["valid"]
            outs.setdefault("category", np.zeros(valid.shape, np.int64))
            outs.setdefault("category_score", np.zeros(valid.shape, np.float32))
            return FinalLanes(*(torch.from_numpy(outs[name]) for name in FINAL_OUTPUTS))
        (out,) = self.session.run([OUTPUT_NAME], {self.input_name: array})
        return torch.from_numpy(np.asarray(out, dtype=np.float32))


def compare_with_torch(net: nn.Module, model: OnnxModel, batches: Sequence[int] = (1, 3),
                       seed: int = 0, num_points: int = 72) -> list[tuple[int, str, float]]:
    """``(batch, column group, max |onnxruntime - net|)`` on random [0, 1] images of the file's
    size, ``net`` run in eval mode in float32 on the CPU (the reference); the group
    ``categories`` only for predictions wider than ``4 + num_points``."""
    reference = copy.deepcopy(net).cpu().float().eval()
    generator = torch.Generator().manual_seed(seed)
    h, w = model.input_size
    rows = []
    for batch in batches:
        img = torch.rand(int(batch), 3, h, w, generator=generator)
        with torch.no_grad():
            expected = reference(img)
        got = model(img)
        diff = ((got.predictions if isinstance(got, FinalLanes) else got) - expected).abs()
        rows += [(int(batch), name, float(diff[..., cols].max())) for name, cols in output_columns(num_points).items()
                 if diff[..., cols].numel()]
    return rows


def compare_decoding(model: OnnxModel, decoder: LaneDecoder, batches: Sequence[int] = (1, 3),
                     seed: int = 0) -> list[tuple[int, str, float]]:
    """For a file with the decoder: its lanes against ``decoder``'s (the Python decoder) on the
    file's own raw predictions, random [0, 1] images, at ``decoder``'s score threshold and at 0
    (every proposal a candidate of the NMS). Rows ``(batch, "lanes, conf C", lanes that differ
    in their proposal or number of points, or are missing on either side)``, ``(batch,
    "points, conf C", max |diff| of the other lanes' points)`` and ``(batch, "categories, conf C",
    those lanes whose category differs)``; ``model``'s thresholds are ``decoder``'s afterwards."""
    generator = torch.Generator().manual_seed(seed)
    h, w = model.input_size
    images = [torch.rand(int(batch), 3, h, w, generator=generator) for batch in batches]
    rows = []
    for conf in sorted({decoder.conf_threshold, 0.0}, reverse=True):
        reference = copy.copy(decoder)
        reference.conf_threshold = conf
        model.use_thresholds(conf, decoder.nms_thres)
        for img in images:
            final = model(img)
            got, want = reference.decode(final), reference.decode(final.predictions)
            pairs = [(a, b) for ours, theirs in zip(got, want) for a, b in zip(ours, theirs)]
            same = [(a, b) for a, b in pairs if a[1] == b[1] and a[0].points.shape == b[0].points.shape]
            differ = sum(abs(len(a) - len(b)) for a, b in zip(got, want)) + len(pairs) - len(same)
            points = max((float(np.abs(a[0].points - b[0].points).max()) for a, b in same), default=0.0)
            kinds = sum(a[0].category != b[0].category for a, b in same)
            rows += [(len(img), f"lanes, conf {conf:g}", float(differ)), (len(img), f"points, conf {conf:g}", points),
                     (len(img), f"categories, conf {conf:g}", float(kinds))]
    model.use_thresholds(decoder.conf_threshold, decoder.nms_thres)
    return rows
