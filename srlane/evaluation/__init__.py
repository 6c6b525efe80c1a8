"""Lane metrics that reproduce the official tools: CULane F1, TuSimple LaneEval, CurveLanes F1."""
from srlane.evaluation.culane import (CULaneEvaluator, MF1_THRESHOLDS, evaluate_culane_files, read_lines_file)
from srlane.evaluation.tusimple import evaluate_tusimple_files, tusimple_metric
from srlane.evaluation.curvelanes import (CurveLanesEvaluator, CurveLanesFormatError, curvelanes_metrics,
                                          evaluate_curvelanes_files, image_size, read_lines_json, score_image)

__all__ = ["CULaneEvaluator", "MF1_THRESHOLDS", "evaluate_culane_files", "read_lines_file",
           "evaluate_tusimple_files", "tusimple_metric", "CurveLanesEvaluator", "CurveLanesFormatError",
           "curvelanes_metrics", "evaluate_curvelanes_files", "image_size", "read_lines_json", "score_image"]
