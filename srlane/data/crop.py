"""The rows dropped from the top of an image (sky) before it is resized to the network's input."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Crop:
    """``rows`` from every image, or ``by_size["WxH"]`` from an image of that size (CurveLanes
    keeps the bottom 800 of 1440, 480 of 660 and 352 of 720 rows)."""

    rows: int
    by_size: Mapping[str, int] = field(default_factory=dict)

    def __call__(self, height: int, width: int) -> int:
        """Rows to drop from an image of ``height`` x ``width``."""
        return int(self.by_size.get(f"{width}x{height}", self.rows))


def build_crop(cfg: Mapping[str, Any]) -> Crop:
    """``cut_height`` and the per-size ``cut_heights`` ({"WxH": rows}) of a config."""
    return Crop(int(cfg["cut_height"]), {str(k): int(v) for k, v in (cfg.get("cut_heights") or {}).items()})
