"""Kill points for the fault-injection tests.

``HARDNEG_BENCH_KILL_AT=<point>:<n>`` makes the process kill itself with SIGKILL (no cleanup, as a
preempted or OOM-killed job dies) the n-th time it reaches ``failpoint(<point>)``;
``<point>:<n>:SIGTERM`` (or ``SIGINT``) sends that signal instead, as a scheduler or Ctrl-C would. The points:
``step`` (after an optimizer step), ``write`` (halfway through writing any file of the store) and
``ledger`` (halfway through appending a ledger line). Unset, a failpoint costs one comparison.
"""

from __future__ import annotations

import os
import signal

_armed = {"point": "", "count": 0, "seen": 0, "signal": signal.SIGKILL}


def arm(target: str) -> None:
    """Signal at ``<point>:<n>[:<SIGNAL>]`` (an empty string disarms)."""
    point, _, rest = target.partition(":")
    count, _, name = rest.partition(":")
    _armed.update(point=point, count=int(count or 0), seen=0, signal=signal.Signals[name or "SIGKILL"])


def failpoint(point: str) -> None:
    if point != _armed["point"]:
        return
    _armed["seen"] += 1
    if _armed["seen"] == _armed["count"]:
        os.kill(os.getpid(), _armed["signal"])


arm(os.environ.get("HARDNEG_BENCH_KILL_AT", ""))
