"""An incremental check gives exactly the findings and states a full check gives, whatever happened in between.

After every step of a random sequence (snapshot changes, mappings, QuickBooks edits, a moved closing date, sends,
people's decisions) the incremental check runs on the store; a copy of the store is then checked in full, and the
two must agree finding for finding and state for state.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from fixtures import REALM, iso, last_day, tiny_company, tiny_snapshot
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from world import ADMIN, FINANCE, World

from pipelines.mappings import set_mapping
from pipelines.readiness import run_check
from pipelines.store import Store

FINDING = "entity, record_id, version, check_name, reason, detail"


def _snapshot(w: World) -> dict:
    snap = getattr(w, "snap", None)
    if snap is None:
        snap = tiny_snapshot()
        snap["bill_lines"][0]["item_sku"] = "WID-220"  # BILL-1 waits on a mapping at first
        w.snap = snap  # type: ignore[attr-defined]
    return snap


def _ingest(w: World) -> None:
    w.ingest(_snapshot(w))


def approve_bill_2(w: World) -> None:
    _snapshot(w)["bills"][1].update(approval_status="approved", posting_status="posted")
    _ingest(w)


def unapprove_invoice(w: World) -> None:
    _snapshot(w)["invoices"][0]["approval_status"] = "pending"
    _ingest(w)


def break_a_line_amount(w: World) -> None:
    _snapshot(w)["invoice_lines"][0]["amount"] = "149.00"  # qty x unit price no longer equals the amount
    _ingest(w)


def add_a_bill(w: World) -> None:
    snap = _snapshot(w)
    n = len(snap["bills"]) + 1
    bill = {**snap["bills"][0], "bill_id": f"BILL-{n}", "bill_number": f"NEW-{n}", "total": "10.00"}
    snap["bills"].append(bill)
    snap["bill_lines"].append({**snap["bill_lines"][1], "bill_id": f"BILL-{n}", "amount": "10.00", "line_no": "1"})
    _ingest(w)


def move_vendor_of_bill_1(w: World) -> None:
    _snapshot(w)["bills"][0]["vendor_id"] = "VEN-2"
    _ingest(w)


def map_the_item(w: World) -> None:
    with w.store.transaction() as tx:
        set_mapping(tx, REALM, "item", "WID-220", "1", actor=ADMIN.email, reason="same widget", now=w.now)


def deactivate_an_account_in_quickbooks(w: World) -> None:
    w.sandbox.user_patch(REALM, "Account", "2", {"Active": False})
    w.pull()


def reactivate_it(w: World) -> None:
    w.sandbox.user_patch(REALM, "Account", "2", {"Active": True})
    w.pull()


def a_bill_with_the_same_number_in_quickbooks(w: World) -> None:
    line = {"Amount": 5, "DetailType": "AccountBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "3"}}}  # fmt: skip
    w.sandbox.user_create(
        REALM, "Bill", {"VendorRef": {"value": "1"}, "DocNumber": "BILL-1-NO", "TxnDate": iso(3), "Line": [line]}
    )
    w.pull()


def a_class_north_in_quickbooks(w: World) -> None:
    w.sandbox.user_create(REALM, "Class", {"Name": "North", "Active": True})
    w.pull()
    w.advance(minutes=1)  # the check after it starts later: the next one sees no QuickBooks class change


def a_bill_line_in_class_north(w: World) -> None:
    # A value no record used before: only this record's change brings it to the automatic matching.
    _snapshot(w)["bill_lines"][-1]["category"] = "North"
    _ingest(w)


def move_the_closing_date(w: World) -> None:
    w.sandbox.user_patch(REALM, "Preferences", "1", {"AccountingInfoPrefs": {"BookCloseDate": last_day().isoformat()}})
    w.pull()


def sync(w: World) -> None:
    w.cycle()


def delete_a_synced_bill_in_quickbooks(w: World) -> None:
    linked = w.store.rows(
        "SELECT x.qbo_id FROM external_refs x JOIN qbo_objects o ON o.entity = x.qbo_entity AND o.qbo_id = x.qbo_id "
        "WHERE x.entity = 'bill' AND NOT o.deleted LIMIT 1"
    )
    if linked:
        w.sandbox.user_delete(REALM, "Bill", linked[0][0])
        w.pull()


def exclude_bill_2(w: World) -> None:
    w.commands.exclude(w.caller(FINANCE), ["bill:BILL-2"], reason="a test bill")


def link_inv_1_to_nothing_new(w: World) -> None:
    w.commands.create_new(w.caller(FINANCE), "invoice:INV-1", reason="a different invoice")


STEPS: list[Callable[[World], None]] = [
    approve_bill_2, unapprove_invoice, break_a_line_amount, add_a_bill, move_vendor_of_bill_1, map_the_item,
    deactivate_an_account_in_quickbooks, reactivate_it, a_bill_with_the_same_number_in_quickbooks,
    a_class_north_in_quickbooks, a_bill_line_in_class_north, move_the_closing_date, sync,
    delete_a_synced_bill_in_quickbooks, exclude_bill_2, link_inv_1_to_nothing_new,
]  # fmt: skip


def _seen(store: Store, run_id: int) -> tuple[set, set]:
    findings = set(store.rows(f"SELECT {FINDING} FROM findings WHERE run_id = ?", [run_id]))
    states = set(store.rows("SELECT entity, record_id, state FROM records WHERE removed_at IS NULL"))
    return findings, states


def _full_on_a_copy(w: World, tmp: Path) -> tuple[set, set]:
    w.store.execute("CHECKPOINT")
    copy = tmp / f"copy-{w.snapshots}-{w.now.timestamp()}.duckdb"
    shutil.copyfile(w.settings.db_path, copy)
    with Store(copy) as other:
        result = run_check(other, REALM, now=w.now, full=True)
        assert result.kind == "full"
        return _seen(other, result.run_id)


def _agrees_after(w: World, step, full_check) -> None:
    """One step, then an incremental check: its findings and states must be what `full_check` finds."""
    w.advance(minutes=7)
    step(w)
    result = run_check(w.store, REALM, now=w.now)
    # A new closing date changes what the rules see for every record: that check is full, by design.
    assert result.kind == "incremental" or step is move_the_closing_date, step.__name__
    incremental = _seen(w.store, result.run_id)
    full = full_check()
    assert incremental[0] == full[0], (step.__name__, incremental[0] ^ full[0])
    assert incremental[1] == full[1], (step.__name__, incremental[1] ^ full[1])


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.sampled_from(STEPS), min_size=3, max_size=6))
# Every step at least once, in an order where each meets a store the others changed.
@example(steps=STEPS)
def test_the_incremental_check_agrees_with_a_full_one_after_any_sequence(tmp_path_factory, steps) -> None:
    tmp = tmp_path_factory.mktemp("incremental")
    w = World(tmp, company=tiny_company())
    try:
        w.cycle()  # the first check is full; every check after it here is incremental
        for step in steps:
            _agrees_after(w, step, lambda: _full_on_a_copy(w, tmp))
    finally:
        w.close()


def test_an_incremental_check_rechecks_only_what_changed(tmp_path: Path) -> None:
    snap = tiny_snapshot()
    w = World(tmp_path, snap)
    w.cycle()  # checks, then sends: the sends are changes the next check takes in
    w.advance(minutes=5)
    after_the_sends = run_check(w.store, REALM, now=w.now)
    assert after_the_sends.kind == "incremental" and after_the_sends.checked > 0
    w.advance(minutes=5)
    quiet = run_check(w.store, REALM, now=w.now)
    assert quiet.kind == "incremental" and quiet.checked == 0  # nothing changed since: nothing re-checked
    snap["bills"][1]["approval_status"] = "approved"
    w.advance(minutes=5)
    w.ingest(snap)
    one = run_check(w.store, REALM, now=w.now)
    assert one.kind == "incremental" and 1 <= one.checked <= 3  # the bill, and what pays it
    assert run_check(w.store, REALM, now=w.now + timedelta(minutes=1), full=True).kind == "full"
    w.close()


def test_what_a_check_wrote_itself_is_not_taken_again(tmp_path: Path) -> None:
    # VEN-1 is already in QuickBooks with our marker: the first check links it and maps it, and maps the company's
    # reference values automatically, all stamped with that check's own start.
    company = tiny_company()
    company["objects"]["Vendor"] = [
        {"Id": "50", "SyncToken": "0", "DisplayName": "Acme Supplies", "Active": True, "Notes": "awra:vendor:VEN-1:v1"}
    ]
    w = World(tmp_path, company=company)
    w.advance(minutes=1)
    w.pull()
    w.advance(minutes=1)
    first = run_check(w.store, REALM, now=w.now)
    links, mapped = w.store.rows(
        "SELECT (SELECT count(*) FROM external_refs WHERE linked_by = 'marker' AND linked_at = $at), "
        "(SELECT count(*) FROM mappings WHERE source = 'auto' AND set_at = $at)",
        {"at": w.now},
    )[0]
    assert first.kind == "full" and links == 1 and mapped > 0
    w.advance(minutes=5)
    quiet = run_check(w.store, REALM, now=w.now)
    assert quiet.kind == "incremental" and quiet.checked == 0  # that check saw what it wrote
    # A person's mapping stamped with the very moment the last check started is a change all the same.
    assert w.map("vendor", "VEN-2", "50").status == "done"
    after = run_check(w.store, REALM, now=w.now + timedelta(minutes=1))
    assert after.kind == "incremental" and after.checked >= 1
    w.close()


def test_on_postgresql_the_incremental_check_agrees_with_a_full_one(tmp_path: Path, pg_url: str) -> None:
    # The fleet's store runs the same queries, translated: after each step, the incremental check and a full one
    # run right after it on the same store must agree.
    w = World(tmp_path, company=tiny_company(), database_url=pg_url)
    try:
        w.cycle()
        for step in STEPS:
            _agrees_after(w, step, lambda: _seen(w.store, run_check(w.store, REALM, now=w.now, full=True).run_id))
    finally:
        w.close()
