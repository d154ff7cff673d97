"""Fleet mode's parts on a private PostgreSQL: realm-locked cycle jobs with a queueing lock, the realm lock and the
token-refresh lock across processes (connections), and QuickBooks' per-realm limits counted in the shared store."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fixtures import REALM, tiny_company
from world import World, exactly_once

from pipelines.commands import Commands
from pipelines.fleet.limits import SharedRateLimiter
from pipelines.fleet.relay import FleetRelay
from pipelines.fleet.worker import build_app, defer_cycle, defer_pull, ensure_schema, pending_webhook_refs
from pipelines.locks import RealmBusyError, realm_lock
from pipelines.serve.webhooks import WebhookInbox, handle_delivery, sign
from pipelines.store import Store
from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread


def test_a_realm_cycle_is_one_locked_job_and_a_waiting_one_is_not_queued_twice(tmp_path: Path, pg_url: str) -> None:
    with start_in_thread(Sandbox(tiny_company())) as running:
        w = World(tmp_path, base_url=running.base_url, sandbox=running.sandbox, database_url=pg_url)
        try:
            ensure_schema(pg_url)
            app = build_app(w.settings, cycle_cron=None)
            with app.open():
                assert defer_cycle(app, REALM) is True
                assert defer_cycle(app, REALM) is False  # the queueing lock: one waiting cycle per company
                assert defer_pull(app, REALM) is True
                app.run_worker(wait=False, concurrency=1, install_signal_handlers=False)
            log = w.store.rows("SELECT task, realm_id, outcome FROM fleet_job_log ORDER BY started_at")
            exactly_once(w)
            assert [r[0] for r in log] == ["synchealth.realm_cycle", "synchealth.realm_pull"]
            assert log[0][2].startswith("pull done, cycle done") and log[1][2] == "done: 0 deliveries"
            jobs = w.store.rows("SELECT status, lock FROM procrastinate_jobs ORDER BY id")
            assert jobs == [("succeeded", REALM), ("succeeded", REALM)]
        finally:
            w.close()


def test_a_webhook_lands_in_the_shared_inbox_and_a_worker_re_reads_what_it_named(tmp_path: Path, pg_url: str) -> None:
    """What an app server does with a delivery in fleet mode (FleetRelay), then what any worker does with it."""
    with start_in_thread(Sandbox(tiny_company())) as running:
        w = World(tmp_path, base_url=running.base_url, sandbox=running.sandbox, database_url=pg_url)
        try:
            ensure_schema(pg_url)
            account = running.sandbox.entities(REALM, "Account")[0]["Id"]
            body = json.dumps(
                {
                    "eventNotifications": [
                        {
                            "realmId": REALM,
                            "dataChangeEvent": {
                                "entities": [
                                    {
                                        "name": "Account",
                                        "id": account,
                                        "operation": "Update",
                                        "lastUpdated": "2030-01-01T00:00:00Z",
                                    }
                                ]
                            },
                        }
                    ]
                }  # fmt: skip
            ).encode()
            inbox = WebhookInbox()
            status, _ = handle_delivery(inbox, "verifier", body, sign("verifier", body), datetime.now(UTC))
            assert status == 200
            relay = FleetRelay(w.store, w.settings, inbox)
            relay.app.open()
            try:
                assert relay.relay() == [REALM]  # saved in webhook_events, a pull deferred for the company
                assert relay.relay() == []  # nothing new: nothing deferred again
            finally:
                relay.app.close()
            assert pending_webhook_refs(w.store, REALM)[1] == {"Account": [account]}
            app = build_app(w.settings, cycle_cron=None)
            mark = len(w.sandbox.request_log)
            with app.open():
                app.run_worker(wait=False, concurrency=1, install_signal_handlers=False)
            log = w.store.rows("SELECT task, outcome FROM fleet_job_log")
            assert log == [("synchealth.realm_pull", "done: 1 deliveries")]
            assert pending_webhook_refs(w.store, REALM) == ([], {})  # the delivery is marked processed
            # the named account re-read from QuickBooks: one query for what the delivery named
            assert w.reads_since(mark) == [("GET", f"/v3/company/{REALM}/query")]
        finally:
            w.close()


def test_a_page_action_waits_for_the_company_a_worker_is_cycling(pg_url: str, tmp_path: Path) -> None:
    """A retry from an app server is a command under the realm's lock: refused as busy while a worker holds it."""
    w = World(tmp_path, database_url=pg_url)
    other = Store(pg_url)
    try:
        with other.advisory_lock(f"realm:{REALM}"):  # what a worker's cycle holds, from another process
            busy = Commands(w.store, w.settings, lock_wait=0.3).retry(w.caller(), ["bill:BILL-1"])
        assert busy.status != "done" and "busy" in busy.message
        done = Commands(w.store, w.settings, lock_wait=0.3, client_factory=lambda r, _c: w.client(r)).retry(
            w.caller(), ["bill:BILL-1"]
        )
        assert "busy" not in done.message
    finally:
        other.close()
        w.close()


def test_the_realm_lock_and_named_locks_hold_across_connections(pg_url: str) -> None:
    one, two = Store(pg_url), Store(pg_url)
    try:
        held, release = threading.Event(), threading.Event()

        def holder() -> None:
            with realm_lock("R-1", store=one):
                held.set()
                release.wait(10)

        thread = threading.Thread(target=holder)
        thread.start()
        held.wait(10)
        with pytest.raises(RealmBusyError, match="busy"):
            with realm_lock("R-1", wait=0.3, store=two):
                pass
        with realm_lock("R-2", wait=0.3, store=two):  # another company is not held up
            pass
        release.set()
        thread.join()
        with realm_lock("R-1", wait=2, store=two):
            pass
        # the token refresher's lock is a named lock of the same kind
        with one.advisory_lock("qbo-refresh:R-1"):
            with pytest.raises(TimeoutError):
                with two.advisory_lock("qbo-refresh:R-1", wait=0.2):
                    pass
    finally:
        one.close()
        two.close()


def test_per_realm_limits_are_counted_across_every_limiter_of_the_realm(pg_url: str) -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC).timestamp()]
    slept: list[float] = []

    def clock() -> datetime:
        return datetime.fromtimestamp(now[0], UTC)

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    Store(pg_url).close()
    a = SharedRateLimiter(pg_url, "R-9", clock=clock, sleep=sleep, per_minute=5, batch_per_minute=2)
    b = SharedRateLimiter(pg_url, "R-9", clock=clock, sleep=sleep, per_minute=5, batch_per_minute=2)
    other = SharedRateLimiter(pg_url, "R-8", clock=clock, sleep=sleep, per_minute=5)
    for limiter in (a, b, a, b, a):
        with limiter.slot():
            now[0] += 1
    assert slept == []
    with other.slot():  # another realm has its own window
        pass
    assert slept == []
    with b.slot():  # the sixth request of R-9 in a minute waits for the first to leave the window
        pass
    assert len(slept) == 1 and 55 < slept[0] <= 61
    a.hold(30)  # QuickBooks asked one process to wait: every limiter of the realm waits
    with b.slot():
        pass
    assert 29 <= slept[-1] <= 30


def test_a_slow_call_counts_in_the_window_until_a_window_after_it_ended(pg_url: str) -> None:
    """QuickBooks stamps a call when it arrives, which under load is after the client took its slot: a call counts
    until the window has passed since it ended, so the next window's calls never meet it there (the fleet bench once
    saw 3 requests over a limit at 8 workers when calls counted from their start)."""
    now = [datetime(2030, 1, 1, tzinfo=UTC).timestamp()]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    Store(pg_url).close()
    limiter = SharedRateLimiter(
        pg_url, "R-7", clock=lambda: datetime.fromtimestamp(now[0], UTC), sleep=sleep, per_minute=2
    )
    with limiter.slot():
        now[0] += 30  # a slow call: 30 s from its slot to its answer
    with limiter.slot():
        now[0] += 1
    now[0] += 31  # 62 s after the first call started, 32 s after it ended
    with limiter.slot():  # a third call within a minute of the first one's end waits for it to leave the window
        pass
    assert len(slept) == 1 and 25 < slept[0] <= 30, slept
