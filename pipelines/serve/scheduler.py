"""The server's cycle loop: ingest a changed snapshot, pull QBO changes and what webhooks named, check, sync,
escalate; one cycle at a time, an error recorded and the next cycle still run, a clean stop.

A cycle holds the realm's sync lock from its first QBO call to its last write, so a page-triggered retry
of a record waits for it (and a cycle waits for a retry in flight) instead of interleaving with it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipelines.clock import Clock, system_clock
from pipelines.commands import Caller, Commands, Result
from pipelines.config import DEFAULT_WARN_DAYS, Settings
from pipelines.connection import qbo_client
from pipelines.connection_health import connection_health, needs_refresh
from pipelines.ingest import FORMATS
from pipelines.locks import realm_lock
from pipelines.serve.webhooks import WebhookDelivery, WebhookInbox, persist_deliveries
from pipelines.store import Store
from pipelines.views import read_model
from qbo.client import QboClient

__all__ = ["SYSTEM_ACTOR", "CycleReport", "Scheduler", "SchedulerConfig", "StepFailed", "snapshot_fingerprint"]

log = logging.getLogger(__name__)

SYSTEM_ACTOR = "system"
ClientFactory = Callable[[str], AbstractContextManager[QboClient]]


@dataclass(frozen=True)
class SchedulerConfig:
    """How often and with what: the interval between scheduled cycles, the snapshot folder to watch."""

    interval: float = 300.0
    snapshot_dir: Path | None = None
    reconnect_warn_days: int = DEFAULT_WARN_DAYS
    first_cycle_delay: float = 0.0
    stop_grace: float = 60.0


@dataclass
class CycleReport:
    """What one cycle did, step by step; `errors` holds one line per failed step."""

    cycle_id: int
    trigger: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"
    steps: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def snapshot_fingerprint(folder: Path) -> tuple | None:
    """Names, sizes and modification times of the snapshot's files: cheap, and it moves when a file changes."""
    if not folder.is_dir():
        return None
    return tuple(
        sorted(
            (p.name, st.st_size, st.st_mtime_ns)
            for p in folder.iterdir()
            if p.suffix in FORMATS and p.is_file() and (st := p.stat())
        )
    )


def _nap(event: threading.Event, seconds: float, *also: threading.Event) -> None:
    """Wait up to `seconds` for any of the events, in short sleeps.

    Not `event.wait(seconds)`: a timed wait hands the kernel a deadline on the monotonic clock, and a clock that was
    moved (a resumed VM, a test run under a shifted date) can put that deadline months away; a short sleep returns.
    """
    deadline = time.monotonic() + seconds
    while not (event.is_set() or any(e.is_set() for e in also)):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


class StepFailed(Exception):
    """A command the cycle ran was refused or failed; the message is its one line."""


def _done(result: Result) -> dict[str, Any]:
    """A step's result for the cycle's report; a refused or failed command is that step's error."""
    if not result.ok:
        raise StepFailed(result.message)
    return result.data


class Scheduler:
    """Runs cycles on a background thread: every `interval` seconds, and at once when webhooks name objects."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        config: SchedulerConfig | None = None,
        *,
        inbox: WebhookInbox | None = None,
        client_factory: ClientFactory | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self.store = store
        self.settings = settings
        self.config = config or SchedulerConfig(snapshot_dir=settings.snapshot_dir)
        self.inbox = inbox or WebhookInbox()
        self._client = client_factory or (lambda realm: qbo_client(settings, store, realm, clock=clock))
        self._clock = clock
        self.commands = Commands(store, settings, client_factory=lambda realm, _clock: self._client(realm))
        self._flight = threading.Lock()  # one cycle at a time, whoever starts it
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._due_now = False
        self._thread: threading.Thread | None = None
        self._next_at: float | None = None
        self._fingerprint: tuple | None = None
        self.current: CycleReport | None = None
        self.last: CycleReport | None = None
        self.last_error: dict[str, Any] | None = None
        self.cycles = 0
        self.failed = 0

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="synchealth-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Finish the step under way, skip the rest, end the thread; True when everything stopped in time."""
        self._stopping.set()
        self._wakeup.set()
        grace = self.config.stop_grace if timeout is None else timeout
        if self._thread is not None:
            self._thread.join(grace)
            if self._thread.is_alive():
                log.error("the scheduler did not stop within %.0f s; its current step is still running", grace)
                return False
        # A cycle started by someone else (a manual run) must end before the store closes.
        if self._flight.acquire(timeout=grace):
            self._flight.release()
            return True
        return False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    def wake(self) -> None:
        """Look at the webhook inbox now (the route calls this after answering QBO)."""
        self._wakeup.set()

    def request_cycle(self) -> None:
        """Run a full cycle as soon as the current one (if any) ends, e.g. right after a reconnect."""
        self._due_now = True
        self._wakeup.set()

    def _loop(self) -> None:
        self._next_at = time.monotonic() + self.config.first_cycle_delay
        while not self._stopping.is_set():
            try:
                self._turn()
            except Exception as err:  # never let the loop die: record, pause a moment, go on
                log.exception("the scheduler loop hit an error; it goes on")
                self.last_error = {
                    "at": self._clock().isoformat(),
                    "cycle_id": None,
                    "error": f"{type(err).__name__}: {err}",
                }
                _nap(self._stopping, 1.0)

    def _turn(self) -> None:
        assert self._next_at is not None  # _loop sets it before the first turn
        if self._due_now or time.monotonic() >= self._next_at:
            self._due_now = False
            self.run_cycle("schedule")
            self._next_at = time.monotonic() + self.config.interval
            return
        if self.inbox.has_pending():
            self.run_cycle("webhook")
            return
        self._save_refused()
        _nap(self._wakeup, max(self._next_at - time.monotonic(), 0), self._stopping)
        self._wakeup.clear()

    # -- one cycle -------------------------------------------------------------------------------------
    def run_cycle(self, trigger: str = "manual") -> CycleReport | None:
        """One cycle now; None when another is running (single flight: it is not queued behind it)."""
        if not self._flight.acquire(blocking=False):
            return None
        try:
            return self._run(trigger)
        finally:
            self._flight.release()

    def _run(self, trigger: str) -> CycleReport:
        started = self._clock()
        realms = self._realms()
        report = CycleReport(self._begin(trigger, started, realms), trigger, started)
        self.current = report
        try:
            if trigger != "webhook":
                self._step(report, "ingest", self._ingest)
            for realm in realms:
                self._realm_cycle(report, realm, trigger)
            if realms:  # so the first page shown after the cycle finds the read model current
                self._step(report, "read_model", lambda: self._refresh_read_model(realms))
        finally:
            report.finished_at = self._clock()
            stopped = self._stopping.is_set() and any(v == "skipped: stopping" for v in report.steps.values())
            report.status = "failed" if report.errors else "stopped" if stopped else "done"
            self._finish(report)
            self.current, self.last = None, report
            self.cycles += 1
            if report.errors:
                self.failed += 1
                self.last_error = {
                    "at": report.finished_at.isoformat(),
                    "cycle_id": report.cycle_id,
                    "error": report.errors[0],
                }
        return report

    def _step(self, report: CycleReport, name: str, fn: Callable[[], Any]) -> Any:
        if self._stopping.is_set():
            report.steps[name] = "skipped: stopping"
            return None
        try:
            result = fn()
        except Exception as err:  # recorded; the cycle goes on with its next step, the loop with its next cycle
            line = f"{name}: {type(err).__name__}: {err}"
            log.warning("cycle %s step %s failed: %s", report.cycle_id, name, err, exc_info=log.isEnabledFor(10))
            report.errors.append(line)
            report.steps[name] = {"error": line}
            return None
        report.steps[name] = result
        return result

    def _refresh_read_model(self, realms: list[str]) -> bool:
        """The shown company's read-model rows, and those of every company of the cycle a page already showed (an
        update from its change log; an unchanged company's rows are current, a no-op), brought up to date."""
        shown = self.settings.realm_id if self.settings.realm_id in realms else realms[0]
        held = set(read_model.labelled_realms(self.store))
        others = [realm for realm in realms if realm != shown and realm in held]
        return all([read_model.refresh_read_model(self.store, realm) for realm in (shown, *others)])

    def _realm_cycle(self, report: CycleReport, realm: str, trigger: str) -> None:
        try:
            with realm_lock(realm, store=self.store):
                self._realm_steps(report, realm, trigger)
        except Exception as err:  # e.g. the token key cannot be read: recorded like a failed step
            line = f"{realm}: {type(err).__name__}: {err}"
            log.warning("cycle %s: %s", report.cycle_id, line)
            report.errors.append(line)

    def _realm_steps(self, report: CycleReport, realm: str, trigger: str) -> None:
        deliveries, refs = self.inbox.checkout(realm)
        report.steps[f"{realm}.webhook_log"] = len(persist_deliveries(self.store, deliveries))
        caller = Caller.system(realm, self._clock)
        if self._status(realm) == "connected":
            with self._client(realm) as client:
                self._step(report, f"{realm}.refresh", lambda: self._refresh(client, realm))
            if trigger != "webhook":
                self._step(report, f"{realm}.pull", lambda: self._pull(caller))
            if refs:
                self._step(report, f"{realm}.webhook_pull", lambda: self._pull_named(caller, realm, refs, report))
        elif refs:
            report.steps[f"{realm}.webhook_pull"] = "dropped: not connected (the pull after a reconnect catches up)"
        # Connection warnings, the check, the sync when connected, and the queue (with its escalations) once.
        warn_days = self.config.reconnect_warn_days
        self._step(report, f"{realm}.cycle", lambda: _done(self.commands.cycle(caller, reconnect_warn_days=warn_days)))

    # -- steps ------------------------------------------------------------------------------------------
    def _ingest(self) -> Any:
        folder = self.config.snapshot_dir
        if folder is None:
            return "no snapshot folder configured"
        fingerprint = snapshot_fingerprint(folder)
        if fingerprint is None:
            return f"no snapshot folder at {folder}"
        if fingerprint == self._fingerprint:
            return "unchanged since the last ingest (not read)"
        done = self.commands.ingest(Caller.system(self.settings.realm_id, self._clock), folder)
        # Refused or applied, it is recorded: the same files are not read again until one of them changes.
        self._fingerprint = fingerprint
        return _done(done)

    def _refresh(self, client: QboClient, realm: str) -> str:
        now = self._clock()
        if not needs_refresh(connection_health(self.store, realm, now=now), now):
            return "not due"
        client.oauth.refresh(realm)
        return "refreshed"

    def _pull(self, caller: Caller) -> dict[str, Any]:
        return _done(self.commands.pull(caller))

    def _pull_named(self, caller: Caller, realm: str, refs: dict[str, list[str]], report: CycleReport) -> Any:
        done = self.commands.pull_named(caller, refs)
        if not done.ok:
            self.inbox.give_back(realm, refs)
            return _done(done)
        self.store.execute(
            "UPDATE webhook_events SET processed_at = ?, cycle_id = ? "
            "WHERE realm_id = ? AND signature = 'valid' AND processed_at IS NULL",
            [self._clock(), report.cycle_id, realm],
        )
        return done.data

    # -- bookkeeping ------------------------------------------------------------------------------------
    def _status(self, realm: str) -> str | None:
        return self.store.scalar("SELECT status FROM qbo_connections WHERE realm_id = ?", [realm])

    def _realms(self) -> list[str]:
        connected = {r[0] for r in self.store.rows("SELECT realm_id FROM qbo_connections")}
        for realm in set(self.inbox.pending_realms()) - connected - {self.settings.realm_id}:
            self.inbox.take(realm)  # a company this deployment does not watch: nothing to re-read
        return sorted(connected | {self.settings.realm_id})

    def _save_refused(self) -> None:
        """Refused deliveries reach webhook_events (and the Connection page) without waiting for a cycle."""
        pending: list[WebhookDelivery] = self.inbox.unsaved()
        if not pending:
            return
        try:
            persist_deliveries(self.store, pending)
        except Exception as err:  # the counters in memory still have them
            log.warning("could not record %d webhook deliveries: %s", len(pending), err)

    def _begin(self, trigger: str, started: datetime, realms: list[str]) -> int:
        try:
            cycle_id = int(self.store.scalar("SELECT nextval('server_cycle_seq')"))
            with self.store.transaction() as tx:
                for realm in realms:
                    tx.execute(
                        "INSERT INTO server_cycles (cycle_id, realm_id, trigger, started_at, status) "
                        "VALUES (?, ?, ?, ?, 'running')",
                        [cycle_id, realm, trigger, started],
                    ).fetchall()
            return cycle_id
        except Exception as err:
            log.warning("could not record the start of a cycle: %s", err)
            return -1

    def _finish(self, report: CycleReport) -> None:
        """One row per realm: its own steps and errors (the snapshot ingest belongs to the configured realm)."""
        try:
            realms = [
                r[0]
                for r in self.store.rows("SELECT realm_id FROM server_cycles WHERE cycle_id = ?", [report.cycle_id])
            ]
            with self.store.transaction() as tx:
                for realm in realms:
                    mine = (f"{realm}.", f"{realm}:") + (("ingest",) if realm == self.settings.realm_id else ())
                    steps = {k: v for k, v in report.steps.items() if k.startswith(mine)}
                    errors = [e for e in report.errors if e.startswith(mine)]
                    status = "failed" if errors else "stopped" if report.status == "stopped" else "done"
                    tx.execute(
                        "UPDATE server_cycles SET finished_at = ?, status = ?, steps = ?, error = ? "
                        "WHERE cycle_id = ? AND realm_id = ?",
                        [
                            report.finished_at,
                            status,
                            json.dumps(steps, default=str),
                            errors[0] if errors else None,
                            report.cycle_id,
                            realm,
                        ],
                    ).fetchall()
        except Exception as err:
            log.warning("could not record the end of cycle %s: %s", report.cycle_id, err)

    def status(self) -> dict[str, Any]:
        """For /healthz: alive, the cycle under way, the last one, the last error."""
        next_in = None
        if self._next_at is not None and self.running:
            next_in = round(max(self._next_at - time.monotonic(), 0), 1)
        current = self.current
        return {
            "running": self.running,
            "interval_seconds": self.config.interval,
            "next_cycle_in_seconds": next_in,
            "cycles": self.cycles,
            "failed_cycles": self.failed,
            "current": {
                "cycle_id": current.cycle_id,
                "trigger": current.trigger,
                "started_at": current.started_at.isoformat(),
            }
            if current
            else None,
            "last_cycle": self.last.to_dict() if self.last else None,
            "last_error": self.last_error,
            "snapshot_dir": str(self.config.snapshot_dir) if self.config.snapshot_dir else None,
            "webhooks": self.inbox.snapshot(),
        }
