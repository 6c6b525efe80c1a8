"""The lane-kind part of a validation's metrics (``srlane.evaluation.categories``) as aligned text
tables: accuracy, per-kind F1 with its counts, the confusion matrix (the log and TensorBoard)."""
from __future__ import annotations

from collections.abc import Mapping

CORNER = "annotation \\ predicted"
KIND_KEYS = ("category_accuracy", "category_matched", "category_f1", "category_counts", "category_confusion")


def has_kind_metrics(metrics: Mapping[str, object]) -> bool:
    """Whether ``metrics`` hold the kind metrics."""
    return isinstance(metrics.get("category_confusion"), Mapping)


def kind_tables(metrics: Mapping[str, object]) -> str:
    """Accuracy on matched lanes, a row per kind (F1 %, TP, FP, FN), then the confusion matrix
    (rows: annotation kind, columns: predicted kind), each line indented by two spaces."""
    accuracy = metrics["category_accuracy"]
    shown = "-" if accuracy is None else f"{100 * accuracy:.2f} %"
    lines = [f"  lane kinds: accuracy {shown} on {metrics['category_matched']} matched lanes"]
    counts, f1 = metrics["category_counts"], metrics["category_f1"]
    width = max([len("kind"), *map(len, counts)])
    lines.append(f"  {'kind':<{width}}{'F1 (%)':>9}{'TP':>8}{'FP':>8}{'FN':>8}")
    for name, c in counts.items():
        value = "-" if f1[name] is None else f"{100 * f1[name]:.2f}"
        lines.append(f"  {name:<{width}}{value:>9}{c['tp']:>8}{c['fp']:>8}{c['fn']:>8}")
    confusion = metrics["category_confusion"]
    kinds, matrix = confusion["kinds"], confusion["matrix"]
    if kinds:
        head = max(len(CORNER), *map(len, kinds))
        cell = max(6, *(len(k) + 2 for k in kinds))
        lines.append(f"  {CORNER:<{head}}" + "".join(f"{k:>{cell}}" for k in kinds))
        lines.extend(f"  {k:<{head}}" + "".join(f"{n:>{cell}}" for n in row) for k, row in zip(kinds, matrix))
    return "\n".join(lines)
