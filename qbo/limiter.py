"""Client-side QBO rate limits per realm (ref §4), and QBO's own ask to wait (Retry-After)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx

__all__ = ["THROTTLE_DEFAULT_WAIT", "HeldTooLongError", "Limiter", "RateLimiter", "retry_after"]

THROTTLE_DEFAULT_WAIT = 60.0  # no Retry-After: wait a minute (ref §4, D-lim)


# Rate limits (ref §4): 10 in flight, 500 per minute, 40 batch per minute, per realm
class HeldTooLongError(Exception):
    """The wait for a slot would be longer than the limiter may hold a caller; `seconds` says how long."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class Limiter(Protocol):
    """What the client needs of a limiter: this process's RateLimiter, or fleet mode's shared one."""

    def slot(self, *, batch: bool = False) -> AbstractContextManager[None]: ...

    def hold(self, seconds: float) -> None: ...


class RateLimiter:
    """Client-side limits for one realm; share one instance between every client of that realm."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None] = time.sleep,
        max_in_flight: int = 10,
        per_minute: int = 500,
        batch_per_minute: int = 40,
        window_seconds: float = 60.0,
        max_wait_seconds: float = 600.0,
        margin_seconds: float = 1.0,
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._per_minute, self._batch_per_minute = per_minute, batch_per_minute
        # QBO counts a request when it arrives, a little after we stamp it and not always equally late; a window
        # that ends exactly where QBO's does gets the next request refused (then every call waits 60 s). A window
        # a margin longer costs under 2% of the rate.
        self._window = window_seconds + margin_seconds
        self._max_wait = max_wait_seconds
        self._starts: deque[float] = deque()
        self._batch_starts: deque[float] = deque()
        self._held_until = 0.0

    def _now(self) -> float:
        return self._clock().timestamp()

    @contextmanager
    def slot(self, *, batch: bool = False) -> Iterator[None]:
        """Hold one of the in-flight slots, after waiting for the per-minute windows and any hold."""
        with self._slots:
            self._wait_turn(batch)
            yield

    def hold(self, seconds: float) -> None:
        """QBO said slow down: nobody on this realm sends anything for `seconds` (never hammer)."""
        with self._lock:
            self._held_until = max(self._held_until, self._now() + seconds)

    def _wait_turn(self, batch: bool) -> None:
        while True:
            with self._lock:
                now = self._now()
                wait = self._wait_needed(now, batch)
                if wait <= 0:
                    self._starts.append(now)
                    if batch:
                        self._batch_starts.append(now)
                    return
            if wait > self._max_wait:
                raise HeldTooLongError(wait)
            self._sleep(wait)

    def _wait_needed(self, now: float, batch: bool) -> float:
        for starts in (self._starts, self._batch_starts):
            while starts and starts[0] <= now - self._window:
                starts.popleft()
        waits = [self._held_until - now]
        if len(self._starts) >= self._per_minute:
            waits.append(self._starts[0] + self._window - now)
        if batch and len(self._batch_starts) >= self._batch_per_minute:
            waits.append(self._batch_starts[0] + self._window - now)
        return max(waits)


def retry_after(headers: httpx.Headers, now: datetime) -> float | None:
    value = headers.get("Retry-After")  # not confirmed for QBO (ref §4); honoured when present
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # '²'.isdigit() is True, and float('²') fails
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None
