"""Sandbox time: a clock that runs K times faster than real time and that tests can move forward."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

__all__ = [
    "COMPANY_TZ",
    "SandboxClock",
    "format_cloudevent_time",
    "format_meta_time",
    "format_qbo_time",
    "format_webhook_time",
    "parse_qbo_time",
]

# QBO stamps times in the company's zone (the samples in ref §3 and §5 end in -07:00). One fixed US Pacific
# offset keeps the output stable; no daylight-saving switch happens inside a test.
COMPANY_TZ = timezone(timedelta(hours=-7))


class SandboxClock:
    """Sandbox time = start + real elapsed time x `time_scale` + whatever `advance()` added.

    Token lifetimes, rate-limit windows and the CDC look-back all read this clock, so `--time-scale 60`
    turns QBO's one-minute windows into one real second.
    """

    def __init__(
        self,
        time_scale: float = 1.0,
        start: datetime | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not time_scale > 0:
            raise ValueError(f"time scale must be positive, not {time_scale!r}")
        self.time_scale = float(time_scale)
        start = start or datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("the clock's start must carry a time zone")
        self._start = start.astimezone(UTC)
        self._monotonic = monotonic
        self._mono0 = monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def seconds(self) -> float:
        """Sandbox seconds elapsed since the clock started (the time base of the rate-limit windows)."""
        with self._lock:
            return (self._monotonic() - self._mono0) * self.time_scale + self._offset

    def now(self) -> datetime:
        """The current sandbox time, in the company's time zone."""
        return (self._start + timedelta(seconds=self.seconds())).astimezone(COMPANY_TZ)

    def today(self) -> date:
        """The company's current date (the default TxnDate)."""
        return self.now().date()

    def advance(self, seconds: float) -> datetime:
        """Jump forward; the clock never goes back, because tokens and windows assume it does not."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += float(seconds)
        return self.now()

    def real_seconds(self, sandbox_seconds: float) -> float:
        """How long `sandbox_seconds` take in real time at this scale."""
        return sandbox_seconds / self.time_scale


def format_qbo_time(moment: datetime) -> str:
    """The `time` of envelopes and faults: `2015-07-24T10:44:52.998-07:00` (ref §3, §5)."""
    local = moment.astimezone(COMPANY_TZ)
    return local.isoformat(timespec="milliseconds")


def format_meta_time(moment: datetime) -> str:
    """MetaData times: `2014-09-19T13:16:17-07:00`, whole seconds (ref §5)."""
    return moment.astimezone(COMPANY_TZ).isoformat(timespec="seconds")


def format_webhook_time(moment: datetime) -> str:
    """The legacy webhook `lastUpdated`: `2015-10-05T14:42:19-0700`, no colon in the offset (ref §9)."""
    return moment.astimezone(COMPANY_TZ).strftime("%Y-%m-%dT%H:%M:%S%z")


def format_cloudevent_time(moment: datetime) -> str:
    """The CloudEvents `time`: UTC with a `Z` (ref §9)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_qbo_time(text: str) -> datetime:
    """Parse an ISO date or date-time; a value without an offset is read in the company's zone."""
    value = text.strip()
    if value.endswith(("z", "Z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=COMPANY_TZ)
    return parsed
