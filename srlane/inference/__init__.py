"""Prediction: the one road from images to lanes that validation, tools/predict.py, embed.py,
speed.py and the throughput tools share (``predict_batches``)."""
from srlane.inference.predict import ImagePrediction, predict_batches

__all__ = ["ImagePrediction", "predict_batches"]
