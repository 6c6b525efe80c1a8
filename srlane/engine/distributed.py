"""What the processes of a run agree on: a flag raised on any rank, the cause of a stop, a
failure of one of them, the validation predictions gathered by image index. One process: no communication at all."""
from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from lightning.fabric import Fabric

NO_STOP, REQUESTED, SIGNALLED = 0, 1, 2  # stop causes, a signal winning over a request
ANOTHER_PROCESS = "stop requested on another process"


def any_rank(fabric: Fabric, flag: bool | torch.Tensor) -> bool:
    """``flag`` (a bool or a 0-dim tensor on the device) true on some process: one host read."""
    if fabric.world_size == 1:
        return bool(flag)
    value = torch.as_tensor(flag, dtype=torch.float32, device=fabric.device)
    return bool(fabric.all_reduce(value, reduce_op="sum") > 0)


def agreed_stop(fabric: Fabric, stop_signal: int | None, reason: str | None) -> tuple[int | None, str | None]:
    """The stop every rank takes, from this rank's signal and stop request: a signal on any rank
    (SIGTERM where this rank saw none), else a request on any rank (``ANOTHER_PROCESS`` where
    this rank made none), else none. One all-reduce under several processes."""
    cause = SIGNALLED if stop_signal is not None else REQUESTED if reason is not None else NO_STOP
    if fabric.world_size > 1:
        cause = int(fabric.all_reduce(torch.tensor(cause, dtype=torch.float32, device=fabric.device), reduce_op="max"))
    if cause == SIGNALLED and stop_signal is None:
        stop_signal = signal.SIGTERM
    if cause == REQUESTED and reason is None:
        reason = ANOTHER_PROCESS
    return stop_signal, reason


class RankFailure(RuntimeError):
    """Another process of the run failed: this one stops with that process's line."""


def shared_failure(fabric: Fabric, error: BaseException | None) -> None:
    """Every process learns whether one of them failed (``error``: this process's exception, or
    None): the failing one raises its own error, the others ``RankFailure`` naming it, so that no
    process waits in the next collective until its timeout. One all-gather under several
    processes."""
    texts: list[str | None] = [None] * fabric.world_size
    if fabric.world_size > 1:
        dist.all_gather_object(texts, None if error is None else str(error) or type(error).__name__)
    if error is not None:
        raise error
    failed = next(((rank, text) for rank, text in enumerate(texts) if text is not None), None)
    if failed is not None:
        raise RankFailure(f"process {failed[0]} failed: {failed[1]}")


@contextlib.contextmanager
def failures_shared(fabric: Fabric) -> Iterator[None]:
    """A block every process runs: an exception in it on any process stops them all
    (:func:`shared_failure`), each with one line."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 (shared, then raised again)
        shared_failure(fabric, err)
    else:
        shared_failure(fabric, None)


def gather_by_index(fabric: Fabric, parts: dict[int, Any]) -> dict[int, Any] | None:
    """Every rank's ``{index: value}`` merged on rank 0; None on the other ranks."""
    if fabric.world_size == 1:
        return parts
    gathered: list[dict[int, Any] | None] = [None] * fabric.world_size
    dist.all_gather_object(gathered, parts)
    return {index: value for part in gathered for index, value in part.items()} if fabric.is_global_zero else None
