"""The sync engine against the sandbox: nothing silent, nothing twice, nothing lost, nothing retried blindly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fixtures import REALM, iso, tiny_company, tiny_snapshot, write_snapshot
from world import ADMIN, FINANCE, World, exactly_once

from pipelines.ingest import ingest_snapshot
from pipelines.store import Store
from pipelines.sync import request_id_for
from pipelines.views.metrics import record_chain
from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(tmp_path: Path, store_target: str | Path) -> Iterator[World]:
    """The world on each backend: the embedded DuckDB file and the fleet's PostgreSQL."""
    w = World(tmp_path, database_url=store_target if isinstance(store_target, str) else None)
    yield w
    w.close()


def test_one_cycle_sends_every_ready_record_once_in_dependency_order(world: World) -> None:
    result = world.cycle()
    assert result.sync.counts == {"accepted": 9}
    exactly_once(world)
    order = [r[0] for r in world.store.rows("SELECT entity FROM sync_attempts ORDER BY attempt_id")]
    assert order.index("payment") > order.index("invoice") > order.index("customer")
    assert world.state("bill:BILL-2") == "not_ready"
    chain = record_chain(world.store, REALM, "bill:BILL-1")
    assert chain["state"] == "synced" and chain["external_id"]
    assert chain["attempts"][0]["outcome"] == "accepted" and chain["attempts"][0]["intuit_tid"]
    # a second cycle finds nothing to send
    assert world.cycle().sync.planned == 0


def test_a_sync_built_in_slices_of_two_sends_the_same_records_once_in_the_same_order(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large company's bodies are built a slice at a time; slicing must change neither what lands nor its order.
    monkeypatch.setattr("pipelines.sync.PLAN_SLICE", 2)
    result = world.cycle()
    assert result.sync.counts == {"accepted": 9} and result.sync.planned == 9
    exactly_once(world)
    order = [r[0] for r in world.store.rows("SELECT entity FROM sync_attempts ORDER BY attempt_id")]
    assert order.index("payment") > order.index("invoice") > order.index("customer")


def test_request_ids_are_deterministic_and_fit_qbo_limits() -> None:
    rid = request_id_for(REALM, "bill", "BILL-1", 2, 0)
    assert rid == request_id_for(REALM, "bill", "BILL-1", 2, 0)
    assert rid != request_id_for(REALM, "bill", "BILL-1", 2, 1) != request_id_for(REALM, "bill", "BILL-1", 3, 0)
    assert len(rid) <= 36


def test_missing_item_mapping_is_not_sent_retry_refused_until_mapped(tmp_path: Path) -> None:
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"
    w = World(tmp_path, snap)
    w.cycle()
    assert w.state("bill:BILL-1") == "blocked"
    assert "BILL-1" not in w.in_qbo()["Bill"]
    exc = w.store.rows(
        "SELECT dimension, reason, owner_role, detail FROM exceptions WHERE record_id = 'BILL-1' AND status = 'open'"
    )
    assert exc == [("mapping", "mapping.item_missing", "admin", "line 1: item SKU WID-220 has no QuickBooks item")]

    (refused,) = w.retry("bill:BILL-1").items
    assert not refused.done and "still line 1: item SKU WID-220 has no QuickBooks item" in refused.message
    denied = w.retry("bill:BILL-1", identity=FINANCE)
    assert denied.status == "refused" and "retry needs the admin role" in denied.message

    assert w.map("item", "WID-220", "1", reason="same widget").ok
    (sent,) = w.retry("bill:BILL-1").items
    assert sent.done and "in QuickBooks as Id" in sent.message
    assert w.state("bill:BILL-1") == "synced"
    chain = record_chain(w.store, REALM, "bill:BILL-1")
    assert chain["external_id"] and len(chain["attempts"]) == 1 and chain["retry_count"] == 0
    assert chain["exception"] is None
    assert w.store.scalar("SELECT resolution FROM exceptions WHERE record_id = 'BILL-1'").startswith("auto: ")


def _company_with_bill_inv9() -> dict:
    company = tiny_company()
    company["objects"]["Vendor"].append(
        {"Id": "70", "SyncToken": "0", "DisplayName": "Acme Supplies", "Notes": "awra:vendor:VEN-1:v1", "Active": True}
    )
    company["objects"]["Bill"] = [
        {
            "Id": "500",
            "SyncToken": "0",
            "VendorRef": {"value": "70"},
            "DocNumber": "INV-9",
            "TxnDate": iso(3),
            "TotalAmt": 30.5,
            "Line": [
                {
                    "Amount": 30.5,
                    "DetailType": "AccountBasedExpenseLineDetail",
                    "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "3"}},
                }
            ],
        }
    ]
    return company


def test_an_existing_doc_number_is_linked_not_created(tmp_path: Path) -> None:
    w = World(tmp_path, company=_company_with_bill_inv9())
    w.cycle()
    chain = record_chain(w.store, REALM, "bill:BILL-1")
    assert chain["state"] == "blocked"
    assert [(c["qbo_id"], c["rule"]) for c in chain["duplicate_candidates"]] == [("500", "doc_number_exists")]
    before = len(w.sandbox.entities(REALM, "Bill"))

    assert w.commands.link(w.caller(FINANCE), "bill:BILL-1", "500", reason="same invoice").ok
    w.cycle()

    assert w.state("bill:BILL-1") == "synced"
    assert record_chain(w.store, REALM, "bill:BILL-1")["external_id"] == "500"
    assert len(w.sandbox.entities(REALM, "Bill")) == before  # nothing new was created


def test_create_new_despite_a_duplicate_doc_number_is_sent_with_qbo_allowing_it(tmp_path: Path) -> None:
    w = World(tmp_path, company=_company_with_bill_inv9())
    w.cycle()
    assert w.state("bill:BILL-1") == "blocked"
    assert w.commands.create_new(w.caller(FINANCE), "bill:BILL-1", reason="two invoices, same number").ok
    w.cycle()
    assert w.state("bill:BILL-1") == "synced"
    numbers = [b.get("DocNumber") for b in w.sandbox.entities(REALM, "Bill")]
    assert numbers.count("INV-9") == 2  # QBO's duplicate check was told to allow this one (ref §10)


FAULTS = [
    "timeout_before_commit",
    "timeout_after_commit",
    "http_500",
    "http_503_html",
    "throttle_429_xml",
    "auth_401",
    "connection_reset",
]


@pytest.mark.parametrize("kind", FAULTS)
def test_each_injected_fault_ends_classified_and_every_record_landsexactly_once(world: World, kind: str) -> None:
    world.sandbox.set_faults(f"{kind}@write=0.5", seed=11)  # writes: a faulted pull is another test
    world.drain()
    world.sandbox.set_faults(None)
    world.drain()
    exactly_once(world)
    outcomes = {r[0] for r in world.store.rows("SELECT outcome FROM sync_attempts")}
    assert outcomes <= {"accepted", "transport", "ambiguous", "throttled", "authorization"}
    left = world.store.rows("SELECT entity, record_id, state FROM records WHERE state NOT IN ('synced', 'not_ready')")
    assert left == []
    # every attempt is kept, and every failed one says what happened
    blanks = world.store.scalar("SELECT count(*) FROM sync_attempts WHERE outcome <> 'accepted' AND reason IS NULL")
    assert blanks == 0


def test_transport_failures_back_off_and_keep_their_retry_count(world: World) -> None:
    world.sandbox.set_faults("http_500@write=1.0", seed=1)
    world.cycle()
    rows = world.store.rows("SELECT retry_count, next_retry_at FROM sync_status WHERE record_id = 'VEN-1'")
    assert rows[0][0] == 1 and timedelta(seconds=47) < rows[0][1] - world.now < timedelta(seconds=73)
    assert world.state("vendor:VEN-1") == "retry_scheduled"
    assert world.cycle().sync.counts == {}  # not due yet: nothing is sent, no hammering
    for expected in (2, 3):
        world.now += timedelta(hours=1)
        world.cycle()
        assert world.store.scalar("SELECT retry_count FROM sync_status WHERE record_id = 'VEN-1'") == expected
    world.now += timedelta(hours=1)
    world.cycle()  # the schedule is used up: escalate to an admin with the evidence
    assert world.state("vendor:VEN-1") == "needs_fix"
    exc = world.store.rows("SELECT owner_role, evidence FROM exceptions WHERE record_id = 'VEN-1' AND status = 'open'")
    assert exc[0][0] == "admin" and exc[0][1].count("intuit_tid") == 4


def test_a_changed_source_record_updates_the_same_qbo_object_and_5010_recovers(world: World, tmp_path: Path) -> None:
    world.cycle()
    bill_id = record_chain(world.store, REALM, "bill:BILL-1")["external_id"]
    # A QuickBooks user edits the bill meanwhile: our SyncToken goes stale (5010 on the first try).
    world.sandbox.user_patch(REALM, "Bill", bill_id, {"Memo": "checked by AP"})
    snap = tiny_snapshot()
    snap["bill_lines"][1]["amount"] = "11.00"
    snap["bills"][0]["total"] = "31.50"
    ingest_snapshot(world.store, write_snapshot(tmp_path / "v2", snap), realm_id=REALM, now=world.now)
    world.cycle()
    chain = record_chain(world.store, REALM, "bill:BILL-1")
    assert chain["state"] == "synced" and chain["external_id"] == bill_id and chain["version"] == 2
    bills = [b for b in world.sandbox.entities(REALM, "Bill") if b["Id"] == bill_id]
    assert str(bills[0]["TotalAmt"]) in ("31.5", "31.50") and bills[0]["PrivateNote"].endswith(":v2")
    assert len([b for b in world.sandbox.entities(REALM, "Bill") if "BILL-1" in (b.get("PrivateNote") or "")]) == 1


def test_two_retries_of_one_record_at_once_send_it_once(world: World) -> None:
    import threading

    world.sandbox.set_faults("http_500@write=1.0", seed=3)
    world.cycle()
    world.sandbox.set_faults(None)
    answers = []

    def go() -> None:
        answers.extend(world.retry("vendor:VEN-1").items)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.done for a in answers) == [False, True]
    assert world.in_qbo()["Vendor"]["VEN-1"] == 1


@pytest.mark.parametrize("point", ["sync.after_intent", "sync.after_send"])
def test_a_process_killed_between_intent_and_outcome_loses_and_duplicates_nothing(tmp_path: Path, point: str) -> None:
    with start_in_thread(Sandbox(tiny_company())) as running:
        w = World(tmp_path, base_url=running.base_url, sandbox=running.sandbox)
        w.store.close()
        env = {
            **os.environ,
            "SYNCHEALTH_DB": str(w.settings.db_path),
            "SYNCHEALTH_QBO_BASE_URL": running.base_url,
            "SYNCHEALTH_SECRET_KEY": w.settings.secret_key,
            "SYNCHEALTH_CRASH_AT": point,
            "SYNCHEALTH_REALM_ID": REALM,
        }
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "--actor", ADMIN.email, "sync"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 70, proc.stderr  # died at the crash point
        w.store = Store(w.settings.db_path)
        unsettled = w.store.scalar("SELECT count(*) FROM sync_intents WHERE settled_at IS NULL")
        assert unsettled > 0
        w.drain()
        exactly_once(w)
        assert w.store.scalar("SELECT count(*) FROM sync_intents WHERE settled_at IS NULL") == 0
        w.store.close()
