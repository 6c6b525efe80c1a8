"""Reading trained weights: a checkpoint file loaded with ``weights_only=True``, the weights to
predict with (the moving average when there is one), loaded strictly with one line for a mismatch.

A checkpoint is a dict holding at least ``"net"`` (the network's state dict without any
``module.`` prefix, as the release stores it); ``srlane.engine.checkpoint`` writes them.
"""
from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the network."""


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint with ``weights_only=True``; a bad file raises one ``CheckpointError``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path}: not a readable torch checkpoint ({reason})") from None
    if not isinstance(state, dict) or not isinstance(state.get("net"), Mapping):
        raise CheckpointError(f"checkpoint {path}: expected a dict with a 'net' state dict")
    state["net"] = strip_module_prefix(state["net"])
    return state


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix DataParallel/DDP put in front of every key."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def ema_weights(state: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
    """The moving average of a checkpoint: ``ema`` at the top level, or ``hooks.ema.ema`` where
    checkpoints written before the Runner owned the average keep it; None without one."""
    if state.get("ema") is not None:
        return state["ema"]
    return state.get("hooks", {}).get("ema", {}).get("ema")


def inference_weights(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights to evaluate or predict with: the moving average (``ema_weights``) when the
    checkpoint has one, else ``net``; without any ``module.`` prefix."""
    ema = ema_weights(state)
    return strip_module_prefix(ema if ema is not None else state["net"])


def load_net_weights(net: nn.Module, state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Load weights strictly; a mismatch raises one ``CheckpointError`` listing what differs."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs network {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(own[k].shape)
    )
    problems = [
        f"{title} ({len(items)}): {', '.join(items[:8])}{', ...' if len(items) > 8 else ''}"
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
        if items
    ]
    if problems:
        raise CheckpointError(
            f"checkpoint {os.fspath(path)} does not fit this network (wrong architecture or config?): "
            + "; ".join(problems)
        )
    net.load_state_dict(state_dict, strict=True)
