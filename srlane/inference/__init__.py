"""The inference layer: trained networks made ready for prediction and the one road from images
to lanes that validation and the tools share.

    predict.py    predict_batches: batches -> readable part -> network -> decoder, per image
    model.py      load_network / load_model (checkpoint -> eval net -> inference options), load_onnx,
                  check_checkpoint_config (the checkpoint's config against this one)
    inputs.py     a command's inputs (images, folders, list files, videos) as records and video paths
    video.py      videos through predict_batches: .lanes.jsonl and the annotated video
    raw.py        raw network outputs on disk (predict.py --save-raw, redecode.py)
    features.py   features read during the forward (embed.py)
    crafted.py    hand-made network outputs with a known number of lanes (timing, tests)
"""
from srlane.inference.predict import FeatureTap, ImagePrediction, predict_batches

__all__ = ["FeatureTap", "ImagePrediction", "predict_batches"]
