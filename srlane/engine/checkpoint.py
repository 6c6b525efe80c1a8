"""Checkpoints: atomic writes, ``weights_only`` loads, RNG state, release compatibility.

A checkpoint is a dict holding at least ``"net"`` (the network's state dict without any
``module.`` prefix, as the release stores it). Training checkpoints add the optimizer,
scheduler, grad scaler, step, epoch, best metric, RNG states and the config; every entry is made
of tensors, numbers, strings, lists and dicts so ``torch.load(weights_only=True)`` reads it.
"""
from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from srlane.fileio import atomic_path


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the network."""


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` into a temp file next to ``path``, then ``os.replace`` it into place."""
    with atomic_path(path) as tmp:
        torch.save(dict(state), tmp)


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


def resolve_checkpoint(spec: str | os.PathLike, default: str, option: str = "checkpoint") -> str:
    """The checkpoint file ``spec`` names: a file; a run folder (its ``default``, e.g. ``best.pth``
    or ``last.pth``); or a checkpoint of a run folder without ``.pth`` (``RUN/last``,
    ``RUN/iter_1000``). A name that is not there raises one ``CheckpointError`` listing the
    checkpoints the folder holds. ``option`` (e.g. ``--resume``) starts the message."""
    spec = os.fspath(spec)
    if os.path.isfile(spec):
        return spec
    if os.path.isdir(spec):
        folder, candidates = spec, [os.path.join(spec, default)]
    else:
        folder = os.path.dirname(spec) or "."
        candidates = [spec] if spec.endswith(".pth") else [spec + ".pth"]
    found = next((path for path in candidates if os.path.isfile(path)), None)
    if found is not None:
        return found
    if not os.path.isdir(folder):
        raise CheckpointError(f"{option} {spec}: no such file or folder")
    held = checkpoint_names(folder)
    holds = f"it holds {', '.join(held)}" if held else "it holds no .pth file"
    wanted = os.path.basename(candidates[0])
    raise CheckpointError(f"{option} {spec}: no {wanted} in {folder}; {holds}")


def checkpoint_names(folder: str | os.PathLike) -> list[str]:
    """The ``.pth`` files of ``folder``: best, last, then iter_<step> by step, then the others."""
    def order(name: str) -> tuple:
        step = re.fullmatch(r"iter_(\d+)\.pth", name)
        return ({"best.pth": 0, "last.pth": 1}.get(name, 2 if step else 3), int(step.group(1)) if step else 0, name)

    return sorted((name for name in os.listdir(folder) if name.endswith(".pth")), key=order)


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


def rng_state() -> dict:
    """The torch (CPU and CUDA), numpy and python RNG states as tensors and plain values."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
