"""The fleet's work as procrastinate jobs: a realm's cycle, a pull a webhook asked for, and the periodic deferral.

procrastinate (a PostgreSQL-backed task queue) runs them in `synchealth worker` processes. A job carries
`lock` = the realm, so no two workers ever run one company at the same time, and a queueing lock, so at most one
cycle (and one webhook pull) per company waits in the queue however often it is asked for. Each job goes through the
commands, like every other write, under the realm's advisory lock that the app servers' page actions also take. Every
job writes its start and end to `fleet_job_log` (which worker process, when), the evidence that no realm was cycled
by two workers at once and that a killed job was picked up again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import procrastinate
from procrastinate import exceptions as queue_errors

from pipelines.clock import system_clock
from pipelines.commands import Caller, Commands
from pipelines.config import Settings
from pipelines.postgres import connect, lock_key
from pipelines.store import Store

__all__ = [
    "FLEET_DDL",
    "HEARTBEAT_SECONDS",
    "STALLED_AFTER_SECONDS",
    "build_app",
    "defer_all",
    "defer_cycle",
    "defer_pull",
    "ensure_schema",
    "pending_webhook_refs",
    "retry_stalled",
    "run_worker",
]

log = logging.getLogger(__name__)

FLEET_DDL = """
CREATE TABLE IF NOT EXISTS fleet_job_log (
  job_id BIGINT NOT NULL,
  task TEXT NOT NULL,
  realm_id TEXT NOT NULL,
  worker TEXT NOT NULL,           -- host:pid of the worker process
  started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  finished_at TIMESTAMPTZ,
  outcome TEXT
);
"""

# A worker writes its heartbeat this often; a job whose worker has been silent for STALLED_AFTER_SECONDS (killed, its
# machine lost) goes back to the queue for another worker, by the periodic sweep and by every worker as it starts.
HEARTBEAT_SECONDS = 2.0
STALLED_AFTER_SECONDS = 10.0

CYCLE_TASK = "synchealth.realm_cycle"
PULL_TASK = "synchealth.realm_pull"
PERIODIC_TASK = "synchealth.defer_cycles"
SWEEP_TASK = "synchealth.retry_stalled"


def ensure_schema(url: str) -> None:
    """procrastinate's tables and the job log in the fleet's database (once; concurrent starters wait)."""
    con = connect(url)
    try:
        with con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key("fleet-schema")])
            present = con.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
            con.execute(FLEET_DDL)
        if not (present and present[0]):
            app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=url))
            with app.open():
                with con.transaction():
                    con.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key("fleet-schema")])
                    again = con.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
                    if not (again and again[0]):
                        con.execute(app.schema_manager.get_schema())
    finally:
        con.close()


def _worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def build_app(settings: Settings, *, cycle_cron: str | None = "* * * * *") -> procrastinate.App:
    """The queue and its tasks for this deployment; `settings.database_url` is the fleet's PostgreSQL."""
    url = settings.database_url
    if not url:
        raise ValueError("fleet mode needs SYNCHEALTH_DB=postgresql://... (the shared store and queue)")
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    state: dict[str, Any] = {}

    def store() -> Store:
        if "store" not in state:
            state["store"] = Store(url)
        return state["store"]

    @contextmanager
    def logged(job_id: int, task: str, realm_id: str) -> Iterator[dict[str, str]]:
        s = store()
        s.execute(
            "INSERT INTO fleet_job_log (job_id, task, realm_id, worker) VALUES (?, ?, ?, ?)",
            [job_id, task, realm_id, _worker_name()],
        )
        result = {"outcome": "failed"}
        try:
            yield result
        finally:
            s.execute(
                "UPDATE fleet_job_log SET finished_at = clock_timestamp(), outcome = ? "
                "WHERE job_id = ? AND worker = ? AND finished_at IS NULL",
                [result["outcome"], job_id, _worker_name()],
            )

    @app.task(name=CYCLE_TASK, pass_context=True, retry=procrastinate.RetryStrategy(max_attempts=3, wait=5))
    def realm_cycle(context: procrastinate.JobContext, realm_id: str) -> dict[str, Any]:
        """One company's cycle: pull QuickBooks' changes, then check, sync and the exception queue."""
        job_id = int(context.job.id or 0)
        with logged(job_id, CYCLE_TASK, realm_id) as result:
            commands = Commands(store(), settings)
            caller = Caller.system(realm_id, system_clock)
            pulled = commands.dispatch("pull", caller, {})
            cycled = commands.cycle(caller)
            _analyze_now_and_then(store())
            result["outcome"] = f"pull {pulled.status}, cycle {cycled.status}: {cycled.message}"[:300]
            return {"pull": pulled.status, "cycle": cycled.status, "message": cycled.message}

    @app.task(name=PULL_TASK, pass_context=True, retry=procrastinate.RetryStrategy(max_attempts=3, wait=5))
    def realm_pull(context: procrastinate.JobContext, realm_id: str) -> dict[str, Any]:
        """What webhooks named for the company, from the shared inbox (`webhook_events`): those objects re-read."""
        job_id = int(context.job.id or 0)
        with logged(job_id, PULL_TASK, realm_id) as result:
            event_ids, refs = pending_webhook_refs(store(), realm_id)
            done = Commands(store(), settings).pull_named(Caller.system(realm_id, system_clock), refs)
            if done.ok and event_ids:
                store().execute(
                    "UPDATE webhook_events SET processed_at = ? WHERE event_id IN ("
                    + ", ".join("?" * len(event_ids))
                    + ")",
                    [system_clock(), *event_ids],
                )
            result["outcome"] = f"{done.status}: {len(event_ids)} deliveries"
            return {"pull": done.status, "deliveries": len(event_ids)}

    def defer_cycles(timestamp: int) -> int:
        """Each connected company's cycle, deferred once (a company already waiting is not queued twice)."""
        return defer_all(app, store())

    def sweep(timestamp: int) -> int:
        """Jobs of workers gone silent (killed), back to the queue."""
        return retry_stalled(app)

    if cycle_cron:  # the periodic deferral that replaces the in-process scheduler loop in fleet mode
        app.periodic(cron=cycle_cron, periodic_id="cycles")(
            app.task(name=PERIODIC_TASK, queueing_lock="defer-cycles")(defer_cycles)
        )
        app.periodic(cron=cycle_cron, periodic_id="sweep")(app.task(name=SWEEP_TASK, queueing_lock="sweep")(sweep))
    return app


_analyzed = {"at": 0.0}
ANALYZE_EVERY_SECONDS = 60.0


def _analyze_now_and_then(store: Store) -> None:
    """Fresh planner statistics, at most once a minute per worker: the cycles insert in bulk, and on statistics a
    few minutes old PostgreSQL planned the Health page's period query as nested loops over "1 row" (minutes instead
    of 0.2 s for 50 companies of 430 records). Autovacuum catches up too, but later."""
    import time

    if time.monotonic() - _analyzed["at"] < ANALYZE_EVERY_SECONDS:
        return
    _analyzed["at"] = time.monotonic()
    try:
        store.execute("ANALYZE")
    except Exception as err:  # statistics are an optimisation: a failed ANALYZE never fails the cycle
        log.info("ANALYZE skipped: %s", err)


def defer_all(app: procrastinate.App, store: Store | str) -> int:
    """Each connected company's cycle, once; returns how many were queued (those already waiting are not)."""
    own = isinstance(store, str)
    s = Store(store) if isinstance(store, str) else store
    try:
        realms = [r[0] for r in s.rows("SELECT realm_id FROM qbo_connections WHERE status = 'connected' ORDER BY 1")]
    finally:
        if own:
            s.close()
    return sum(defer_cycle(app, realm) for realm in realms)


def retry_stalled(app: procrastinate.App, seconds: float = STALLED_AFTER_SECONDS) -> int:
    """Give the jobs of workers silent for `seconds` (killed, or their machine lost) back to the queue, at once."""
    from procrastinate import sql

    connector = app.connector.get_sync_connector()
    rows = connector.execute_query_all(
        query=sql.queries["select_stalled_jobs_by_heartbeat"],
        queue=None,
        task_name=None,
        seconds_since_heartbeat=seconds,
    )
    now = system_clock()
    for row in rows:
        if row["queueing_lock"]:
            # A cycle of the company queued after the kill waits under the same queueing lock; the stalled one goes
            # back in its place (it is the one the job log shows as cut short, and it does the same work).
            for waiting in app.job_manager.list_jobs(queueing_lock=row["queueing_lock"], status="todo"):
                if waiting.id is not None:
                    app.job_manager.cancel_job_by_id(waiting.id)
        try:
            app.job_manager.retry_job_by_id(row["id"], retry_at=now)
        except Exception as err:  # another sweeper retried it first
            log.info("stalled job %s not retried here: %s", row["id"], err)
    return len(rows)


def pending_webhook_refs(store: Store, realm_id: str) -> tuple[list[int], dict[str, list[str]]]:
    """The shared inbox: the signed deliveries for the company not yet acted on, and the objects they named."""
    rows = store.rows(
        "SELECT event_id, entities FROM webhook_events WHERE realm_id = ? AND signature = 'valid' "
        "AND error IS NULL AND processed_at IS NULL ORDER BY event_id",
        [realm_id],
    )
    refs: dict[str, list[str]] = {}
    for _event_id, entities in rows:
        named = entities if isinstance(entities, dict) else json.loads(entities or "{}")
        for entity, ids in named.items():
            known = refs.setdefault(entity, [])
            known.extend(str(i) for i in ids if str(i) not in known)
    return [int(r[0]) for r in rows], refs


def defer_cycle(app: procrastinate.App, realm_id: str) -> bool:
    """Queue one cycle of the company (False: one is already waiting)."""
    try:
        app.configure_task(CYCLE_TASK, lock=realm_id, queueing_lock=f"cycle:{realm_id}").defer(realm_id=realm_id)
    except queue_errors.AlreadyEnqueued:
        return False
    return True


def defer_pull(app: procrastinate.App, realm_id: str) -> bool:
    """Queue a pull of the company after a webhook (False: one is already waiting)."""
    try:
        app.configure_task(PULL_TASK, lock=realm_id, queueing_lock=f"pull:{realm_id}").defer(realm_id=realm_id)
    except queue_errors.AlreadyEnqueued:
        return False
    return True


def run_worker(settings: Settings, *, concurrency: int = 1, cycle_cron: str | None = "* * * * *") -> None:
    """Run one worker process until interrupted: `concurrency` jobs at once, on as many companies."""
    assert settings.database_url
    Store(settings.database_url).close()  # migrations first: a worker never runs on an older schema
    ensure_schema(settings.database_url)
    app = build_app(settings, cycle_cron=cycle_cron)
    with app.open():
        retry_stalled(app)  # what a killed worker left behind is picked up again, by whoever starts next
        app.run_worker(
            concurrency=concurrency,
            install_signal_handlers=True,
            delete_jobs="never",
            update_heartbeat_interval=HEARTBEAT_SECONDS,
            stalled_worker_timeout=STALLED_AFTER_SECONDS,
        )
