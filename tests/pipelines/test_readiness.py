"""Readiness: every reason code has a record that triggers exactly it; mappings unblock exactly their records."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fixtures import BOOK_CLOSE, REALM, T0, iso, load_company, month, tiny_company, tiny_snapshot, write_snapshot
from world import ADMIN, FINANCE, caller_at, commands_on

from pipelines.ingest import ingest_snapshot
from pipelines.mappings import gap_inventory
from pipelines.readiness import run_check
from pipelines.store import Store

NOW = T0 + timedelta(hours=3)


def clean_snapshot() -> dict:
    snap = tiny_snapshot()
    snap["bills"][1].update(approval_status="approved", posting_status="posted")
    return snap


def _marker_vendor(record_id: str, name: str, qbo_id: str, active: bool = True) -> dict:
    return {
        "Id": qbo_id,
        "SyncToken": "0",
        "DisplayName": name,
        "Active": active,
        "Notes": f"awra:vendor:{record_id}:v1",
        "MetaData": {"LastUpdatedTime": f"{month(-10)}T00:00:00-08:00"},
    }


def _qbo_bill(qbo_id: str, vendor_qbo_id: str, doc: str, total: str, date: str) -> dict:
    return {
        "Id": qbo_id,
        "SyncToken": "0",
        "VendorRef": {"value": vendor_qbo_id},
        "DocNumber": doc,
        "TxnDate": date,
        "TotalAmt": total,
        "PrivateNote": "keyed in by hand",
        "Line": [
            {
                "Amount": total,
                "DetailType": "AccountBasedExpenseLineDetail",
                "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "3"}},
            }
        ],
    }


def _set(table: str, row: int, **values: str | None) -> Callable[[dict], None]:
    def change(snap: dict) -> None:
        snap[table][row].update(values)

    return change


def _deactivate(entity: str, qbo_id: str) -> Callable[[dict], None]:
    def change(company: dict) -> None:
        next(o for o in company["objects"][entity] if o["Id"] == qbo_id)["Active"] = False

    return change


def _add(entity: str, *objects: dict) -> Callable[[dict], None]:
    def change(company: dict) -> None:
        company["objects"].setdefault(entity, []).extend(objects)

    return change


def _both(*changes: Callable[[dict], None]) -> Callable[[dict], None]:
    def change(target: dict) -> None:
        for c in changes:
            c(target)

    return change


def _noop(_: dict) -> None:
    return None


# reason: (record key, change to the AWRA snapshot, change to the QBO company, words in the detail)
CASES: dict[str, tuple[str, Callable, Callable, str]] = {
    "source_data.not_approved": (
        "journal_entry:JE-1",
        _set("journal_entries", 0, approval_status="draft"),
        _noop,
        "draft",
    ),
    "source_data.incomplete": ("bill:BILL-2", _set("bills", 1, txn_date=None), _noop, "date is empty"),
    "source_data.invalid_name": ("customer:CUS-1", _set("customers", 0, name="North:wind"), _noop, "':'"),
    "source_data.inactive_in_awra": ("customer:CUS-1", _set("customers", 0, status="inactive"), _noop, "inactive"),
    "source_data.text_too_long": (
        "bill:BILL-2",
        _set("bills", 1, bill_number="B" * 22),
        _noop,
        "the bill number has 22 characters; QuickBooks takes at most 21 in DocNumber",
    ),
    "source_data.unknown_reference": ("bill:BILL-2", _set("bills", 1, vendor_id="VEN-404"), _noop, "VEN-404"),
    "source_data.line_amount_mismatch": (
        "purchase_order:PO-1",
        _both(_set("po_lines", 0, amount="21.00"), _set("purchase_orders", 0, total="21.00")),
        _noop,
        "line 1: 2 x 10 = 20.00, not 21.00",
    ),
    "source_data.lines_do_not_sum": (
        "bill:BILL-2",
        _set("bills", 1, total="6.00"),
        _noop,
        "5.00 but the total is 6.00",
    ),
    "source_data.unbalanced": ("journal_entry:JE-1", _set("journal_lines", 1, amount="12.00"), _noop, "differ by 0.34"),
    "source_data.not_posted": (
        "journal_entry:JE-1",
        _set("journal_entries", 0, posting_status="unposted"),
        _noop,
        "not posted",
    ),
    "source_data.void": ("journal_entry:JE-1", _set("journal_entries", 0, posting_status="void"), _noop, "void"),
    "source_data.closed_period": (
        "journal_entry:JE-1",
        _set("journal_entries", 0, txn_date=BOOK_CLOSE),
        _noop,
        f"closing date {BOOK_CLOSE}",
    ),
    "source_data.currency_mismatch": (
        "journal_entry:JE-1",
        _set("journal_entries", 0, currency="EUR"),
        _noop,
        "in EUR while QuickBooks keeps USD",
    ),
    "source_data.dependency_not_ready": (
        "payment:PAY-1",
        _set("invoices", 0, approval_status="draft"),
        _noop,
        "invoice INV-1 is not ready",
    ),
    "mapping.account_missing": (
        "journal_entry:JE-1",
        _set("journal_lines", 0, account_code="9999"),
        _noop,
        "line 1: account 9999 has no QuickBooks account",
    ),
    "mapping.account_stale": (
        "journal_entry:JE-1",
        _noop,
        _deactivate("Account", "3"),
        "'Cost of Goods', which is inactive",
    ),
    "mapping.tax_code_missing": ("invoice:INV-1", _set("invoice_lines", 0, tax_code="GST"), _noop, "tax code GST"),
    "mapping.item_missing": (
        "invoice:INV-1",
        _set("invoice_lines", 0, item_sku="GADGET-9"),
        _noop,
        "line 1: item SKU GADGET-9 has no QuickBooks item",
    ),
    "mapping.item_stale": ("invoice:INV-1", _noop, _deactivate("Item", "2"), "'Install', which is inactive"),
    "mapping.payment_method_missing": (
        "payment:PAY-1",
        _set("payments", 0, payment_method="Wire"),
        _noop,
        "payment method Wire",
    ),
    "mapping.class_missing": (
        "journal_entry:JE-1",
        _both(_set("journal_lines", 0, category="North"), _set("journal_lines", 1, category="North")),
        _noop,
        "category North has no QuickBooks class",
    ),
    "mapping.vendor_stale": (
        "bill:BILL-2",
        _noop,
        _add("Vendor", _marker_vendor("VEN-2", "Bolt & Nut Co", "70", False)),
        "inactive",
    ),
    "duplicate_risk.name_exists": (
        "vendor:VEN-2",
        _noop,
        _add("Customer", {"Id": "90", "SyncToken": "0", "DisplayName": "Bolt & Nut Co", "Active": True}),
        "Bolt & Nut Co",
    ),
    "duplicate_risk.doc_number_exists": (
        "bill:BILL-2",
        _noop,
        _both(
            _add("Vendor", _marker_vendor("VEN-2", "Bolt & Nut Co", "70")),
            _add("Bill", _qbo_bill("500", "70", "77", "99.00", iso(1, -5))),
        ),
        "500",
    ),
    "duplicate_risk.similar_transaction": (
        "bill:BILL-2",
        _noop,
        _both(
            _add("Vendor", _marker_vendor("VEN-2", "Bolt & Nut Co", "70")),
            _add("Bill", _qbo_bill("501", "70", "HAND-1", "5.00", iso(6))),
        ),
        "501",
    ),
}


# Where the case's record only shows the symptom, the record that carries the cause.
CAUSES = {"source_data.dependency_not_ready": ("source_data.not_approved",)}


def _checked(tmp_path: Path, snap_change: Callable = _noop, company_change: Callable = _noop) -> Store:
    snap = clean_snapshot()
    snap_change(snap)
    company = tiny_company()
    company_change(company)
    store = Store(tmp_path / "r.duckdb")
    ingest_snapshot(store, write_snapshot(tmp_path / "awra", snap), realm_id=REALM, now=T0)
    load_company(store, company)
    assert commands_on(store).check(caller_at(ADMIN, NOW)).ok  # the check command: findings, states, the queue
    return store


def _reasons(store: Store) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for entity, record_id, reason in store.rows(
        "SELECT entity, record_id, reason FROM findings WHERE run_id = (SELECT max(run_id) FROM check_runs)"
    ):
        out.setdefault(f"{entity}:{record_id}", set()).add(reason)
    return out


def test_the_clean_company_is_all_ready(tmp_path: Path) -> None:
    store = _checked(tmp_path)
    assert _reasons(store) == {}
    states = dict(store.rows("SELECT state, count(*) FROM records GROUP BY 1"))
    # items and accounts are mapped to QuickBooks objects, everything else waits to be sent
    assert states == {"ready": 10, "synced": 5}


@pytest.mark.parametrize("reason", sorted(CASES))
def test_each_reason_code_is_triggered_by_exactly_its_record(tmp_path: Path, reason: str) -> None:
    key, snap_change, company_change, words = CASES[reason]
    store = _checked(tmp_path, snap_change, company_change)
    found = _reasons(store)
    assert found.get(key) == {reason}, found
    detail = store.scalar(
        "SELECT detail FROM findings WHERE entity || ':' || record_id = ? AND reason = ?", [key, reason]
    )
    assert words in detail, detail
    # every other record is either clean or waiting on the record that carries the problem
    allowed = {"source_data.dependency_not_ready", reason, *CAUSES.get(reason, ())}
    for other, reasons in found.items():
        if other != key:
            assert reasons <= allowed, (other, reasons)
    expected = "not_ready" if reason.startswith("source_data") else "blocked"
    assert store.scalar("SELECT state FROM records WHERE entity || ':' || record_id = ?", [key]) == expected


def test_every_rule_and_mapping_kind_has_a_case() -> None:
    from pipelines.mappings import KINDS
    from schemas.readiness import RULES

    codes = {r.reason for r in RULES} | {f"mapping.{k}_missing" for k in KINDS} | {"mapping.account_stale"}
    assert codes - set(CASES) == set()


def test_accepting_a_mapping_unblocks_exactly_the_records_that_only_lacked_it(tmp_path: Path) -> None:
    def two_invoices_on_a_new_item(snap: dict) -> None:
        snap["invoice_lines"][0]["item_sku"] = "GADGET-9"
        second = dict(snap["invoices"][0], invoice_id="INV-2", invoice_number="1002", approval_status="draft")
        snap["invoices"].append(second)
        snap["invoice_lines"].append(dict(snap["invoice_lines"][0], invoice_id="INV-2"))

    store = _checked(tmp_path, two_invoices_on_a_new_item)
    gaps = gap_inventory(store, REALM)
    row = gaps.filter(gaps["awra_value"] == "GADGET-9").row(0, named=True)
    assert (row["kind"], row["records"], str(row["dollars"])) == ("item", 2, "300.00")

    assert commands_on(store).map(caller_at(ADMIN, NOW), "item", "GADGET-9", "1", reason="same widget").ok

    found = _reasons(store)
    assert "invoice:INV-1" not in found  # it only lacked the item: now ready
    assert found["invoice:INV-2"] == {"source_data.not_approved"}  # still not approved
    assert store.scalar("SELECT state FROM records WHERE record_id = 'INV-1'") == "ready"
    assert store.scalar("SELECT state FROM records WHERE record_id = 'PAY-1'") == "ready"
    audit = store.rows(
        "SELECT actor, role, action, target, reason FROM audit_log WHERE action <> 'check' ORDER BY audit_id"
    )
    assert audit[0] == ("admin@demo.local", "admin", "map", "item:GADGET-9", "same widget")
    # the exceptions that only waited on the item resolve on their own, and the log says why
    assert ("system", "system", "auto_resolve", "invoice:INV-1", "auto: the mapping is now in place") in audit
    open_now = store.rows("SELECT entity, record_id, reason FROM exceptions WHERE status = 'open' ORDER BY ALL")
    assert open_now == [("invoice", "INV-2", "source_data.not_approved")]


def test_mapping_needs_the_admin_role_and_an_active_qbo_object(tmp_path: Path) -> None:
    store = _checked(tmp_path, _noop, _deactivate("Item", "2"))
    commands = commands_on(store)
    finance = commands.map(caller_at(FINANCE, NOW), "item", "X", "1")
    assert finance.status == "refused" and "map needs the admin role" in finance.message
    missing = commands.map(caller_at(ADMIN, NOW), "item", "X", "404")
    assert missing.bad_input and "QuickBooks has no Item with Id 404" in missing.message
    assert "inactive" in commands.map(caller_at(ADMIN, NOW), "item", "X", "2").message
    assert store.scalar("SELECT count(*) FROM audit_log WHERE action = 'map'") == 0


def test_a_close_name_is_only_suggested_until_a_person_accepts(tmp_path: Path) -> None:
    store = _checked(tmp_path, _set("payments", 0, payment_method="CHECK."))
    row = store.rows("SELECT status, qbo_name, match_rule FROM mappings WHERE awra_value = 'CHECK.'")[0]
    assert row == ("suggested", "Check", "normalized_name")
    assert _reasons(store)["payment:PAY-1"] == {"mapping.payment_method_missing"}
    assert "suggested: 'Check'" in store.scalar("SELECT detail FROM findings WHERE record_id = 'PAY-1'")


def test_findings_are_kept_per_run_for_trends(tmp_path: Path) -> None:
    store = _checked(tmp_path, _set("journal_entries", 0, approval_status="draft"))
    run_check(store, REALM, now=NOW)
    per_run = store.rows("SELECT run_id, count(*) FROM findings GROUP BY 1 ORDER BY 1")
    assert per_run == [(1, 1), (2, 1)]


def test_accepting_suggestions_maps_them_and_rechecks_once(tmp_path: Path) -> None:
    store = _checked(tmp_path, _set("payments", 0, payment_method="CHECK."))
    runs_before = store.scalar("SELECT count(*) FROM check_runs")
    done = commands_on(store).accept_suggestions(caller_at(ADMIN, NOW), [("payment_method", "CHECK.")])
    assert (done.data["records_waiting"], done.data["now_ready"]) == (1, 1)
    assert store.rows("SELECT status, source, qbo_name FROM mappings WHERE awra_value = 'CHECK.'") == [
        ("mapped", "manual", "Check")
    ]
    assert store.scalar("SELECT count(*) FROM check_runs") == runs_before + 1
    (again,) = commands_on(store).accept_suggestions(caller_at(ADMIN, NOW), [("payment_method", "CHECK.")]).items
    assert again.status == "refused" and "no suggestion for payment_method CHECK." in again.message
