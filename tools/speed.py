"""Time SRLane's forward pass and its decoding on one device: the release's protocol beside ours.

    python tools/speed.py CONFIG [--accelerator cpu|cuda|auto] [--batch B] [--warmup N] [--iters N]
                          [--release-warmup N] [--release-iters N] [--load-from CKPT] [--json OUT]
                          [--threads T] [--onnx MODEL.onnx] [--precision fp32|fp16|bf16]
                          [--[no-]fold-bn] [--[no-]channels-last] [--compile none|compile|cudagraph]
                          [--set KEY=VALUE ...]

The network is the config's (random weights, or ``--load-from``'s, loaded and checked against
the config as predict.py loads it: ``srlane.inference.model.load_network``) prepared by
``srlane.models.inference.prepare_for_inference`` with the inference options: the config's
``inference`` dict, overridden by the flags (the same flags as tools/predict.py). Every timed
forward is one call of that prepared model, ``model(img)`` under ``torch.no_grad``: the layout
change for ``--channels-last``, the autocast for fp16/bf16 and the float32 cast of the output
included. The input is a random float image in [0, 1] already on the device (no image loading,
no resizing). On CUDA each timed call is synchronised before and after.

Release protocol (the release's speed script: 278 FPS for R18 on an RTX 3090): batch 1, one
3 x img_h x img_w input (1x3x320x800 for the CULane config), the network alone (no decoding),
``--release-warmup`` (200) untimed calls, then ``--release-iters`` (1000) calls timed as one block,
synchronised once before and once after (on CUDA the calls queue as they would on a stream);
FPS = 1000 / mean ms. The release measured fp32 eager; here it runs with the chosen options
(the row names the precision; the options row names the rest).

Ours, at ``--batch``, each ``--warmup`` untimed calls then the median of ``--iters`` calls (robust
on a shared machine; each call synchronised on CUDA): forward (as above); decode (:class:`LaneDecoder`: scores, NMS, lanes) of
outputs that yield ``max_lanes`` lanes per image: the network's own outputs when a checkpoint is
given and they do, else crafted proposals (``max_lanes`` confident, well separated lanes plus
low-score rest; the table says which); ``decode_ms_batch8``: a batch of 8 crafted images; forward
+ decode (end to end without image loading).

``--onnx MODEL.onnx`` (a file of ``tools/export.py`` for the config's input size) also times
onnxruntime on the same input (``OnnxModel``: all graph optimisations, as many intra-op threads
as torch uses, the CUDA provider on ``--accelerator cuda`` when onnxruntime-gpu is installed; the
input goes through host memory; the inference options do not apply to it): its forward, timed in
turn with the eager forward so that both see the same load, its forward + decode, timed in turn
with ours, the ratio to the eager forward and, with ``--load-from`` (the checkpoint of the file),
the max |difference| of the two raw outputs. A file exported ``--with-decoder`` runs the
threshold and NMS in its graph, fed the config's thresholds: its forward is network + graph
decoding, its forward + decode adds only the making of the lanes (as predict.py runs it); the
table gives the lanes per image of both end-to-end paths. ``--json OUT`` writes every number of
the table (atomically).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from srlane.cli import (add_checkpoint_argument, add_inference_arguments, at_least, config_from_args,
                        device_from_args, inference_options_from_args, note, run_cli, tool_parser)
from srlane.engine.fabric import ACCELERATORS
from srlane.fileio import atomic_write_text
from srlane.inference.crafted import crafted_predictions
from srlane.inference.model import load_network, load_onnx
from srlane.models import build_net
from srlane.models.decode import build_decoder
from srlane.models.graph_decode import FinalLanes
from srlane.models.inference import build_inference_options, prepare_for_inference


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_release(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """The release's protocol: mean milliseconds of ``iters`` calls of ``fn()`` after ``warmup``
    calls, timed as one block, synchronised once before and once after (on CUDA the calls queue
    on the device, as a video stream's would)."""
    for _ in range(warmup):
        fn()
    _synchronize(device)
    begin = time.perf_counter()
    for _ in range(iters):
        fn()
    _synchronize(device)
    return (time.perf_counter() - begin) * 1000.0 / iters


def _timed(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Median of the milliseconds of ``iters`` calls of ``fn()`` after ``warmup`` calls; on CUDA
    each call is synchronised before and after."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        _synchronize(device)
        begin = time.perf_counter()
        fn()
        _synchronize(device)
        times.append((time.perf_counter() - begin) * 1000.0)
    return statistics.median(times)


def _timed_alternating(fn_a, fn_b, device: torch.device, warmup: int, iters: int) -> tuple[float, float]:
    """Median milliseconds of ``fn_a()`` and ``fn_b()`` called in turn, so that both see the
    same machine load."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    times = ([], [])
    for _ in range(iters):
        for fn, out in ((fn_a, times[0]), (fn_b, times[1])):
            out.append(_timed(fn, device, 0, 1))
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv: list[str] | None = None) -> dict:
    parser = tool_parser(__doc__)
    parser.add_argument("--accelerator", "--device", dest="accelerator", default="cpu", choices=ACCELERATORS,
                        help="cpu (default), cuda, or auto: CUDA when present")
    parser.add_argument("--batch", type=at_least(1), default=1)
    parser.add_argument("--warmup", type=at_least(0), default=5)
    parser.add_argument("--iters", type=at_least(1), default=20)
    parser.add_argument("--release-warmup", type=at_least(0), default=200, metavar="N",
                        help="warm-up calls of the release's protocol (default: 200, as the release)")
    parser.add_argument("--release-iters", type=at_least(1), default=1000, metavar="N",
                        help="timed calls of the release's protocol (default: 1000, as the release)")
    add_checkpoint_argument(parser, required=False)
    parser.add_argument("--json", default=None)
    parser.add_argument("--threads", type=at_least(1), default=None)
    parser.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                        help="also time this exported file with onnxruntime on the same input")
    add_inference_arguments(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config_from_args(args)
    options = inference_options_from_args(args, build_inference_options(cfg))
    device = device_from_args(args, cfg)
    net = load_network(cfg, args.load_from, device, note) if args.load_from else build_net(cfg, pretrained=False)
    model = prepare_for_inference(net, options, device)
    # a model per input shape: a CUDA graph replays only the shape it captured, torch.compile would
    # recompile its graph for dynamic shapes
    release_model = model if args.batch == 1 else prepare_for_inference(net, options, device)
    size = (3, int(cfg.img_h), int(cfg.img_w))
    img = torch.rand(args.batch, *size, device=device)
    release_img = torch.rand(1, *size, device=device)
    decoder = build_decoder(cfg)
    onnx_model = None
    if args.onnx:
        providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda"
                     else ["CPUExecutionProvider"])
        onnx_model = load_onnx(cfg, args.onnx, threads=torch.get_num_threads(), providers=providers,
                               decoder=decoder)

    with torch.no_grad():
        release_ms = _timed_release(lambda: release_model(release_img), device, args.release_warmup,
                                    args.release_iters)
        if onnx_model is None:
            forward_ms = _timed(lambda: model(img), device, args.warmup, args.iters)
        else:  # eager and onnxruntime in turn on the same input
            forward_ms, onnx_forward_ms = _timed_alternating(lambda: model(img), lambda: onnx_model(img), device,
                                                             args.warmup, args.iters)
        outputs = model(img)
        categories = outputs.shape[-1] - 4 - int(cfg.num_points)  # the category head's logits, if any
        source = "network outputs"
        if not args.load_from or any(len(lanes) < decoder.top_k for lanes in decoder(outputs)):
            outputs = crafted_predictions(args.batch, outputs.shape[1], int(cfg.num_points), decoder.top_k,
                                          categories).to(device)
            source = "crafted proposals"
        decode_ms = _timed(lambda: decoder(outputs), device, args.warmup, args.iters)
        crafted8 = crafted_predictions(8, outputs.shape[1], int(cfg.num_points), decoder.top_k, categories).to(device)
        decode8_ms = _timed(lambda: decoder(crafted8), device, args.warmup, args.iters)
        lanes_per_image = sum(map(len, decoder(model(img)))) / args.batch
        if onnx_model is None:
            end_to_end_ms = _timed(lambda: decoder(model(img)), device, args.warmup, args.iters)
        else:
            end_to_end_ms, onnx_end_to_end_ms = _timed_alternating(
                lambda: decoder(model(img)), lambda: decoder(onnx_model(img)), device, args.warmup, args.iters)
            onnx_output = onnx_model(img)
            onnx_lanes_per_image = sum(map(len, decoder(onnx_output))) / args.batch
            onnx_raw = onnx_output.predictions if isinstance(onnx_output, FinalLanes) else onnx_output
            # comparable only when both hold the checkpoint's weights
            onnx_diff = float((onnx_raw - model(img).cpu()).abs().max()) if args.load_from else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    release = {"batch": 1, "img_w": int(cfg.img_w), "img_h": int(cfg.img_h), "warmup": args.release_warmup,
               "iters": args.release_iters, "statistic": "mean",
               "synchronised": "once before and once after the timed calls"}
    options = getattr(model, "options", options)  # "auto" options as they were settled at the first call
    result = {**dataclasses.asdict(options), "release_protocol": release, "release_forward_ms_mean": release_ms,
              "release_forward_fps": 1000.0 / release_ms, "batch": args.batch, "forward_ms": forward_ms,
              "decode_ms": decode_ms, "decode_ms_batch8": decode8_ms, "end_to_end_ms": end_to_end_ms,
              "fps": 1000.0 * args.batch / end_to_end_ms, "forward_fps": 1000.0 * args.batch / forward_ms,
              "lanes_per_image": lanes_per_image,
              "threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0]}
    if onnx_model is not None:
        result.update({"onnx_forward_ms": onnx_forward_ms, "onnx_end_to_end_ms": onnx_end_to_end_ms,
                       "onnx_forward_fps": 1000.0 * args.batch / onnx_forward_ms,
                       "onnx_vs_eager_forward": onnx_forward_ms / forward_ms, "onnx_max_abs_diff": onnx_diff,
                       "onnx_providers": onnx_model.providers, "onnx_file": os.path.abspath(args.onnx),
                       "onnx_decoder_in_graph": onnx_model.decoder is not None,
                       "onnx_lanes_per_image": onnx_lanes_per_image,
                       "onnx_vs_eager_end_to_end": onnx_end_to_end_ms / end_to_end_ms})
    shape = f"{int(cfg.img_w)}x{int(cfg.img_h)}"
    rows = [("device", f"{name} ({device.type}, {torch.get_num_threads()} threads)"),
            ("options", ", ".join(f"{key} {value}" for key, value in dataclasses.asdict(options).items())),
            ("load average (1 min)", f"{result['load_average_1min']:.2f}"),
            ("release protocol", f"batch 1, {shape} random input, network alone, {args.release_warmup} warm-up "
                                 f"+ {args.release_iters} timed calls, FPS = 1000 / mean ms"),
            (f"release protocol: forward FPS (bs1, {options.precision}, {args.release_warmup} warm-up, "
             f"{args.release_iters} calls, mean)", f"{result['release_forward_fps']:.1f} ({release_ms:.2f} ms)"),
            ("ours", f"batch {args.batch}, {shape} random input, {args.warmup} warm-up, median of {args.iters} calls"),
            ("ours: decode input", f"{source}, {decoder.top_k} lanes per image"),
            ("ours: forward ms/batch", f"{forward_ms:.2f}"), ("ours: decode ms/batch", f"{decode_ms:.3f}"),
            ("ours: decode ms/batch of 8", f"{decode8_ms:.3f}"),
            ("ours: forward+decode ms/batch", f"{end_to_end_ms:.2f} ({lanes_per_image:g} lanes per image)"),
            ("ours: FPS (images/s, forward+decode)", f"{result['fps']:.1f}"),
            ("ours: forward FPS (images/s)", f"{result['forward_fps']:.1f}")]
    if onnx_model is not None:
        in_graph = " (threshold and NMS in the graph)" if onnx_model.decoder is not None else ""
        rows += [("onnxruntime", f"{os.path.basename(args.onnx)}, {onnx_model.providers[0]}, "
                                 + (f"max |diff| to eager {onnx_diff:.1e}" if onnx_diff is not None
                                    else "random eager weights (give --load-from to compare outputs)") + in_graph),
                 ("onnxruntime forward ms/batch", f"{onnx_forward_ms:.2f}"),
                 ("onnxruntime / eager forward", f"{result['onnx_vs_eager_forward']:.2f}x"),
                 ("onnxruntime forward+decode ms/batch",
                  f"{onnx_end_to_end_ms:.2f} ({onnx_lanes_per_image:g} lanes per image)"),
                 ("onnxruntime / ours forward+decode", f"{result['onnx_vs_eager_end_to_end']:.2f}x"),
                 ("onnxruntime forward FPS (images/s)", f"{result['onnx_forward_fps']:.1f}")]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    run_cli(main)
