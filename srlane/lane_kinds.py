"""What kind of line a lane is: OpenLane's 2D lane categories, the one table every part reads.

OpenLane labels each lane with one of these ids (0: unknown). A lane's kind travels with it:
``LaneRecord.lane_categories`` for labels, ``Lane.category`` (and ``Lane.category_score``) for
predictions. The colour and pattern of each id decide how a picture draws it
(``srlane.visualize``).
"""
from __future__ import annotations

from typing import NamedTuple

UNKNOWN = 0


class LaneKind(NamedTuple):
    """One OpenLane category: its name, paint colour and the pattern of its left and right lines."""

    name: str
    colour: str  # "white", "yellow" or "curb" (a road edge, no paint)
    pattern: str  # "solid", "dashed", "double-solid", "double-dashed", "left-dashed", "left-solid", "curb"


LANE_KINDS: dict[int, LaneKind] = {
    0: LaneKind("unknown", "white", "solid"),
    1: LaneKind("white-dash", "white", "dashed"),
    2: LaneKind("white-solid", "white", "solid"),
    3: LaneKind("double-white-dash", "white", "double-dashed"),
    4: LaneKind("double-white-solid", "white", "double-solid"),
    5: LaneKind("white-ldash-rsolid", "white", "left-dashed"),
    6: LaneKind("white-lsolid-rdash", "white", "left-solid"),
    7: LaneKind("yellow-dash", "yellow", "dashed"),
    8: LaneKind("yellow-solid", "yellow", "solid"),
    9: LaneKind("double-yellow-dash", "yellow", "double-dashed"),
    10: LaneKind("double-yellow-solid", "yellow", "double-solid"),
    11: LaneKind("yellow-ldash-rsolid", "yellow", "left-dashed"),
    12: LaneKind("yellow-lsolid-rdash", "yellow", "left-solid"),
    20: LaneKind("left-curbside", "curb", "curb"),
    21: LaneKind("right-curbside", "curb", "curb"),
}
CATEGORY_IDS: tuple[int, ...] = tuple(LANE_KINDS)
# the kinds a category head tells apart: head class i is KNOWN_CATEGORIES[i] (a head of K classes
# predicts the first K; 14 is all of OpenLane's)
KNOWN_CATEGORIES: tuple[int, ...] = CATEGORY_IDS[1:]
IGNORE_INDEX = -1  # the class target of a lane whose kind is unknown (or beyond the head's classes)


# a horizontal flip swaps the two sides of a line: left-dashed/right-solid becomes
# left-solid/right-dashed and a left curb a right one; every other kind stays itself
MIRRORED_CATEGORIES: dict[int, int] = {5: 6, 6: 5, 11: 12, 12: 11, 20: 21, 21: 20}


def mirrored_category(category: int) -> int:
    """The category of a lane after a horizontal flip of its image (``MIRRORED_CATEGORIES``)."""
    return MIRRORED_CATEGORIES.get(category, category)


def head_class(category: int, num_classes: int) -> int:
    """The head class of a category id, IGNORE_INDEX for unknown kinds and kinds the head lacks."""
    index = KNOWN_CATEGORIES.index(category) if category in KNOWN_CATEGORIES else IGNORE_INDEX
    return index if index < num_classes else IGNORE_INDEX


def check_category(value: object) -> int | None:
    """``value`` as a category id, or None when it is not one of OpenLane's (``LANE_KINDS``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in LANE_KINDS:
        return None
    return value


def category_name(category: int) -> str:
    """The OpenLane name of a category id (``"white-dash"``)."""
    return LANE_KINDS[category].name


LEFT_CURB, RIGHT_CURB = 20, 21  # the road edges left and right of the lanes
# how a synthetic scene names the pattern of a painted line (``srlane.synthetic``): "double" is two
# solid lines; the others are LANE_KINDS' patterns
_PAINT_PATTERNS = {"solid": "solid", "dashed": "dashed", "double": "double-solid", "double-dashed": "double-dashed",
                   "left-dashed": "left-dashed", "left-solid": "left-solid"}


def category_of_paint(yellow: bool, style: str) -> int:
    """The category of a painted line: white or yellow, ``solid``, ``dashed``, ``double`` (two
    solid lines), ``double-dashed``, ``left-dashed`` (dashed left, solid right) or ``left-solid``,
    as the synthetic scenes draw them."""
    colour, pattern = "yellow" if yellow else "white", _PAINT_PATTERNS.get(style)
    for category, kind in LANE_KINDS.items():
        if category != UNKNOWN and (kind.colour, kind.pattern) == (colour, pattern):
            return category
    raise ValueError(f"no lane category for a {colour} {style!r} line")
