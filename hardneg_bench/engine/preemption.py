"""SIGTERM (preemption: Slurm, Kubernetes, ``docker stop``) and Ctrl-C while pretraining: the step
in progress finishes, a checkpoint of that exact point is saved, and the run stops cleanly;
running the same command again continues from there."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator


class Interrupted(RuntimeError):
    """The run stopped on a signal after saving a checkpoint."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


@contextmanager
def stop_requests() -> Iterator[Callable[[], int | None]]:
    """Yields a function returning the first SIGTERM or SIGINT received since entering (None
    before any); the previous handlers are restored on exit. Outside the main thread, where
    Python cannot install handlers, no signal is caught."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    received: list[int] = []

    def handler(signum, frame) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: received[0] if received else None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
