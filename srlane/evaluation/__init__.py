"""Lane metrics that reproduce the official tools: CULane F1, TuSimple LaneEval, CurveLanes F1.

Pure functions over lanes given as arrays; reading and writing the benchmarks' files is
``srlane.benchmarks``'.
"""
from srlane.evaluation.culane import CULaneEvaluator, MF1_THRESHOLDS
from srlane.evaluation.tusimple import tusimple_metric
from srlane.evaluation.curvelanes import CurveLanesEvaluator, curvelanes_metrics, score_image

__all__ = ["CULaneEvaluator", "MF1_THRESHOLDS", "tusimple_metric", "CurveLanesEvaluator", "curvelanes_metrics",
           "score_image"]
