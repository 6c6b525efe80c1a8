"""Export a trained SRLane to ONNX: the network only, or with the decoder in the graph.

    python tools/export.py CONFIG --load-from CKPT --out model.onnx [--with-decoder] [--fp16] [--opset N]
                           [--batch B] [--set KEY=VALUE ...]

The file takes ``img`` (batch, 3, img_h, img_w), RGB in [0, 1] after the crop and resize (float16
with --fp16), and returns ``predictions`` float32 (batch, 40, 76), as ``net(img)`` in eval mode;
the batch dimension is dynamic (docs/outputs.md). With a category head (model.num_lane_categories
K > 0) the predictions are (batch, 40, 76 + K), the last K columns its logits, also given alone as
the second output ``category_logits`` (batch, 40, K). Before the file is put in place, onnxruntime
runs it on random images at batch 1, 3 and B and its outputs are compared with PyTorch's float32
network: max |diff| <= 1e-4 (fp32) or 5e-2 on the logits and 5e-3 on start, length and xs
(fp16). A larger difference leaves no file and exits with status 1. The checkpoint's own config
must agree with CONFIG on the input size, points, lanes, crop and model (one line naming both
values otherwise; srlane.inference.model.load_network).

--with-decoder appends the decoder (score threshold, lane NMS, the points of each lane) as tensor
ops: the outputs are the final lanes, ``valid`` (batch, K) bool, ``scores`` (batch, K), ``xs``
(batch, K, P) (-1 where a row has no point), ``start`` and ``length`` (batch, K) int64 rows,
``proposals`` (batch, K) int64, ``category`` (batch, K) int64 (each lane's OpenLane category, 0
without a head) and ``category_score`` (batch, K) float32 (its probability, 0 without a head), then
``predictions``; K is the config's nms_topk (else max_lanes).
The scalar float32 inputs ``conf_threshold`` and ``nms_thres`` default to the config's
test_parameters. The check then also decodes the file's own predictions in Python at the
config's score threshold and at 0: the same lanes, the same points and categories (no difference
allowed).
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from srlane.cli import at_least, checkpoint_tool_parser, config_from_args, note, run_cli
from srlane.fileio import atomic_path
from srlane.inference.model import load_network
from srlane.models.decode import build_decoder
from srlane.models.detector import num_lane_categories
from srlane.models.export import (DEFAULT_OPSET, MIN_OPSET, TOLERANCES, OnnxModel, compare_decoding,
                                  compare_with_torch, export_onnx)


class ExportCheckError(RuntimeError):
    """onnxruntime and PyTorch disagree beyond the tolerance."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = checkpoint_tool_parser(__doc__)
    parser.add_argument("--out", required=True, metavar="FILE", help="the .onnx file to write")
    parser.add_argument("--with-decoder", action="store_true",
                        help="the score threshold, lane NMS and points in the graph: the outputs are the final lanes")
    parser.add_argument("--fp16", action="store_true", help="half-precision weights and input")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                        help=f"ONNX opset (default {DEFAULT_OPSET}; at least {MIN_OPSET} for grid_sample)")
    parser.add_argument("--batch", type=at_least(1), default=1, metavar="B",
                        help="example batch for tracing and checking (the file takes any batch; default 1)")
    args = parser.parse_args(argv)
    if args.opset < MIN_OPSET:
        parser.error(f"--opset {args.opset}: the refine head's grid_sample needs opset {MIN_OPSET} or later")
    return args


def check_table(rows: list[tuple[int, str, float]], tolerances: dict[str, float]) -> tuple[str, list[str]]:
    """The aligned table of the check and the failed lines."""
    header = ("batch", "output", "max |diff|", "tolerance", "")
    lines = [header] + [(str(b), name, f"{diff:.2e}", f"{tolerances[name]:.0e}",
                         "ok" if diff <= tolerances[name] else "FAIL") for b, name, diff in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)
    failed = [f"batch {b} {name} max |diff| {diff:.2e} > {tolerances[name]:.0e}"
              for b, name, diff in rows if not diff <= tolerances[name]]
    return text, failed


def export(args: argparse.Namespace) -> dict:
    """Run the command line; returns the check's rows and the file's size."""
    cfg = config_from_args(args)
    net = load_network(cfg, args.load_from, "cpu", note)
    img_h, img_w = int(cfg.img_h), int(cfg.img_w)
    precision = "fp16" if args.fp16 else "fp32"
    tolerances = dict(TOLERANCES[precision])
    batches = sorted({1, 3, args.batch})
    decoder = build_decoder(cfg) if args.with_decoder else None
    categories = num_lane_categories(cfg.model)
    with atomic_path(args.out, suffix=".onnx") as tmp:  # nothing in place unless the check passes
        export_onnx(net, tmp, img_h, img_w, opset=args.opset, fp16=args.fp16, batch=args.batch, decoder=decoder,
                    num_categories=categories)
        model = OnnxModel(tmp, providers=["CPUExecutionProvider"])
        rows = compare_with_torch(net, model, batches, num_points=int(cfg.num_points))
        if decoder is not None:
            decoding = compare_decoding(model, decoder, batches)
            tolerances.update({name: 0.0 for _, name, _ in decoding})
            rows += decoding
        table, failed = check_table(rows, tolerances)
        print(f"onnxruntime (CPU) vs PyTorch float32 on random {img_w}x{img_h} images, {precision}, opset {args.opset}")
        print(table)
        if failed:
            raise ExportCheckError(f"onnxruntime disagrees with PyTorch ({'; '.join(failed)}); "
                                   f"{args.out} not written")
        del model
    size_mb = os.path.getsize(args.out) / 2**20
    proposals = net.rpn_head.num_priors
    predictions = f"predictions (batch, {proposals}, {4 + int(cfg.num_points) + categories}) float32"
    signature = f"output {predictions}"
    if categories:
        signature = f"outputs {predictions} and category_logits (batch, {proposals}, {categories}) float32"
    if decoder is not None:
        k = decoder.top_k
        signature = (f"inputs conf_threshold (default {decoder.conf_threshold:g}) and nms_thres (default "
                     f"{decoder.nms_thres:g}), outputs valid, scores, start, length, proposals, category, "
                     f"category_score (batch, {k}), xs (batch, {k}, {int(cfg.num_points)}) and {predictions}")
    print(f"wrote {os.path.abspath(args.out)} ({size_mb:.1f} MB): input img (batch, 3, {img_h}, {img_w}) "
          f"{'float16' if args.fp16 else 'float32'}, {signature}")
    return {"rows": rows, "precision": precision, "size_mb": size_mb}


def main(argv: Sequence[str] | None = None) -> dict:
    return export(parse_args(argv))


if __name__ == "__main__":
    run_cli(main, ExportCheckError, ValueError)
