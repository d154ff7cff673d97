"""An app server's part in fleet mode: no cycles here (the workers run them); a webhook's delivery goes into the shared
inbox (`webhook_events` in the fleet's store) and a pull job is deferred for each company it named, which any worker
runs under the company's lock.

`FleetRelay` stands where the embedded server's Scheduler stands (start, stop, wake, request_cycle, status), so the
routes are the same in both modes.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import procrastinate

from pipelines.clock import Clock, system_clock
from pipelines.config import Settings
from pipelines.fleet.worker import defer_all, defer_pull
from pipelines.serve.webhooks import WebhookDelivery, WebhookInbox, persist_deliveries
from pipelines.store import Store

__all__ = ["FleetRelay"]

log = logging.getLogger(__name__)


class FleetRelay:
    """Saves what the webhook route received and defers the pulls, on a thread, right after the route answered."""

    def __init__(self, store: Store, settings: Settings, inbox: WebhookInbox, *, clock: Clock = system_clock) -> None:
        assert settings.database_url, "fleet mode only"
        self.store, self.settings, self.inbox, self._clock = store, settings, inbox, clock
        self.app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=settings.database_url))
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._cycle_wanted = False
        self.pulls_deferred = 0
        self.last_error: dict[str, Any] | None = None

    # -- the Scheduler's interface ------------------------------------------------------------------------
    def start(self) -> None:
        self.app.open()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="synchealth-fleet-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout or 10)
        self.relay()  # what arrived last is saved and deferred too
        self.app.close()
        return self._thread is None or not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    def wake(self) -> None:
        self._wakeup.set()

    def request_cycle(self) -> None:
        """After a reconnect: every connected company's cycle is queued (those already waiting are not)."""
        self._cycle_wanted = True
        self._wakeup.set()

    def status(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "mode": "fleet",
            "pulls_deferred": self.pulls_deferred,
            "last_cycle": None,  # cycles run on the workers: see fleet_job_log
            "last_error": self.last_error,
            "webhooks": self.inbox.snapshot(),
        }

    # -- the work ----------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.wait(5.0)
            self._wakeup.clear()
            try:
                self.relay()
            except Exception as err:  # kept in memory (the counters) and tried again on the next wake
                log.exception("saving webhook deliveries or deferring their pulls failed")
                self.last_error = {"at": self._clock().isoformat(), "error": f"{type(err).__name__}: {err}"}

    def relay(self) -> list[str]:
        """Save every delivery received since the last call, then defer a pull for each company they named."""
        deliveries: list[WebhookDelivery] = self.inbox.unsaved()
        for realm in self.inbox.pending_realms():
            self.inbox.take(realm)  # the rows in the shared store say what to re-read; memory keeps nothing
        realms = sorted(
            {
                realm
                for d in deliveries
                if d.signature == "valid" and d.error is None and d.ignored is None
                for realm in d.refs
            }
        )
        if deliveries:
            persist_deliveries(self.store, deliveries)  # before the pull is deferred: the job reads these rows
        for realm in realms:
            self.pulls_deferred += int(defer_pull(self.app, realm))
        if self._cycle_wanted:
            self._cycle_wanted = False
            defer_all(self.app, self.store)
        return realms
