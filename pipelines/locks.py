"""One writer per company at a time: a cycle, a retry and a person's action on the same realm take turns."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

__all__ = ["RealmBusyError", "realm_lock"]

_locks: dict[str, threading.RLock] = {}
_guard = threading.Lock()


class RealmBusyError(Exception):
    """Another step holds the company's lock longer than the caller will wait."""


class _Shared(Protocol):
    def advisory_lock(
        self, name: str, *, wait: float | None = ..., busy: Any = ...
    ) -> AbstractContextManager[None]: ...


def _busy(realm_id: str) -> RealmBusyError:
    return RealmBusyError(f"company {realm_id} is busy with a sync cycle or another action; try again in a minute")


def _lock_for(realm_id: str) -> threading.RLock:
    with _guard:
        return _locks.setdefault(realm_id, threading.RLock())


@contextmanager
def realm_lock(realm_id: str, *, wait: float | None = None, store: _Shared | None = None) -> Iterator[None]:
    """Hold the realm's lock (re-entrant in a thread); with `wait`, give up after that many seconds.

    With the store, the lock holds across processes too: in fleet mode a PostgreSQL advisory lock per realm, so a
    worker's cycle and a person's retry from any app server take turns on one company.

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
                raise _busy(realm_id)
            time.sleep(0.05)
    try:
        shared = store.advisory_lock(f"realm:{realm_id}", wait=wait, busy=lambda: _busy(realm_id)) if store else None
        with shared or nullcontext():
            yield
    finally:
        lock.release()
