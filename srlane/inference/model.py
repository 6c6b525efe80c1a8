"""A trained network made ready for prediction: the checkpoint's own config compared with this
one on every key that changes what the network's outputs mean."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from srlane.config import ConfigError, flatten

# keys whose value changes the meaning of the outputs (input size, rows, proposals, crop) or the
# architecture; a prefix ("model.") covers every key below it
MEANING_KEYS = ("img_w", "img_h", "num_points", "max_lanes", "cut_height", "cut_heights", "model.")
IGNORED_KEYS = ("model.backbone.pretrained",)  # how training started, not what the weights are


def _meaning(cfg: Mapping[str, Any]) -> dict[str, Any]:
    flat = flatten(cfg)
    return {key: value for key, value in flat.items()
            if key not in IGNORED_KEYS and any(key == k or (k.endswith(".") and key.startswith(k))
                                               for k in MEANING_KEYS)}


def check_checkpoint_config(cfg: Mapping[str, Any], saved: Mapping[str, Any] | None, path: str,
                            note: Callable[[str], None]) -> None:
    """ConfigError (one line naming each differing key with both values) unless the config a
    checkpoint was trained with (``saved``) and ``cfg`` agree on ``MEANING_KEYS``. A checkpoint
    without a config (the release's files) passes with one ``note``."""
    if not saved:
        note(f"{path} holds no config (a released checkpoint?): its input size, points and crop are taken "
             "to be this config's")
        return
    ours, theirs = _meaning(cfg), _meaning(saved)
    differ = [key for key in sorted(set(ours) | set(theirs)) if ours.get(key) != theirs.get(key)]
    if differ:
        shown = "; ".join(f"{key} {theirs.get(key, '(unset)')!r} in the checkpoint, {ours.get(key, '(unset)')!r} "
                          "in this config" for key in differ[:4])
        more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
        raise ConfigError(f"{path} was trained with another network geometry: {shown}{more}; "
                          "use the config it was trained with (its run folder's config.py)")
