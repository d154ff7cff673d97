"""QBO's request limits per realm (ref §4), enforced over sandbox time, with counters for tests."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Limits", "RateLimiter"]


@dataclass(frozen=True)
class Limits:
    """The limits of ref §4. Windows are sliding and measured in sandbox seconds, so a time scale
    shrinks them. `per_second` (10/s per realm+app, sandbox since 2025-09-15) is off by default: a
    test that fires requests back to back would trip it without saying anything about the client.
    """

    per_minute: int = 500
    batch_per_minute: int = 40
    max_concurrent: int = 10
    per_second: int | None = None
    window_seconds: float = 60.0


@dataclass
class _RealmCounters:
    recent: deque[float] = field(default_factory=deque)
    recent_batches: deque[float] = field(default_factory=deque)
    last_second: deque[float] = field(default_factory=deque)
    in_flight: int = 0
    requests: int = 0
    batches: int = 0
    throttled: dict[str, int] = field(default_factory=dict)
    max_in_window: int = 0
    max_batches_in_window: int = 0
    max_concurrent: int = 0
    windows: dict[int, int] = field(default_factory=dict)  # fixed window index -> admitted requests


class RateLimiter:
    """Admits or refuses each API request; the caller serialises calls (the engine's lock)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._realms: dict[str, _RealmCounters] = {}
        self.over_limit = 0

    def reset(self) -> None:
        self._realms.clear()
        self.over_limit = 0

    def admit(self, realm: str, now: float, *, batch: bool) -> str | None:
        """None when the request may run (it then counts as in flight), else why it is refused.

        A refused request does not use up any of the window: QBO's behaviour here is not documented,
        and not counting it keeps a client that backs off from being punished twice.
        """
        limits = self.limits
        counters = self._realms.setdefault(realm, _RealmCounters())
        window_start = now - limits.window_seconds
        for recent in (counters.recent, counters.recent_batches):
            while recent and recent[0] <= window_start:
                recent.popleft()
        while counters.last_second and counters.last_second[0] <= now - 1.0:
            counters.last_second.popleft()
        reason = None
        if counters.in_flight >= limits.max_concurrent:
            reason = "concurrent"
        elif len(counters.recent) >= limits.per_minute:
            reason = "per_minute"
        elif batch and len(counters.recent_batches) >= limits.batch_per_minute:
            reason = "batch_per_minute"
        elif limits.per_second is not None and len(counters.last_second) >= limits.per_second:
            reason = "per_second"
        if reason is not None:
            counters.throttled[reason] = counters.throttled.get(reason, 0) + 1
            self.over_limit += 1
            return reason
        counters.recent.append(now)
        counters.last_second.append(now)
        counters.requests += 1
        counters.max_in_window = max(counters.max_in_window, len(counters.recent))
        if batch:
            counters.recent_batches.append(now)
            counters.batches += 1
            counters.max_batches_in_window = max(counters.max_batches_in_window, len(counters.recent_batches))
        index = int(now // limits.window_seconds)
        counters.windows[index] = counters.windows.get(index, 0) + 1
        counters.in_flight += 1
        counters.max_concurrent = max(counters.max_concurrent, counters.in_flight)
        return None

    def release(self, realm: str) -> None:
        counters = self._realms.get(realm)
        if counters is not None and counters.in_flight > 0:
            counters.in_flight -= 1

    def stats(self) -> dict[str, Any]:
        """Counters that prove whether a client stayed within the limits."""
        limits = self.limits
        realms = {}
        for realm, c in self._realms.items():
            recent_windows = sorted(c.windows.items())[-120:]
            realms[realm] = {
                "requests": c.requests,
                "batches": c.batches,
                "in_flight": c.in_flight,
                "max_concurrent": c.max_concurrent,
                "max_in_window": c.max_in_window,
                "max_batches_in_window": c.max_batches_in_window,
                "throttled": dict(c.throttled),
                "windows": [
                    {"start_seconds": index * limits.window_seconds, "requests": count}
                    for index, count in recent_windows
                ],
            }
        return {
            "limits": {
                "per_minute": limits.per_minute,
                "batch_per_minute": limits.batch_per_minute,
                "max_concurrent": limits.max_concurrent,
                "per_second": limits.per_second,
                "window_seconds": limits.window_seconds,
            },
            "realms": realms,
            "max_concurrent": max((c.max_concurrent for c in self._realms.values()), default=0),
            "over_limit": self.over_limit,
        }
