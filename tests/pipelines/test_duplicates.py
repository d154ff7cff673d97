"""Duplicate risk: name normalization, marker adoption, the three rules, decisions, the demo company."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
from fixtures import REALM, T0, day, iso, tiny_snapshot, write_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st
from world import ADMIN, FINANCE, VIEWER, caller_at, commands_on

from pipelines.demo.company import DOC_NUMBER_EXISTS, NAME_EXISTS, NEAR_DUPLICATE, write_demo
from pipelines.duplicates import (
    adopt_marked,
    duplicate_findings,
    find_candidates,
    normalize_name,
    normalize_name_sql,
)
from pipelines.identity import Identity
from pipelines.ingest import ingest_snapshot
from pipelines.pull import load_objects
from pipelines.store import Store

NOW = T0 + timedelta(hours=3)


def _link(store: Store, entity: str, record_id: str, qbo_id: str, who: Identity, reason: str, ok: bool = True):
    """A person links the record to a QuickBooks object (the link command, as the Record page does)."""
    done = commands_on(store).link(caller_at(who, NOW), f"{entity}:{record_id}", qbo_id, reason=reason)
    assert done.ok is ok, done.message
    return done


def _create(store: Store, entity: str, record_id: str, who: Identity, reason: str, ok: bool = True):
    """A person says none of the candidates is the record (the create-new command)."""
    done = commands_on(store).create_new(caller_at(who, NOW), f"{entity}:{record_id}", reason=reason)
    assert done.ok is ok, done.message
    return done


def _snapshot() -> dict[str, list[dict]]:
    """The shared tiny snapshot plus a customer whose name an (inactive) QuickBooks vendor has."""
    snap = tiny_snapshot()
    snap["customers"].append({**snap["customers"][0], "customer_id": "CUS-2", "name": "Delta Freight"})
    return snap


def _qbo() -> dict[str, list[dict]]:
    """The QuickBooks company behind _snapshot(): what is ours (marker), look-alikes, and noise."""
    return {
        "Vendor": [
            {"Id": "1", "SyncToken": "3", "DisplayName": "Acme Supplies", "Active": True,
             "Notes": "awra:vendor:VEN-1:v1"},
            {"Id": "9", "SyncToken": "0", "DisplayName": "Bolt and Nut", "Active": True},
            {"Id": "8", "SyncToken": "0", "DisplayName": "Delta Freight", "Active": False},
        ],
        "Customer": [
            {"Id": "2", "SyncToken": "1", "DisplayName": "Northwind", "Active": True,
             "Notes": "awra:customer:CUS-1:v1"},
            # Another entity's marker on a customer: never adopted as that vendor.
            {"Id": "4", "SyncToken": "0", "DisplayName": "Zephyr Labs", "Active": True,
             "Notes": "awra:vendor:VEN-2:v1"},
        ],
        "Employee": [{"Id": "3", "SyncToken": "0", "DisplayName": "Dana Whitaker", "Active": True}],
        "Bill": [
            # Same number and vendor, keyed by hand months ago: BILL-1's doc_number_exists.
            {"Id": "100", "SyncToken": "2", "DocNumber": "INV-9", "VendorRef": {"value": "1"},
             "TxnDate": iso(1, -3), "TotalAmt": "999.00"},
            # Same number, amount and date, but deleted (below) or another record's (marker): not candidates.
            {"Id": "101", "SyncToken": "0", "DocNumber": "INV-9", "VendorRef": {"value": "1"},
             "TxnDate": iso(3), "TotalAmt": "30.50"},
            {"Id": "102", "SyncToken": "0", "DocNumber": "INV-9", "VendorRef": {"value": "1"},
             "TxnDate": iso(3), "TotalAmt": "30.50", "PrivateNote": "awra:bill:BILL-77:v1"},
            # BILL-2's vendor is not mapped: its number is found through the vendor's normalized name.
            {"Id": "103", "SyncToken": "0", "DocNumber": "77", "VendorRef": {"value": "9"},
             "TxnDate": iso(1, -5), "TotalAmt": "1.00"},
        ],
        "Invoice": [
            # INV-1's amount for the same customer, two days later, another number: similar_transaction.
            {"Id": "200", "SyncToken": "0", "DocNumber": "X-1", "CustomerRef": {"value": "2"},
             "TxnDate": iso(7), "TotalAmt": "150.00"},
        ],
        "Payment": [
            {"Id": "300", "SyncToken": "5", "CustomerRef": {"value": "2"}, "TxnDate": iso(6),
             "TotalAmt": "150.00", "PrivateNote": "Deposit awra:payment:PAY-1:v1"},
        ],
        "BillPayment": [
            # BP-1's amount and vendor, but 13 days later: outside the default window.
            {"Id": "400", "SyncToken": "0", "VendorRef": {"value": "1"}, "TxnDate": iso(20),
             "TotalAmt": "30.50"},
        ],
        "PurchaseOrder": [
            {"Id": "500", "SyncToken": "0", "DocNumber": "PO-2", "VendorRef": {"value": "1"},
             "TxnDate": iso(1, -1), "TotalAmt": "20.00"},
        ],
        "JournalEntry": [
            {"Id": "600", "SyncToken": "0", "DocNumber": "JE-1", "TxnDate": iso(8), "TotalAmt": "12.34"},
        ],
    }  # fmt: skip


EXPECTED = {
    ("vendor", "VEN-2"): ("Vendor", "9", "name_exists", 0.9),
    ("customer", "CUS-2"): ("Vendor", "8", "name_exists", 1.0),
    ("bill", "BILL-1"): ("Bill", "100", "doc_number_exists", 1.0),
    ("bill", "BILL-2"): ("Bill", "103", "doc_number_exists", 1.0),
    ("invoice", "INV-1"): ("Invoice", "200", "similar_transaction", 0.78),
}


def _load_qbo(store: Store, realm_id: str, objects: dict[str, list[dict]]) -> None:
    for entity, rows in objects.items():
        load_objects(store, realm_id, entity, rows, NOW)


@pytest.fixture
def company(store: Store, tmp_path: Path) -> Store:
    """A store holding _snapshot() and _qbo(), with Bill 101 deleted in QuickBooks since."""
    ingest_snapshot(store, write_snapshot(tmp_path / "awra", _snapshot()), realm_id=REALM, now=NOW)
    _load_qbo(store, REALM, _qbo())
    load_objects(store, REALM, "Bill", [{"Id": "101", "status": "Deleted"}], NOW)
    return store


@pytest.fixture
def adopted(company: Store) -> Store:
    adopt_marked(company, REALM, now=NOW)
    return company


def _found(frame: pl.DataFrame) -> dict[tuple[str, str], tuple[str, str, str, float]]:
    return {
        (r["entity"], r["record_id"]): (r["qbo_entity"], r["qbo_id"], r["rule"], r["score"])
        for r in frame.iter_rows(named=True)
    }


# -- normalization ---------------------------------------------------------------------------------------
_SQL = duckdb.connect()
_NORMALIZE = f"SELECT {normalize_name_sql('$name')}"


def _sql_normalize(text: str) -> str:
    return _SQL.execute(_NORMALIZE, {"name": text}).fetchall()[0][0]


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("Acme Supplies, Inc.", "acme supplies"),
        ("ACME   supplies LLC", "acme supplies"),
        ("Bolt & Nut Co", "bolt and nut"),
        ("Smith & Co.", "smith"),
        ("  O'Brien  Holdings L.L.C. ", "obrien holdings"),
        ("Harbor Pipe Corp Ltd", "harbor pipe"),
        ("Company", "company"),
        ("Café Müller – ÉTÉ GmbH", "café müller été gmbh"),
        ("...", ""),
    ],
)
def test_normalize_name_examples(name: str, normalized: str) -> None:
    assert normalize_name(name) == normalized
    assert _sql_normalize(name) == normalized


_NAMEISH = st.lists(
    st.sampled_from(
        ["Acme", "inc", "Inc.", "LLC", "l.l.c.", "co", "Co.", "Company", "corp", "&", "and", " ", "  ", ",",
         "'", "’", "-", "—", "\u00a0", "É", "İ", "ß", "Σ", "\t", "\n", "x"]
    ),
    max_size=12,
).map("".join)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), _NAMEISH))
def test_python_and_sql_normalization_agree(text: str) -> None:
    assert _sql_normalize(text) == normalize_name(text)


# -- marker adoption -------------------------------------------------------------------------------------
def test_adopt_marked_links_exactly_the_marked_records_and_is_idempotent(company: Store) -> None:
    assert adopt_marked(company, REALM, now=NOW) == 3
    refs = company.frame(
        "SELECT entity, record_id, qbo_entity, qbo_id, sync_token, synced_version, linked_by "
        "FROM external_refs ORDER BY entity"
    )
    assert refs.rows() == [
        ("customer", "CUS-1", "Customer", "2", "1", 1, "marker"),
        ("payment", "PAY-1", "Payment", "300", "5", 1, "marker"),
        ("vendor", "VEN-1", "Vendor", "1", "3", 1, "marker"),
    ]
    maps = company.frame(
        "SELECT kind, awra_value, qbo_entity, qbo_id, qbo_name, source, status, match_rule, confidence "
        "FROM mappings ORDER BY kind"
    )
    assert maps.rows() == [
        ("customer", "CUS-1", "Customer", "2", "Northwind", "auto", "mapped", "marker", 1.0),
        ("vendor", "VEN-1", "Vendor", "1", "Acme Supplies", "auto", "mapped", "marker", 1.0),
    ]
    assert adopt_marked(company, REALM, now=NOW) == 0
    assert company.scalar("SELECT count(*) FROM external_refs") == 3
    assert company.scalar("SELECT count(*) FROM mappings") == 2


def test_adopt_marked_maps_an_inactive_object_as_stale_and_skips_deleted(company: Store) -> None:
    _load_qbo(company, REALM, {"Vendor": [{**_qbo()["Vendor"][0], "Active": False}]})
    load_objects(company, REALM, "Payment", [{"Id": "300", "status": "Deleted"}], NOW)
    assert adopt_marked(company, REALM, now=NOW) == 2
    assert company.scalar("SELECT status FROM mappings WHERE awra_value = 'VEN-1'") == "stale"
    assert company.scalar("SELECT count(*) FROM external_refs WHERE entity = 'payment'") == 0


def test_adopt_marked_keeps_a_persons_mapping(company: Store) -> None:
    company.execute(
        "INSERT INTO mappings VALUES (?, 'vendor', 'VEN-1', 'Vendor', '9', 'Bolt and Nut', 'manual', 'mapped', "
        "1.0, 'person', 'admin@demo.local', ?)",
        [REALM, NOW],
    )
    adopt_marked(company, REALM, now=NOW)
    assert company.rows("SELECT qbo_id, source FROM mappings WHERE awra_value = 'VEN-1'") == [("9", "manual")]
    assert company.scalar("SELECT qbo_id FROM external_refs WHERE record_id = 'VEN-1'") == "1"


def test_adopt_marked_takes_the_newest_of_two_objects_with_one_marker(company: Store) -> None:
    again = {"Id": "301", "SyncToken": "0", "CustomerRef": {"value": "2"}, "TxnDate": iso(6),
             "TotalAmt": "150.00", "PrivateNote": "awra:payment:PAY-1:v2"}  # fmt: skip
    _load_qbo(company, REALM, {"Payment": [again]})
    adopt_marked(company, REALM, now=NOW)
    assert company.rows("SELECT qbo_id, synced_version FROM external_refs WHERE entity = 'payment'") == [("301", 2)]


# -- the rules -------------------------------------------------------------------------------------------
def test_each_rule_finds_exactly_its_seeded_case(adopted: Store) -> None:
    found = find_candidates(adopted, REALM, run_id=1)
    assert _found(found) == EXPECTED
    assert found.height == len(EXPECTED)  # one row per record and QuickBooks object
    stored = adopted.frame("SELECT * FROM duplicate_candidates ORDER BY entity, record_id")
    assert stored.height == len(EXPECTED) and set(stored["run_id"]) == {1}
    # What was written is what was returned, less the record's amount and date (not table columns).
    assert found.drop("amount", "txn_date").sort("entity", "record_id").equals(stored)
    reasons = dict(zip(found["record_id"], found["reasons"], strict=True))
    assert "QuickBooks vendor 'Delta Freight' (Id 8, inactive) has this name" in reasons["CUS-2"]
    assert "refuses a second customer with it (6240)" in reasons["CUS-2"]
    assert "'Bolt and Nut' (Id 9) has the same name once case, punctuation" in reasons["VEN-2"]
    assert "QuickBooks bill Id 100 has number INV-9 for the same vendor (Acme Supplies)" in reasons["BILL-1"]
    assert f"same amount 150.00, dated {iso(7)} (2 days later)" in reasons["INV-1"]
    inv = found.filter(pl.col("record_id") == "INV-1").row(0, named=True)
    assert inv["amount"] == Decimal("150.00") and inv["txn_date"] == day(5)


def test_rerunning_a_run_replaces_its_rows(adopted: Store) -> None:
    find_candidates(adopted, REALM, run_id=7)
    find_candidates(adopted, REALM, run_id=7)
    assert adopted.scalar("SELECT count(*) FROM duplicate_candidates WHERE run_id = 7") == len(EXPECTED)


def test_the_date_window_is_a_parameter(adopted: Store) -> None:
    wide = _found(find_candidates(adopted, REALM, run_id=1, window_days=13))
    assert wide[("bill_payment", "BP-1")] == ("BillPayment", "400", "similar_transaction", 0.6)
    narrow = _found(find_candidates(adopted, REALM, run_id=2, window_days=1))
    assert ("invoice", "INV-1") not in narrow
    with pytest.raises(ValueError, match="window_days"):
        find_candidates(adopted, REALM, run_id=3, window_days=-1)


def test_unlinked_parties_and_other_realms_are_left_alone(company: Store) -> None:
    # Before adoption the marked records are candidates of nothing but their own objects, which the rules
    # skip; records of another company never meet this company's objects.
    before = _found(find_candidates(company, REALM, run_id=1))
    assert ("vendor", "VEN-1") not in before and ("customer", "CUS-1") not in before
    assert find_candidates(company, "another-realm", run_id=2).is_empty()


def test_a_doc_number_and_amount_match_on_one_object_is_one_candidate(adopted: Store) -> None:
    twin = {"Id": "104", "SyncToken": "0", "DocNumber": "inv-9 ", "VendorRef": {"value": "1"},
            "TxnDate": iso(4), "TotalAmt": "30.50"}  # fmt: skip
    _load_qbo(adopted, REALM, {"Bill": [twin]})
    rows = find_candidates(adopted, REALM, run_id=1).filter(pl.col("qbo_id") == "104")
    assert rows.height == 1
    row = rows.row(0, named=True)
    assert (row["rule"], row["score"]) == ("doc_number_exists", 1.0)
    assert "has number inv-9" in row["reasons"] and "same amount 30.50" in row["reasons"]


# -- findings --------------------------------------------------------------------------------------------
def test_duplicate_findings_one_per_record_with_a_next_step(adopted: Store) -> None:
    extra = {"Id": "201", "SyncToken": "0", "DocNumber": "X-2", "CustomerRef": {"value": "2"},
             "TxnDate": iso(5), "TotalAmt": "150.00"}  # fmt: skip
    _load_qbo(adopted, REALM, {"Invoice": [extra]})
    findings = duplicate_findings(find_candidates(adopted, REALM, run_id=1))
    assert findings.columns == [
        "entity", "record_id", "version", "check_name", "dimension", "reason", "detail", "mapping_kind",
        "mapping_value", "amount", "txn_date",
    ]  # fmt: skip
    assert findings.height == len(EXPECTED)
    assert set(findings["check_name"]) == {"no_duplicate"} and set(findings["dimension"]) == {"duplicate_risk"}
    by_record = {r["record_id"]: r for r in findings.iter_rows(named=True)}
    assert by_record["BILL-1"]["reason"] == "duplicate_risk.doc_number_exists"
    assert by_record["VEN-2"]["reason"] == "duplicate_risk.name_exists"
    assert by_record["VEN-2"]["amount"] is None and by_record["VEN-2"]["txn_date"] is None
    assert "Open QuickBooks vendor Id 9: if it is this record, link it" in by_record["VEN-2"]["detail"]
    # A customer cannot become a QuickBooks vendor, and an exact clash is refused: the fix is a new name.
    assert (
        "A customer cannot be linked to a QuickBooks vendor, and QuickBooks refuses the name while Id 8 has it"
        in (by_record["CUS-2"]["detail"])
    )
    inv = by_record["INV-1"]
    assert inv["reason"] == "duplicate_risk.similar_transaction"
    # The same-day object (201) beats the one two days later (200).
    assert "Open QuickBooks invoice Id 201: if it is this record, link it" in inv["detail"]
    assert "confirm 'create new' with a reason" in inv["detail"] and "1 more possible match" in inv["detail"]
    assert inv["amount"] == Decimal("150.00") and inv["txn_date"] == day(5)


def test_duplicate_findings_of_nothing_is_an_empty_frame(adopted: Store) -> None:
    empty = find_candidates(adopted, "another-realm", run_id=1)
    assert duplicate_findings(empty).is_empty()


# -- decisions -------------------------------------------------------------------------------------------
def test_link_records_the_decision_and_suppresses_the_candidate(adopted: Store) -> None:
    _link(adopted, "bill", "BILL-1", "100", FINANCE, "same invoice")
    assert adopted.rows(
        "SELECT qbo_entity, qbo_id, sync_token, synced_version, linked_by, actor FROM external_refs "
        "WHERE record_id = 'BILL-1'"
    ) == [("Bill", "100", "2", 1, "person", "finance@demo.local")]
    assert adopted.rows(
        "SELECT version, decision, qbo_id, actor, reason FROM duplicate_decisions WHERE record_id = 'BILL-1'"
    ) == [(1, "link", "100", "finance@demo.local", "same invoice")]
    audit = adopted.frame("SELECT * FROM audit_log").row(0, named=True)
    assert (audit["actor"], audit["role"], audit["action"], audit["target"], audit["reason"]) == (
        "finance@demo.local", "finance", "link_duplicate", "bill:BILL-1", "same invoice",
    )  # fmt: skip
    assert json.loads(audit["before_json"])["external_ref"] is None
    assert json.loads(audit["after_json"])["external_ref"]["qbo_id"] == "100"
    assert ("bill", "BILL-1") not in _found(find_candidates(adopted, REALM, run_id=2))


def test_linking_a_vendor_maps_it(adopted: Store) -> None:
    _link(adopted, "vendor", "VEN-2", "9", FINANCE, "same firm")
    assert adopted.rows(
        "SELECT qbo_entity, qbo_id, qbo_name, source, status, match_rule, set_by FROM mappings "
        "WHERE awra_value = 'VEN-2'"
    ) == [("Vendor", "9", "Bolt and Nut", "manual", "mapped", "person", "finance@demo.local")]
    after = _found(find_candidates(adopted, REALM, run_id=2))
    assert ("vendor", "VEN-2") not in after
    # BILL-2 is now matched through the mapping rather than the name: still the same object.
    assert after[("bill", "BILL-2")] == ("Bill", "103", "doc_number_exists", 1.0)


@pytest.mark.parametrize(
    ("entity", "record_id", "qbo_id", "message"),
    [
        ("bill", "BILL-1", "999", "QuickBooks has no bill with Id 999"),
        ("bill", "BILL-1", "101", "QuickBooks bill Id 101 is deleted"),
        ("bill", "BILL-1", "102", "created by this sync for another record"),
        ("customer", "CUS-2", "8", "QuickBooks has no customer with Id 8 .Id 8 is a QuickBooks vendor"),
        ("bill", "BILL-404", "100", "bill:BILL-404 is not a live AWRA record"),
    ],
)
def test_link_is_refused_for_what_it_cannot_be(
    adopted: Store, entity: str, record_id: str, qbo_id: str, message: str
) -> None:
    refused = _link(adopted, entity, record_id, qbo_id, FINANCE, "x", ok=False)
    assert refused.status == "refused" and re.search(message, refused.message), refused.message
    assert adopted.scalar("SELECT count(*) FROM duplicate_decisions") == 0
    assert adopted.scalar("SELECT count(*) FROM audit_log") == 0
    assert adopted.scalar("SELECT count(*) FROM external_refs WHERE linked_by = 'person'") == 0


def test_an_object_already_linked_cannot_be_linked_to_a_second_record(adopted: Store) -> None:
    _link(adopted, "bill", "BILL-1", "103", FINANCE, "typo")
    assert "already linked to bill:BILL-1" in _link(adopted, "bill", "BILL-2", "103", FINANCE, "x", ok=False).message
    taken = _link(adopted, "bill", "BILL-1", "100", FINANCE, "x", ok=False)
    assert "already linked to QuickBooks bill Id 103" in taken.message


def test_create_new_is_per_version_and_audited(adopted: Store, tmp_path: Path) -> None:
    _create(adopted, "invoice", "INV-1", FINANCE, "a second visit, billed apart")
    assert adopted.rows("SELECT version, decision, reason FROM duplicate_decisions") == [
        (1, "create_new", "a second visit, billed apart")
    ]
    assert adopted.rows("SELECT action, target, role FROM audit_log") == [
        ("create_despite_duplicate", "invoice:INV-1", "finance")
    ]
    assert ("invoice", "INV-1") not in _found(find_candidates(adopted, REALM, run_id=1))
    # A new version of the record is checked again: the decision was about version 1.
    snap = _snapshot()
    snap["invoices"][0]["due_date"] = iso(20, 1)
    ingest_snapshot(adopted, write_snapshot(tmp_path / "awra2", snap), realm_id=REALM, now=NOW)
    again = find_candidates(adopted, REALM, run_id=2)
    assert _found(again)[("invoice", "INV-1")] == EXPECTED[("invoice", "INV-1")]
    assert again.filter(pl.col("record_id") == "INV-1")["version"].to_list() == [2]


def test_create_new_needs_a_reason_and_an_unlinked_record(adopted: Store) -> None:
    assert "needs a reason" in _create(adopted, "invoice", "INV-1", FINANCE, "  ", ok=False).message
    linked = _create(adopted, "vendor", "VEN-1", FINANCE, "new", ok=False)
    assert "already linked to QuickBooks vendor Id 1" in linked.message
    assert adopted.scalar("SELECT count(*) FROM audit_log") == 0


def test_decisions_need_the_finance_or_admin_role(adopted: Store) -> None:
    assert "needs the finance or admin role" in _link(adopted, "bill", "BILL-1", "100", VIEWER, "x", ok=False).message
    assert "needs the finance or admin role" in _create(adopted, "bill", "BILL-1", VIEWER, "x", ok=False).message
    assert adopted.scalar("SELECT count(*) FROM duplicate_decisions") == 0
    assert adopted.scalar("SELECT count(*) FROM audit_log") == 0
    _link(adopted, "bill", "BILL-1", "100", ADMIN, "same")


# -- the demo company ------------------------------------------------------------------------------------
_SEEDED = {NAME_EXISTS: "name_exists", DOC_NUMBER_EXISTS: "doc_number_exists", NEAR_DUPLICATE: "similar_transaction"}


def test_demo_company_every_seeded_duplicate_found_and_no_clean_record_flagged(store: Store, tmp_path: Path) -> None:
    summary = write_demo(tmp_path / "demo", seed=7, scale=3000, as_of=T0.date())
    company = json.loads(summary.company_file.read_text(encoding="utf-8"))
    realm_id = company["realm_id"]
    _load_qbo(store, realm_id, company["objects"])
    ingest_snapshot(store, summary.snapshot_dir, realm_id=realm_id, now=NOW)
    assert adopt_marked(store, realm_id, now=NOW) == sum(summary.presynced.values())
    found = find_candidates(store, realm_id, run_id=1)
    rules = {f"{r['entity']}:{r['record_id']}": r["reason"] for r in duplicate_findings(found).rows(named=True)}
    rules = {key: reason.removeprefix("duplicate_risk.") for key, reason in rules.items()}
    seeded = {key: rule for problem, rule in _SEEDED.items() for key in summary.problems[problem]}
    assert seeded and all(summary.problems[p] for p in _SEEDED)
    missed = {k: v for k, v in seeded.items() if rules.get(k) != v}
    assert not missed, f"seeded duplicates not found with their rule: {missed}"
    false_positives = {k: v for k, v in rules.items() if k not in seeded}
    assert not false_positives, f"records the demo did not seed as duplicates: {false_positives}"
