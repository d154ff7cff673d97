"""The scheduler against the in-process sandbox: full cycles, webhook cycles, single flight, errors, a clean stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fixtures import REALM, tiny_snapshot, write_snapshot
from world import ADMIN, World

from pipelines import commands as commands_module
from pipelines.clock import system_clock
from pipelines.commands import Caller
from pipelines.ingest import ingest_snapshot
from pipelines.serve.scheduler import Scheduler, SchedulerConfig
from pipelines.serve.webhooks import WebhookDelivery
from pipelines.store import Store
from pipelines.views import read_model


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A connected store with nothing loaded yet, and a scheduler (not started) that ingests the snapshot folder."""
    w = World(tmp_path, ingested=False)
    w.snapshot = write_snapshot(tmp_path / "awra", tiny_snapshot())
    w.scheduler = Scheduler(
        w.store,
        w.settings,
        SchedulerConfig(interval=3600, snapshot_dir=w.snapshot, stop_grace=10),
        client_factory=w.client,
        clock=system_clock,
    )
    yield w
    w.scheduler.stop(timeout=10)
    w.close()
    w.sandbox.close()


def _block(world: World, method: str) -> tuple[threading.Event, threading.Event]:
    """Make one step of the scheduler wait until released; returns (entered, release)."""
    entered, release = threading.Event(), threading.Event()
    original = getattr(world.scheduler, method)

    def held(*args, **kwargs):
        entered.set()
        assert release.wait(10), "the test never released the step"
        return original(*args, **kwargs)

    setattr(world.scheduler, method, held)
    return entered, release


def test_a_cycle_ingests_pulls_checks_syncs_and_the_next_skips_an_unchanged_snapshot(world: World) -> None:
    first = world.scheduler.run_cycle("manual")
    assert first.status == "done", first.errors
    assert first.steps["ingest"]["status"] == "applied"
    assert first.steps[f"{REALM}.pull"]["kind"] == "full"
    assert first.steps[f"{REALM}.cycle"]["sent"].get("accepted", 0) > 0
    assert first.steps["read_model"] is True and read_model.is_current(world.store, REALM)  # built for the first view
    second = world.scheduler.run_cycle("manual")
    assert second.steps["ingest"] == "unchanged since the last ingest (not read)"
    assert second.steps[f"{REALM}.pull"]["kind"] == "cdc"
    assert world.store.rows("SELECT status FROM server_cycles ORDER BY cycle_id") == [("done",), ("done",)]

    vendors = world.snapshot / "vendors.csv"
    vendors.write_text(vendors.read_text().replace("Acme Supplies", "Acme Supplies Ltd"))
    third = world.scheduler.run_cycle("manual")
    assert third.steps["ingest"]["status"] == "applied" and third.steps["ingest"]["changed"] == 1


def test_after_a_cycle_each_company_a_page_showed_is_brought_up_to_date(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-model rows of the shown company and of every other company a page showed are current after a cycle
    (an update from each one's change log); a company no page showed is not built."""
    other, unseen = "4620816365300011", "5550000000000001"
    assert world.scheduler.run_cycle("manual").status == "done"
    ingest_snapshot(world.store, write_snapshot(world.tmp / "other", tiny_snapshot()), realm_id=other, now=world.now)
    assert read_model.refresh_read_model(world.store, other)  # a page showed it
    done = world.commands.exclude(world.caller(realm_id=other), ["bill:BILL-1"], reason="handled outside QuickBooks")
    assert done.ok and not read_model.is_current(world.store, other)
    monkeypatch.setattr(world.scheduler, "_realms", lambda: [REALM, other, unseen])
    monkeypatch.setattr(world.scheduler, "_realm_cycle", lambda report, realm, trigger: None)  # its own steps aside
    report = world.scheduler.run_cycle("manual")
    assert report.steps["read_model"] is True, report.errors
    assert read_model.is_current(world.store, REALM) and read_model.is_current(world.store, other)
    assert read_model.labelled_realms(world.store) == sorted([REALM, other])


def test_a_webhook_cycle_reads_exactly_the_named_objects_and_a_deactivated_account_goes_stale(world: World) -> None:
    world.scheduler.run_cycle("manual")
    assert world.store.scalar("SELECT status FROM mappings WHERE kind = 'account' AND awra_value = '5000'") == "mapped"
    world.sandbox.user_patch(REALM, "Account", "3", {"Active": False})  # 5000 Cost of Goods, as a QBO user would
    mark = len(world.sandbox.request_log)
    world.scheduler.inbox.receive(
        WebhookDelivery(datetime.now(UTC), "valid", "legacy", {REALM: {"Account": ["3"], "Estimate": ["9"]}})
    )
    report = world.scheduler.run_cycle("webhook")
    assert report.status == "done", report.errors
    assert world.reads_since(mark) == [("GET", f"/v3/company/{REALM}/query")]  # one query for what was named
    assert report.steps[f"{REALM}.webhook_pull"]["ignored"] == ["Estimate"]
    assert world.store.scalar("SELECT status FROM mappings WHERE kind = 'account' AND awra_value = '5000'") == "stale"
    assert world.store.rows("SELECT signature, processed_at IS NOT NULL, cycle_id FROM webhook_events") == [
        ("valid", True, report.cycle_id)
    ]


def test_a_webhook_naming_many_objects_costs_one_query_per_entity_and_marks_what_quickbooks_deleted(
    world: World,
) -> None:
    world.scheduler.run_cycle("manual")
    (bill,) = world.store.rows("SELECT qbo_id FROM qbo_objects WHERE entity = 'Bill' LIMIT 1")[0]
    world.sandbox.user_delete(REALM, "Bill", bill)  # a QuickBooks user deletes the bill
    world.sandbox.user_patch(REALM, "Account", "3", {"Active": False})  # and makes an account inactive
    mark = len(world.sandbox.request_log)
    named = {"Bill": [bill, "99999", "../1?x=2"], "Account": ["3", "1", "2"]}  # an unknown id; one no id can be
    world.scheduler.inbox.receive(WebhookDelivery(datetime.now(UTC), "valid", "legacy", {REALM: named}))
    report = world.scheduler.run_cycle("webhook")
    assert report.status == "done", report.errors
    assert world.reads_since(mark) == [("GET", f"/v3/company/{REALM}/query")] * 2  # Bill, Account: one each
    assert world.store.scalar("SELECT deleted FROM qbo_objects WHERE entity = 'Bill' AND qbo_id = ?", [bill]) is True
    assert not world.store.rows("SELECT 1 FROM qbo_objects WHERE qbo_id = '../1?x=2'")
    accounts = world.store.rows("SELECT qbo_id, deleted FROM qbo_objects WHERE entity = 'Account' AND qbo_id < '4'")
    assert sorted(accounts) == [("1", False), ("2", False), ("3", False)]
    # the inactive account was read (inactive rows included), not taken for deleted
    assert world.store.scalar("SELECT deleted FROM qbo_objects WHERE entity = 'Account' AND qbo_id = '3'") is False
    assert world.store.scalar("SELECT status FROM mappings WHERE kind = 'account' AND awra_value = '5000'") == "stale"


def test_single_flight_a_cycle_never_overlaps_itself_or_a_retry_of_the_same_realm(world: World) -> None:
    world.scheduler.run_cycle("manual")
    entered, release = _block(world, "_pull")
    done: dict[str, float] = {}

    def cycle() -> None:
        world.scheduler.run_cycle("manual")
        done["cycle"] = time.monotonic()

    def page_retry() -> None:
        caller = Caller(ADMIN, REALM, system_clock)
        world.scheduler.commands.retry(caller, ["bill:BILL-2"])  # a page's retry: the same commands, the same lock
        done["retry"] = time.monotonic()

    a = threading.Thread(target=cycle)
    a.start()
    assert entered.wait(10)
    assert world.scheduler.run_cycle("manual") is None  # a second cycle is refused, not queued
    c = threading.Thread(target=page_retry)
    c.start()
    time.sleep(0.5)
    assert "retry" not in done, "the retry ran inside the cycle"
    release.set()
    a.join(20)
    c.join(20)
    assert done["retry"] >= done["cycle"]
    assert world.store.scalar("SELECT count(*) FROM server_cycles") == 2


def test_an_error_is_recorded_and_the_next_cycle_still_runs(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real_pull = commands_module.pull

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("QuickBooks is down")
        return real_pull(*args, **kwargs)

    monkeypatch.setattr(commands_module, "pull", flaky)
    world.scheduler.config = SchedulerConfig(interval=0.05, snapshot_dir=world.snapshot, stop_grace=10)
    world.scheduler.start()
    deadline = time.monotonic() + 30
    while world.scheduler.cycles < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert world.scheduler.stop(timeout=20)
    statuses = [r[0] for r in world.store.rows("SELECT status FROM server_cycles ORDER BY cycle_id")]
    assert statuses[0] == "failed" and "done" in statuses[1:]
    assert "cannot reach QuickBooks" in world.scheduler.last_error["error"]
    failed = world.scheduler.status()
    assert failed["failed_cycles"] == 1 and failed["cycles"] >= 2 and not failed["running"]
    # the failed cycle still checked and synced after its pull failed
    first = world.store.scalar("SELECT steps FROM server_cycles ORDER BY cycle_id LIMIT 1")
    assert f'"{REALM}.cycle": {{' in first


def test_a_broken_realm_is_recorded_and_the_loop_goes_on(world: World) -> None:
    def broken(realm: str):
        raise OSError("no route to QuickBooks")

    world.scheduler._client = broken
    report = world.scheduler.run_cycle("manual")
    assert report.status == "failed" and "no route to QuickBooks" in report.errors[0]
    world.scheduler._client = world.client
    assert world.scheduler.run_cycle("manual").status == "done"


def test_stop_finishes_the_step_under_way_skips_the_rest_and_leaves_the_store_whole(world: World) -> None:
    entered, release = _block(world, "_pull")
    world.scheduler.start()
    assert entered.wait(10)
    stopped: dict[str, bool] = {}
    stopper = threading.Thread(target=lambda: stopped.setdefault("ok", world.scheduler.stop(timeout=20)))
    stopper.start()
    time.sleep(0.3)
    assert stopper.is_alive(), "stop() returned while a step was under way"
    release.set()
    stopper.join(20)
    assert stopped["ok"] and not world.scheduler.running
    row = world.store.rows("SELECT status, steps FROM server_cycles")
    assert row[0][0] == "stopped" and "skipped: stopping" in row[0][1]
    path = world.store.path
    world.store.close()
    with Store(path) as again:  # the file opens cleanly and holds the finished pull
        assert again.scalar("SELECT count(*) FROM qbo_pulls WHERE status = 'done'") == 1
    world.store = Store(path)
