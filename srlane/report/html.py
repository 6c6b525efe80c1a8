"""The report's page: plain HTML and CSS, no script, every picture a PNG file beside it (nothing
fetched from a network)."""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from srlane.benchmarks.base import headline_counts

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #e4e4e4; }
th { background: #f3f3f3; text-align: right; } th:first-child, td:first-child { text-align: left; }
td { text-align: right; } tr.total td { font-weight: bold; border-top: 2px solid #999; }
tr.best td { background: #fff4c2; }
table.facts td { text-align: left; }
.note { color: #666; font-size: 0.9em; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1em; }
figure { margin: 0; } figure img, .plot { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #444; }
.key span { display: inline-block; padding: 0 0.5em; margin-right: 0.5em; border-radius: 3px; color: #000; }
"""
# the gallery's legend, as visualize.MATCH_COLOURS draws the lanes (here RGB)
KEY = (("TP prediction", "#3cdc3c"), ("matched ground truth", "#ffffff; border: 1px solid #999"),
       ("FP prediction", "#ff2828"), ("FN ground truth (missed)", "#ffe600"))


def cell(value: Any, digits: int = 4) -> str:
    """A table cell's text: '-' for None, integers as they are, floats with ``digits``."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html.escape(str(value))
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], classes: Sequence[str] = (), ident: str = "") -> str:
    """An HTML table; ``classes`` per row (e.g. "total")."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    ident = f' id="{ident}"' if ident else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def metric_table(metrics: Mapping[str, Any]) -> str:
    """Per category and in total: F1 (%), precision, recall, TP, FP, FN (CULane's cross: its FP
    only, as the official tool reports it)."""
    entries = [*(metrics.get("categories") or {}).items(), ("total", metrics)]
    rows = []
    for name, entry in entries:
        counts = headline_counts(entry)
        f1 = "-" if counts.get("f1") is None else f"{100 * counts['f1']:.2f}"
        if name == "cross":
            f1 = "-"
        rows.append([html.escape(name), f1, cell(counts.get("precision")), cell(counts.get("recall")),
                     cell(counts.get("tp")), cell(counts.get("fp")), cell(counts.get("fn"))])
    return table(["category", "F1 (%)", "precision", "recall", "TP", "FP", "FN"], rows,
                 [""] * (len(rows) - 1) + ["total"], "metrics")


def threshold_table(curve: Sequence[Mapping[str, Any]]) -> str:
    """The threshold curve's numbers; the row of the best metric marked."""
    best = max(range(len(curve)), key=lambda i: curve[i]["metric"])
    rows = [[cell(p["conf_threshold"], 2), cell(p["metric"]), cell(p.get("f1")), cell(p.get("precision")),
             cell(p.get("recall")), cell(p["lanes"])] for p in curve]
    return table(["confidence threshold", "metric", "F1", "precision", "recall", "lanes"], rows,
                 ["best" if i == best else "" for i in range(len(rows))], "thresholds")


def iou_table(curve: Sequence[Mapping[str, Any]]) -> str:
    rows = [[cell(p["iou"], 1), cell(p["f1"]), cell(p["precision"]), cell(p["recall"]), cell(p["tp"]),
             cell(p["fp"]), cell(p["fn"])] for p in curve]
    return table(["IoU >", "F1", "precision", "recall", "TP", "FP", "FN"], rows, ident="iou")


def image(src: str, alt: str) -> str:
    return f'<img class="plot" src="{html.escape(src)}" alt="{html.escape(alt)}">'


def gallery(pictures: Sequence[tuple[str, str]]) -> str:
    """The gallery's grid of ``(src, caption)`` and its colour key."""
    key = "".join(f'<span style="background: {colour}">{html.escape(label)}</span>' for label, colour in KEY)
    figures = "".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
                      f"<figcaption>{html.escape(caption)}</figcaption></figure>" for src, caption in pictures)
    return f'<p class="key">{key}</p><div class="gallery">{figures}</div>'


def page(title: str, facts: Sequence[tuple[str, str]], sections: Sequence[tuple[str, str]]) -> str:
    """The whole document: a title, a list of ``(name, value)`` facts, then ``(heading, html)``
    sections (their html already escaped)."""
    items = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts)
    body = "".join(f"<section><h2>{html.escape(h)}</h2>{content}</section>" for h, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<table class="facts">{items}</table>{body}</body></html>\n')


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'
