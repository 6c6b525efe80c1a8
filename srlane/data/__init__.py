"""Lane data: dataset readers, annotation cache, augmentation, targets and the dataset/loader.

Public entry points: ``load_culane``, ``load_tusimple`` (-> ``LaneRecord`` lists),
``LaneAugmenter``, ``encode_lanes`` / ``LaneTargetEncoder``, ``LaneDataset``, ``collate`` and
``build_dataloader``.
"""
from srlane.data.records import DataFormatError, LaneRecord
from srlane.data.culane import load_culane
from srlane.data.tusimple import load_tusimple
from srlane.data.transforms import LaneAugmenter, build_augmenter
from srlane.data.targets import LaneTargetEncoder, encode_lanes
from srlane.data.dataset import LaneDataset, build_dataloader, collate

__all__ = [
    "DataFormatError", "LaneRecord", "load_culane", "load_tusimple", "LaneAugmenter", "build_augmenter",
    "LaneTargetEncoder", "encode_lanes", "LaneDataset", "build_dataloader", "collate",
]
