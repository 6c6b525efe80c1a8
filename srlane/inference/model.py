"""A trained network made ready for prediction: built without any ImageNet weights, given the
checkpoint's weights (its moving average when it has one) after the checkpoint's own config has
been compared with this one on every key that changes what the network's outputs mean, then run
as the inference options say.

    load_network(cfg, path, device, note)          the eval-mode network (export, speed)
    load_model(cfg, path, options, device, note)   that network prepared by the options (predict, embed)
    checked_inference_weights(cfg, path, note)     the weights alone, after the same check (validation)
    load_onnx(cfg, path, decoder=None)             an exported file in place of a checkpoint (a file
                                                   with the decoder: run with that decoder's thresholds)
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from srlane.config import ConfigError, flatten
from srlane.models import build_net
from srlane.models.decode import LaneDecoder, build_decoder
from srlane.models.inference import InferenceOptions, prepare_for_inference
from srlane.models.weights import CheckpointError, inference_weights, load_checkpoint, load_net_weights

Note = Callable[[str], None]

# keys whose value changes the meaning of the outputs (input size, rows, proposals, crop) or the
# architecture; a prefix ("model.") covers every key below it
MEANING_KEYS = ("img_w", "img_h", "num_points", "max_lanes", "cut_height", "cut_heights", "model.")
IGNORED_KEYS = ("model.backbone.pretrained",)  # how training started, not what the weights are
# what a config that lacks a key means by it (a checkpoint saved before the key existed)
ABSENT_MEANS = {"model.num_lane_categories": 0}


def _meaning(cfg: Mapping[str, Any]) -> dict[str, Any]:
    flat = {**ABSENT_MEANS, **flatten(cfg)}
    return {key: value for key, value in flat.items()
            if key not in IGNORED_KEYS and any(key == k or (k.endswith(".") and key.startswith(k))
                                               for k in MEANING_KEYS)}


def check_checkpoint_config(cfg: Mapping[str, Any], saved: Mapping[str, Any] | None, path: str,
                            note: Note) -> None:
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


def checked_inference_weights(cfg: Mapping[str, Any], path: str, note: Note = print) -> dict[str, torch.Tensor]:
    """The weights to predict with from the checkpoint ``path`` (``inference_weights``: the moving
    average when there is one), after ``check_checkpoint_config`` of its config against ``cfg``."""
    state = load_checkpoint(path)
    check_checkpoint_config(cfg, state.get("config"), path, note)
    return inference_weights(state)


def load_network(cfg: Mapping[str, Any], path: str, device: torch.device | str, note: Note = print) -> nn.Module:
    """The network of ``cfg`` (no ImageNet weights looked for) with the checkpoint's weights,
    loaded strictly, in eval mode on ``device``: ConfigError or CheckpointError (one line) for a
    checkpoint of another geometry or architecture."""
    net = build_net(cfg, pretrained=False)
    load_net_weights(net, checked_inference_weights(cfg, path, note), path)
    return net.to(device).eval()


def load_model(cfg: Mapping[str, Any], path: str, options: InferenceOptions, device: torch.device | str,
               note: Note = print) -> nn.Module:
    """``load_network`` run as ``options`` say (``prepare_for_inference``): ``model(img)`` ->
    float32 predictions (B, N, 4 + num_points)."""
    return prepare_for_inference(load_network(cfg, path, device, note), options, device)


def load_onnx(cfg: Mapping[str, Any], path: str, threads: int | None = None,
              providers: Sequence[str] | None = None, decoder: LaneDecoder | None = None
              ) -> Callable[[torch.Tensor], Any]:
    """``srlane.models.export.OnnxModel`` of ``path`` (imported here: onnxruntime is optional);
    CheckpointError (one line) when it cannot be loaded, ConfigError when it takes another input
    size than the config's ``img_w x img_h``. A file with the decoder in its graph (``tools/export.py
    --with-decoder``) returns the final lanes and runs with ``decoder``'s thresholds (default:
    ``build_decoder(cfg)``'s); its lanes per image and points must be the decoder's (ConfigError
    otherwise)."""
    try:
        from srlane.models.export import OnnxModel
    except ImportError as err:
        raise CheckpointError(f"--onnx needs srlane.models.export and onnxruntime ({err})") from None
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such ONNX file")
    try:
        model = OnnxModel(path, threads=threads, providers=providers)
    except (ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(first if path in first else f"cannot load ONNX model {path}: {first}") from None
    try:
        model.check_input_size(int(cfg["img_h"]), int(cfg["img_w"]))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if model.decoder is not None:
        decoder = decoder or build_decoder(cfg)
        ours = {"top_k": decoder.top_k, "num_points": decoder.n_strips + 1}
        differ = [f"{key} {model.decoder[key]!r} in the file, {value!r} here" for key, value in ours.items()
                  if model.decoder[key] != value]
        if differ:
            raise ConfigError(f"ONNX model {path} decodes with another geometry: {'; '.join(differ)}; "
                              "export it again from this config")
        model.use_thresholds(decoder.conf_threshold, decoder.nms_thres)
    return model
