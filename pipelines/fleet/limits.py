"""QuickBooks' per-realm limits held across every process of the fleet (500 requests a minute, 10 in flight, 40
batches a minute, and QuickBooks' own ask to wait), in one small PostgreSQL table.

Each call takes a slot: under the realm's transaction-scoped advisory lock, the slots that ended within the window and
those still in flight are counted, and a new one is written only when every limit allows it; otherwise the caller sleeps
until the oldest slot leaves the window. A slot is closed when its call ends; a slot left open by a killed process
stops counting as in flight after `STALE_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg

from pipelines.postgres import connect, lock_key
from qbo.limiter import HeldTooLongError

__all__ = ["LIMITS_DDL", "SharedRateLimiter", "STALE_SECONDS"]

STALE_SECONDS = 300.0
LIMITS_DDL = """
CREATE TABLE IF NOT EXISTS qbo_call_slots (
  slot_id BIGSERIAL PRIMARY KEY,
  realm_id TEXT NOT NULL,
  batch BOOLEAN NOT NULL,
  started_at DOUBLE PRECISION NOT NULL,   -- seconds on the clients' clock (QuickBooks' windows are on it)
  finished_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS qbo_call_slots_realm ON qbo_call_slots (realm_id, started_at);
CREATE TABLE IF NOT EXISTS qbo_call_holds (realm_id TEXT PRIMARY KEY, held_until DOUBLE PRECISION NOT NULL);
"""
_ready: set[str] = set()
_ready_guard = threading.Lock()
_local = threading.local()


def _connection(url: str) -> psycopg.Connection:
    cons = getattr(_local, "cons", None)
    if cons is None:
        cons = _local.cons = {}
    con = cons.get(url)
    if con is None or con.closed:
        con = cons[url] = connect(url)
        with _ready_guard:
            if url not in _ready:
                with con.transaction():
                    con.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key("qbo_call_slots")])
                    con.execute(LIMITS_DDL)
                _ready.add(url)
    return con


class SharedRateLimiter:
    """The RateLimiter's interface (slot, hold) for one realm, with its counts in the fleet's PostgreSQL store."""

    def __init__(
        self,
        url: str,
        realm_id: str,
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
        self._url, self._realm = url, realm_id
        self._clock, self._sleep = clock, sleep
        self._in_flight, self._per_minute, self._batch_per_minute = max_in_flight, per_minute, batch_per_minute
        self._window = window_seconds + margin_seconds  # as the in-process limiter: QBO stamps a little later
        self._max_wait = max_wait_seconds
        self._key = lock_key(f"qbo-limits:{realm_id}")

    def _now(self) -> float:
        return self._clock().timestamp()

    @contextmanager
    def slot(self, *, batch: bool = False) -> Iterator[None]:
        slot_id = self._take(batch)
        try:
            yield
        finally:
            _connection(self._url).execute(
                "UPDATE qbo_call_slots SET finished_at = %s WHERE slot_id = %s", [self._now(), slot_id]
            )

    def hold(self, seconds: float) -> None:
        """QuickBooks said slow down: no process sends anything for this realm for `seconds`."""
        _connection(self._url).execute(
            """INSERT INTO qbo_call_holds VALUES (%s, %s) ON CONFLICT (realm_id)
               DO UPDATE SET held_until = greatest(qbo_call_holds.held_until, excluded.held_until)""",
            [self._realm, self._now() + seconds],
        )

    def _take(self, batch: bool) -> int:
        con = _connection(self._url)
        while True:
            now = self._now()
            with con.transaction():
                con.execute("SELECT pg_advisory_xact_lock(%s)", [self._key])
                since = now - self._window
                # A call counts in the window until its window has passed since it *ended*: QuickBooks stamps it
                # somewhere between its start and its end, and under load that can be seconds after the start. A call
                # still in flight counts as ending now; one left open by a killed process stops counting after STALE.
                row = con.execute(
                    """WITH s AS (
                         SELECT batch, finished_at IS NULL AND started_at > %(stale)s AS flying,
                                CASE WHEN finished_at IS NOT NULL THEN finished_at
                                     WHEN started_at > %(stale)s THEN %(now)s ELSE started_at END AS ended
                         FROM qbo_call_slots WHERE realm_id = %(realm)s
                           AND (finished_at > %(since)s OR started_at > %(since)s
                                OR (finished_at IS NULL AND started_at > %(stale)s)))
                       SELECT count(*) FILTER (WHERE ended > %(since)s),
                              min(ended) FILTER (WHERE ended > %(since)s),
                              count(*) FILTER (WHERE ended > %(since)s AND batch),
                              min(ended) FILTER (WHERE ended > %(since)s AND batch),
                              count(*) FILTER (WHERE flying),
                              (SELECT held_until FROM qbo_call_holds WHERE realm_id = %(realm)s)
                       FROM s""",
                    {"since": since, "stale": now - STALE_SECONDS, "realm": self._realm, "now": now},
                ).fetchone()
                assert row is not None
                started, oldest, batches, oldest_batch, flying, held = row
                waits = [(held or 0.0) - now]
                if started >= self._per_minute:
                    waits.append(max(oldest + self._window - now, 0.05))
                if batch and batches >= self._batch_per_minute:
                    waits.append(max(oldest_batch + self._window - now, 0.05))
                if flying >= self._in_flight:
                    waits.append(0.05)
                wait = max(waits)
                if wait <= 0:
                    if int(now) % 60 == 0:  # now and then, forget what no window needs any more
                        con.execute(
                            "DELETE FROM qbo_call_slots WHERE realm_id = %s AND finished_at < %s",
                            [self._realm, now - 2 * self._window],
                        )
                    found = con.execute(
                        "INSERT INTO qbo_call_slots (realm_id, batch, started_at) VALUES (%s, %s, %s) "
                        "RETURNING slot_id",
                        [self._realm, batch, now],
                    ).fetchone()
                    assert found is not None
                    return int(found[0])
            if wait > self._max_wait:
                raise HeldTooLongError(wait)
            self._sleep(wait)
