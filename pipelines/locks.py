"""One writer per company at a time: a cycle, a retry and a person's action on the same realm take turns."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["RealmBusyError", "realm_lock"]

_locks: dict[str, threading.RLock] = {}
_guard = threading.Lock()


class RealmBusyError(Exception):
    """Another step holds the company's lock longer than the caller will wait."""


def _lock_for(realm_id: str) -> threading.RLock:
    with _guard:
        return _locks.setdefault(realm_id, threading.RLock())


@contextmanager
def realm_lock(realm_id: str, *, wait: float | None = None) -> Iterator[None]:
    """Hold the realm's lock (re-entrant in a thread); with `wait`, give up after that many seconds.

    Waits in short tries rather than one timed acquire: a timed wait on a lock hands the kernel a monotonic deadline
    that a moved clock (a resumed VM, a test under a shifted date) can push months away.
    """
    lock = _lock_for(realm_id)
    if wait is None:
        lock.acquire()
    else:
        deadline = time.monotonic() + wait
        while not lock.acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise RealmBusyError(
                    f"company {realm_id} is busy with a sync cycle or another action; try again in a minute"
                )
            time.sleep(0.05)
    try:
        yield
    finally:
        lock.release()
