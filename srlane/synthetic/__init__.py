"""The synthetic road set (the embedded default data set): procedural scenes (``scene``), drawn
into images (``render``) and written in the CULane, TuSimple, CurveLanes or OpenLane layout
(``export``) so that the real readers, training and metrics run on it unchanged. Every lane says
its OpenLane category (``SceneLabel.categories``)."""
from srlane.synthetic.export import generate, is_complete, preparation
from srlane.synthetic.render import render
from srlane.synthetic.scene import LAYOUTS, SceneLabel

__all__ = ["LAYOUTS", "SceneLabel", "generate", "is_complete", "preparation", "render"]
