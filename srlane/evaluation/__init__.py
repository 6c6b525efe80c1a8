"""Lane metrics that reproduce the official tools: CULane F1 and TuSimple LaneEval."""
from srlane.evaluation.culane import (CULaneEvaluator, MF1_THRESHOLDS, evaluate_culane_files, read_lines_file)
from srlane.evaluation.tusimple import evaluate_tusimple_files, tusimple_metric

__all__ = ["CULaneEvaluator", "MF1_THRESHOLDS", "evaluate_culane_files", "read_lines_file",
           "evaluate_tusimple_files", "tusimple_metric"]
