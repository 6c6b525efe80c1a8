"""SIGINT and SIGTERM during training: told to the loop instead of ending the process, so the
current step finishes and last.pth is written; a second signal meets the previous handler."""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals_to(note: Callable[[int], None]) -> Iterator[None]:
    """Within the block, the first SIGINT/SIGTERM calls ``note(signal number)`` and puts the
    previous handlers back; they are back after the block in any case. Off the main thread
    (where Python cannot set handlers) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    def handler(signum: int, frame: Any) -> None:
        note(signum)
        restore()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        restore()
