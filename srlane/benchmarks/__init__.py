"""The benchmarks, one module each, behind one table: how to read a split, write predictions in
the benchmark's format and score them with its official metric."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from srlane.benchmarks.base import Benchmark, Evaluator
from srlane.benchmarks.culane import CULane
from srlane.benchmarks.curvelanes import CurveLanes
from srlane.benchmarks.openlane import OpenLane
from srlane.benchmarks.tusimple import TuSimple
from srlane.config import ConfigError, check_choice
from srlane.data.crop import build_crop
from srlane.data.label_checks import ON_BAD_LABEL

BENCHMARKS: dict[str, type[Benchmark]] = {cls.name: cls for cls in (CULane, TuSimple, CurveLanes, OpenLane)}


def build_benchmark(cfg: Mapping[str, Any]) -> Benchmark:
    """The benchmark of ``cfg.dataset.type`` over ``dataset.data_root``, with the config's crop,
    (for fixed-size benchmarks) ``ori_img_h x ori_img_w`` and ``dataset.on_bad_label``."""
    dataset = cfg["dataset"]
    cls = BENCHMARKS.get(dataset["type"])
    if cls is None:
        raise ConfigError(f"dataset.type must be one of {', '.join(BENCHMARKS)}, got {dataset['type']!r}")
    size = (int(cfg["ori_img_h"]), int(cfg["ori_img_w"])) if cls.fixed_size else None
    on_bad_label = dataset.get("on_bad_label", "error")
    check_choice("dataset.on_bad_label", on_bad_label, ON_BAD_LABEL)
    options = {key: dataset[key] for key in cls.options if key in dataset}
    return cls(dataset["data_root"], build_crop(cfg), size, dataset.get("cache_dir"), on_bad_label=on_bad_label,
               **options)


__all__ = ["BENCHMARKS", "Benchmark", "CULane", "CurveLanes", "Evaluator", "OpenLane", "TuSimple", "build_benchmark"]
