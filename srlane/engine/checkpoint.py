"""Training checkpoints: atomic writes, which file a path names, RNG state (reading: ``srlane.models.weights``).

A checkpoint is a dict holding at least ``"net"`` (the network's state dict without any
``module.`` prefix, as the release stores it). Training checkpoints add the optimizer,
scheduler, grad scaler, step, epoch, best metric, RNG states and the config; every entry is made
of tensors, numbers, strings, lists and dicts so ``torch.load(weights_only=True)`` reads it.
"""
from __future__ import annotations

import io
import os
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from srlane.fileio import atomic_write_bytes
from srlane.models.weights import CheckpointError

ITER_CHECKPOINT = re.compile(r"iter_(\d+)\.pth")  # iter_<step>.pth


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` into memory, written to a temp file next to ``path`` that ``os.replace``
    moves into place. Serialised first, a full disk fails the plain file write: one
    ``DiskFullError`` line naming ``path`` (torch's own writer reports it as a RuntimeError)."""
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    atomic_write_bytes(path, buffer.getbuffer())


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
        step = ITER_CHECKPOINT.fullmatch(name)
        return ({"best.pth": 0, "last.pth": 1}.get(name, 2 if step else 3), int(step.group(1)) if step else 0, name)

    return sorted((name for name in os.listdir(folder) if name.endswith(".pth")), key=order)


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


def set_rng_state(state: Mapping[str, Any], log: Callable[[str], None]) -> None:
    """Restore what ``rng_state`` returned: the CUDA states of the devices that exist now; ``log``
    gets a note when the saved and the visible GPUs differ in number (resumed on fewer or more
    GPUs: the others keep their seeds)."""
    torch.set_rng_state(state["torch"])
    saved = list(state["cuda"])
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for device, cuda_state in enumerate(saved[:visible]):
        torch.cuda.set_rng_state(cuda_state, device)
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    if saved and len(saved) != visible:
        log(f"the checkpoint holds the random states of {len(saved)} GPU(s), {visible} are visible: restored "
            f"{min(len(saved), visible)}; the run is not resumed bit for bit")
