"""Score lane predictions with the official metrics.

    python tools/evaluate.py culane --anno-dir A --pred-dir P --list L [--iou 0.5 ...] [--mf1]
                                    [--categories DIR] [--json OUT] [--per-image OUT.tsv] [--workers N]
    python tools/evaluate.py tusimple --pred P.json --gt G.json [--json OUT]
    python tools/evaluate.py curvelanes --data-root ROOT --pred-dir P [--split valid | --list L] [--json OUT]
    python tools/evaluate.py openlane --anno-dir A --pred-dir P --list L [--category-agnostic] [--iou 0.3]
                                      [--width 30] [--json OUT] [--per-image OUT.tsv]

CULane: official F1 (width 30, IoU > threshold) over the images of the list file, read from
`<dir>/<image stem>.lines.txt` in both folders (a missing file: no lanes); `--categories` names a
folder of category lists (test0_normal.txt, ...: an image in one list at most) to score each too.
TuSimple: the official LaneEval accuracy, FP and FN, and the F1 derived from the FP/FN means.
CurveLanes: the official F1 (224x224 canvas, width 5, IoU > 0.5) with each image's own size;
predictions are `P/<list entry without extension>.lines.json` (the label schema, numbers or
strings) or `.lines.txt`, a missing file is an image without lanes.
OpenLane: the official 2D F-score (1920x1280 canvas, width 30, IoU > 0.3; a detection matches only
an annotation of its category unless --category-agnostic, the official tool's -k) over the list's
entries, `<dir>/<entry without extension>.json` in both folders (a missing result: no lanes).
Files are read by the benchmark's module (srlane.benchmarks.<name>) and scored by the evaluator
that validation uses, so the json's "metric" is the number validation reports for the same lanes
(CULane: the F1 at the lowest --iou; TuSimple: the accuracy; CurveLanes: the F1).
Undefined ratios print as "-" and are null in json. Malformed input stops with one line.
"""
import argparse
import json
from collections.abc import Sequence

from tqdm import tqdm

from srlane.benchmarks import culane, curvelanes, openlane, tusimple
from srlane.cli import run_cli
from srlane.evaluation.culane import MF1_THRESHOLDS, threshold_key
from srlane.fileio import atomic_write_text


def fmt(value, digits: int = 4) -> str:
    """A number for a table; None prints as '-'."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(header: list[str], rows: list[list[str]]) -> str:
    """Columns aligned: first left, others right."""
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for r in [header] + rows:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def culane_tables(result: dict, thresholds: list[float]) -> str:
    keys = [threshold_key(t) for t in thresholds]
    rows = [[k] + [fmt(result[k][c]) for c in ("tp", "fp", "fn", "precision", "recall", "f1")] for k in keys]
    text = table(["IoU >", "tp", "fp", "fn", "precision", "recall", "F1"], rows)
    if "mF1" in result:
        text += f"\nmF1 ({keys[0]}:{keys[-1]}): {fmt(result['mF1'])}"
    if "categories" in result:
        header = ["category"] + [f"F1@{k}" for k in keys] + (["mF1"] if len(keys) > 1 else []) + [f"fp@{keys[0]}"]
        rows = []
        for name, block in result["categories"].items():
            row = [name] + [fmt(block[k]["f1"]) for k in keys]
            row += [fmt(block["mF1"])] if len(keys) > 1 else []
            rows.append(row + [str(block[keys[0]]["fp"])])
        text += "\n\n" + table(header, rows)
    return text


def per_image_tsv(names: list[str], scores, thresholds: list[float]) -> str:
    header = ["image", "anno", "pred"] + [f"tp@{threshold_key(t)}" for t in thresholds] + ["matched_iou"]
    lines = ["\t".join(header)]
    for i, name in enumerate(names):
        ious = ",".join(f"{v:.4f}" for v in scores.matched_iou[i])
        cells = [name, str(scores.num_anno[i]), str(scores.num_pred[i])] + [str(v) for v in scores.tp[i]] + [ious]
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def run_culane(args: argparse.Namespace) -> dict:
    thresholds = sorted(set(args.iou + (list(MF1_THRESHOLDS) if args.mf1 else [])))
    records = culane.scoring_records(args.list, args.anno_dir, args.categories)
    evaluator = culane.annotation_evaluator(records, thresholds, args.width, (args.height, args.img_width),
                                            args.workers)
    predictions = culane.read_predictions(records, args.pred_dir)
    with tqdm(total=len(records), desc=f"Evaluate CULane F1 at IoU {', '.join(map(threshold_key, thresholds))}",
              unit="img", dynamic_ncols=True) as bar:
        scores = evaluator.score_images(predictions, bar.update)
    result = culane.f1_results(evaluator, scores)
    print(culane_tables(result, thresholds))
    if args.per_image:
        atomic_write_text(args.per_image, per_image_tsv([r.img_name for r in records], scores, thresholds))
    return result


def run_tusimple(args: argparse.Namespace) -> dict:
    records = tusimple.scoring_records(args.gt)
    lanes, run_times = tusimple.read_prediction_file(args.pred, records)
    result = tusimple.accuracy_evaluator(records)(lanes, run_times)
    rows = [["accuracy", fmt(result["accuracy"])], ["FP", fmt(result["fp"])], ["FN", fmt(result["fn"])],
            ["F1 (derived from FP/FN means)", fmt(result["f1"])]]
    print(table(["metric", "value"], rows))
    return result


def run_curvelanes(args: argparse.Namespace) -> dict:
    list_path = args.list or curvelanes.split_list_path(args.data_root, args.split)
    records = curvelanes.scoring_records(args.data_root, list_path)
    predictions = curvelanes.read_predictions(records, args.pred_dir)
    with tqdm(total=len(records), desc="Evaluate CurveLanes F1 (224x224 canvas, IoU 0.5)", unit="img",
              dynamic_ncols=True) as bar:
        result = curvelanes.f1_evaluator(records, bar.update)(predictions)
    print(table(["images", "tp", "fp", "fn", "precision", "recall", "F1"],
                [[str(result["num_images"])] + [fmt(result[k]) for k in ("tp", "fp", "fn", "precision", "recall", "f1")]]))
    return result


def run_openlane(args: argparse.Namespace) -> dict:
    names, frames = openlane.scoring_frames(args.anno_dir, args.list)
    lanes, categories = openlane.read_results(names, args.pred_dir)
    evaluator = openlane.OpenLaneEvaluator([f.lanes for f in frames], [f.categories for f in frames],
                                           not args.category_agnostic, args.iou, args.width)
    counts = evaluator.image_counts(lanes, categories)
    result = {**openlane.f1_results(counts), "category_aware": not args.category_agnostic}
    mode = "category-agnostic" if args.category_agnostic else "same category"
    values = [fmt(result[k]) for k in ("tp", "fp", "fn", "precision", "recall", "f1")]
    print(table(["images", "IoU >", "matching", "tp", "fp", "fn", "precision", "recall", "F1"],
                [[str(len(names)), fmt(args.iou, 2), mode] + values]))
    if args.per_image:
        rows = ["image\ttp\tfp\tfn"] + [f"{n}\t{a}\t{b}\t{c}" for n, (a, b, c) in zip(names, counts.tolist())]
        atomic_write_text(args.per_image, "\n".join(rows) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the command line ``argv``; returns the metrics (also written to ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="dataset", required=True)
    cu = sub.add_parser("culane", help="official CULane F1")
    cu.add_argument("--anno-dir", required=True, help="folder of the annotation .lines.txt files")
    cu.add_argument("--pred-dir", required=True, help="folder of the predicted .lines.txt files")
    cu.add_argument("--list", required=True, help="list file of the evaluated images (e.g. list/test.txt)")
    cu.add_argument("--iou", type=float, nargs="+", default=[0.5], help="IoU thresholds (tp when IoU > t)")
    cu.add_argument("--mf1", action="store_true", help="also 0.50:0.05:0.95 and their mean F1")
    cu.add_argument("--categories", help="folder of category list files (test0_normal.txt, ...)")
    cu.add_argument("--width", type=int, default=30, help="lane width in pixels")
    cu.add_argument("--height", type=int, default=590, help="canvas height")
    cu.add_argument("--img-width", type=int, default=1640, help="canvas width")
    cu.add_argument("--workers", type=int, default=None, help="processes (default: all cores; 0: in-process)")
    cu.add_argument("--json", help="write the results as json here")
    cu.add_argument("--per-image", help="write per-image counts and matched IoUs as tsv here")
    cu.set_defaults(run=run_culane)
    tu = sub.add_parser("tusimple", help="official TuSimple LaneEval")
    tu.add_argument("--pred", required=True, help="prediction json-lines file")
    tu.add_argument("--gt", required=True, help="ground-truth json-lines file")
    tu.add_argument("--json", help="write the results as json here")
    tu.set_defaults(run=run_tusimple)
    cl = sub.add_parser("curvelanes", help="official CurveLanes F1")
    cl.add_argument("--data-root", required=True, help="the CurveLanes folder (images and labels)")
    cl.add_argument("--pred-dir", required=True, help="folder of <list entry without extension>.lines.json/.lines.txt")
    where = cl.add_mutually_exclusive_group()
    where.add_argument("--split", default="valid", help="split whose <split>/<split>.txt lists the images (default: valid)")
    where.add_argument("--list", help="list file of the evaluated images instead (paths relative to --data-root)")
    cl.add_argument("--json", help="write tp, fp, fn, precision, recall, f1 as json here")
    cl.set_defaults(run=run_curvelanes)
    ol = sub.add_parser("openlane", help="official OpenLane 2D F-score")
    ol.add_argument("--anno-dir", required=True, help="folder of the label .json files (e.g. lane3d_1000)")
    ol.add_argument("--pred-dir", required=True, help="folder of the result .json files")
    ol.add_argument("--list", required=True, help="list file of the evaluated images (validation/segment-x/y.jpg)")
    ol.add_argument("--category-agnostic", action="store_true", help="match lanes of any category (official -k)")
    ol.add_argument("--iou", type=float, default=openlane.IOU_THRESHOLD, help="IoU threshold (tp when IoU > t)")
    ol.add_argument("--width", type=int, default=openlane.WIDTH, help="lane width in pixels")
    ol.add_argument("--json", help="write tp, fp, fn, precision, recall, f1 as json here")
    ol.add_argument("--per-image", help="write each image's tp, fp, fn as tsv here")
    ol.set_defaults(run=run_openlane)
    args = parser.parse_args(argv)
    result = args.run(args)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    run_cli(main, ValueError)
