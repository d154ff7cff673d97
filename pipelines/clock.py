"""The one place the wall clock is read: everything else is handed `now`, or a Clock to ask."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "elapsed_from", "system_clock"]

# A clock is any callable that answers the current moment, timezone-aware (UTC). The engine, the CLI, the server,
# the scheduler and the webhooks take one, so tests and replays decide what "now" is.
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def elapsed_from(start: datetime, perf_start: float) -> datetime:
    """`start` moved on by the real time elapsed since `perf_start` (a time.perf_counter() reading).

    A step that began at an injected `now` finishes on the same clock, never on the wall clock.
    """
    return start + timedelta(seconds=time.perf_counter() - perf_start)
