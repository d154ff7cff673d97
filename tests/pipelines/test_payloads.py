"""Payloads: every ready record's body is accepted by the sandbox, money stays exact, gaps are problems."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from cryptography.fernet import Fernet
from fixtures import REALM, T0, iso, load_company, tiny_company, tiny_snapshot, write_snapshot
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipelines.config import Settings
from pipelines.connection import connect, qbo_client
from pipelines.identity import Identity
from pipelines.ingest import ingest_snapshot
from pipelines.mappings import set_mapping
from pipelines.payloads import PAYLOAD_COLUMNS, build_payloads
from pipelines.pull import load_objects, pull
from pipelines.readiness import run_check
from pipelines.store import Store
from qbo.client import QboClient
from qbo.sandbox import Sandbox

NOW = T0 + timedelta(hours=3)
ADMIN = Identity("admin@demo.local", "admin")
# The order the sync engine sends in: each phase needs the one before it in QuickBooks.
PHASES = (("vendor", "customer"), ("purchase_order", "bill", "invoice"), ("payment", "bill_payment", "journal_entry"))


@dataclass
class World:
    store: Store
    sandbox: Sandbox
    client: QboClient
    folder: Path
    ingests: int = 0

    def ingest(self, snapshot: dict) -> None:
        self.ingests += 1
        folder = write_snapshot(self.folder / f"awra-{self.ingests}", snapshot, fmt="jsonl")
        ingest_snapshot(self.store, folder, realm_id=REALM, now=NOW)
        run_check(self.store, REALM, now=NOW)


def _company_with_department() -> dict:
    company = tiny_company()
    company["objects"]["Department"] = [{"Id": "7", "SyncToken": "0", "Name": "East Region", "Active": True}]
    return company


@pytest.fixture(scope="module")
def checked_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny snapshot ingested against the tiny company and checked, once; each test works on a copy."""
    folder = tmp_path_factory.mktemp("payloads")
    with Store(folder / "checked.duckdb") as store:
        ingest_snapshot(store, write_snapshot(folder / "awra", tiny_snapshot(), fmt="jsonl"), realm_id=REALM, now=T0)
        load_company(store, tiny_company())
        run_check(store, REALM, now=NOW)
    return folder / "checked.duckdb"


@pytest.fixture
def store(checked_db: Path, tmp_path: Path) -> Iterator[Store]:
    with Store(shutil.copy(checked_db, tmp_path / "payloads.duckdb")) as s:
        yield s


@pytest.fixture
def company() -> dict:
    return tiny_company()


@pytest.fixture
def world(store: Store, tmp_path: Path, company: dict) -> Iterator[World]:
    sandbox = Sandbox(company)
    load_company(store, company)
    cfg = Settings(
        db_path=store.path,
        realm_id=REALM,
        qbo_base_url="http://sandbox.local",
        secret_key=Fernet.generate_key().decode(),
        secret_key_file=tmp_path / "secret.key",
    )
    with httpx.Client(transport=sandbox.transport()) as http:
        connect(cfg, store, actor="admin@demo.local", http=http)
        with qbo_client(cfg, store, REALM, http=http) as client:
            yield World(store, sandbox, client, tmp_path)
    sandbox.close()


def _body(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(row["payload"], parse_float=Decimal)


def _link(store: Store, entity: str, record_id: str, qbo_entity: str, obj: dict[str, Any], version: int) -> None:
    """What the sync engine records after a write: the object in the mirror, the external ref, a party's mapping.

    The mirror row matters: without it the next check finds the new mapping's QBO object unknown, calls
    the mapping stale and blocks every document of that party.
    """
    load_objects(store, REALM, qbo_entity, [obj], NOW)
    store.execute(
        """INSERT INTO external_refs VALUES (?, ?, ?, ?, ?, ?, ?, 'sync', ?, NULL)
           ON CONFLICT (realm_id, entity, record_id) DO UPDATE SET qbo_id = excluded.qbo_id,
             sync_token = excluded.sync_token, synced_version = excluded.synced_version""",
        [REALM, entity, record_id, qbo_entity, obj["Id"], obj["SyncToken"], version, NOW],
    )
    if entity in ("vendor", "customer"):
        _map_party(store, entity, record_id, obj["Id"], obj.get("DisplayName"))


def _map_party(store: Store, kind: str, awra_value: str, qbo_id: str, name: str | None = None) -> None:
    store.execute(
        """INSERT OR REPLACE INTO mappings VALUES (?, ?, ?, ?, ?, ?, 'created_by_sync', 'mapped', 1.0, 'marker',
           NULL, ?)""",
        [REALM, kind, awra_value, kind.capitalize(), qbo_id, name, NOW],
    )


def _send(world: World, row: dict[str, Any]) -> dict[str, Any]:
    """POST one row as the engine will; QboCallError (the sandbox's fault text) fails the test."""
    assert row["problem"] is None, row
    request_id = f"{row['entity']}-{row['record_id']}-v{row['version']}"
    if row["operation"] == "create":
        result = world.client.create(row["qbo_entity"], _body(row), request_id=request_id)
    else:
        result = world.client.update(row["qbo_entity"], _body(row), request_id=request_id)
    obj = result.object
    assert result.ok and obj is not None
    _link(world.store, row["entity"], row["record_id"], row["qbo_entity"], obj, row["version"])
    return obj


def _send_phases(world: World, only: set[str] | None = None, *, recheck: bool = False) -> dict[str, dict[str, Any]]:
    """Send the ready records (or `only` those) phase by phase; `recheck` checks in between, as the engine does."""
    ready = [
        k for k in build_payloads(world.store, REALM).select("entity", "record_id").rows() if not only or k[1] in only
    ]
    sent: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        for row in build_payloads(world.store, REALM, [k for k in ready if k[0] in phase]).iter_rows(named=True):
            sent[row["record_id"]] = _send(world, row)
        if recheck:
            run_check(world.store, REALM, now=NOW)
    return sent


def _one(world: World, entity: str, **where: str) -> dict[str, Any]:
    found = [o for o in world.sandbox.entities(REALM, entity) if all(o.get(k) == v for k, v in where.items())]
    assert len(found) == 1, (entity, where, found)
    return found[0]


# -- the proof: QBO's rules accept every body ------------------------------------------------------------
def test_every_ready_record_is_accepted_by_the_sandbox_in_dependency_order(world: World) -> None:
    first = build_payloads(world.store, REALM)
    assert dict(first.schema) == PAYLOAD_COLUMNS
    assert first["entity"].to_list() == [
        "vendor",
        "vendor",
        "customer",
        "purchase_order",
        "bill",
        "invoice",
        "payment",
        "bill_payment",
        "journal_entry",
    ]  # BILL-2 is not approved, so not ready
    problems = dict(zip(first["record_id"], first["problem"], strict=True))
    assert problems["BILL-1"] == "vendor VEN-1 is not in QuickBooks yet"
    assert problems["PAY-1"] == "customer CUS-1 is not in QuickBooks yet; invoice INV-1 is not in QuickBooks yet"
    assert problems["JE-1"] is None and problems["VEN-1"] is None
    assert first.filter(first["problem"].is_not_null())["payload"].null_count() == 5

    sent = _send_phases(world, recheck=True)

    assert sorted(sent) == ["BILL-1", "BP-1", "CUS-1", "INV-1", "JE-1", "PAY-1", "PO-1", "VEN-1", "VEN-2"]
    states = dict(world.store.rows("SELECT record_id, state FROM records WHERE entity NOT IN ('item', 'account')"))
    assert states == {**{k: "synced" for k in sent}, "BILL-2": "not_ready"}
    assert build_payloads(world.store, REALM).is_empty()

    vendor = _one(world, "Vendor", Notes="awra:vendor:VEN-1:v1")
    assert vendor["DisplayName"] == "Acme Supplies" and vendor["CurrencyRef"]["value"] == "USD"
    customer = _one(world, "Customer", Notes="awra:customer:CUS-1:v1")
    bill = _one(world, "Bill", PrivateNote="awra:bill:BILL-1:v1")
    assert bill["DocNumber"] == "INV-9" and bill["VendorRef"]["value"] == vendor["Id"]
    assert (bill["TxnDate"], bill["DueDate"]) == (iso(3), iso(3, 1))
    assert bill["TotalAmt"] == Decimal("30.50") and bill["Balance"] == 0  # the bill payment settled it
    item_line, account_line = bill["Line"]
    assert item_line["ItemBasedExpenseLineDetail"]["ItemRef"]["value"] == "1"
    assert (item_line["Amount"], item_line["LineNum"], item_line["Description"]) == (Decimal("20.50"), 1, "Widgets")
    assert account_line["AccountBasedExpenseLineDetail"]["AccountRef"]["value"] == "3"
    assert account_line["AccountBasedExpenseLineDetail"]["ClassRef"]["value"] == "1"
    assert account_line["AccountBasedExpenseLineDetail"]["TaxCodeRef"]["value"] == "2"
    po = _one(world, "PurchaseOrder", PrivateNote="awra:purchase_order:PO-1:v1")
    assert po["DocNumber"] == "PO-1" and po["TotalAmt"] == Decimal("20.00")
    invoice = _one(world, "Invoice", PrivateNote="awra:invoice:INV-1:v1")
    assert invoice["DocNumber"] == "1001" and invoice["CustomerRef"]["value"] == customer["Id"]
    assert invoice["TotalAmt"] == Decimal("150.00") and invoice["Balance"] == 0
    payment = _one(world, "Payment", PrivateNote="awra:payment:PAY-1:v1")
    assert payment["PaymentRefNum"] == "P-1" and payment["DepositToAccountRef"]["value"] == "1"
    assert payment["Line"][0]["LinkedTxn"] == [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]
    bill_payment = _one(world, "BillPayment", PrivateNote="awra:bill_payment:BP-1:v1")
    assert bill_payment["CheckPayment"]["BankAccountRef"]["value"] == "1"
    assert bill_payment["Line"][0]["LinkedTxn"] == [{"TxnId": bill["Id"], "TxnType": "Bill"}]
    journal = _one(world, "JournalEntry", PrivateNote="awra:journal_entry:JE-1:v1")
    assert journal["DocNumber"] == "JE-1" and journal["TotalAmt"] == Decimal("12.34")
    assert world.sandbox.errors == []


def test_a_changed_record_becomes_a_sparse_update_that_keeps_what_qbo_users_added(world: World) -> None:
    _send_phases(world, {"VEN-1", "BILL-1", "BP-1"})
    bill = _one(world, "Bill", PrivateNote="awra:bill:BILL-1:v1")
    # A QuickBooks user adds payment terms, which AWRA knows nothing of; a full update would wipe them.
    world.sandbox.user_patch(REALM, "Bill", bill["Id"], {"SalesTermRef": {"value": "1"}})
    pull(world.store, world.client, now=NOW)
    snapshot = tiny_snapshot()
    snapshot["bill_lines"][1].update(amount="11.75", description="Freight, corrected")
    snapshot["bills"][0].update(total="32.25")
    world.ingest(snapshot)

    frame = build_payloads(world.store, REALM)  # the new version made it ready again, to update
    row = frame.row(by_predicate=pl.col("record_id") == "BILL-1", named=True)
    # The bill payment bumped the bill's SyncToken (its balance changed), the user's edit bumped it again;
    # the link still holds the token of our create, the pull saw the current one, and that is the one sent.
    current = _one(world, "Bill", Id=bill["Id"])["SyncToken"]
    linked = world.store.scalar("SELECT sync_token FROM external_refs WHERE record_id = 'BILL-1'")
    assert (linked, current) == ("0", "2")
    assert (row["operation"], row["qbo_id"], row["sync_token"], row["version"]) == ("update", bill["Id"], "2", 2)
    body = _body(row)
    assert (body["Id"], body["SyncToken"], body["sparse"]) == (bill["Id"], "2", True)
    assert body["PrivateNote"] == "awra:bill:BILL-1:v2"

    _send(world, row)

    updated = _one(world, "Bill", Id=bill["Id"])
    assert updated["SyncToken"] == "3" and updated["PrivateNote"] == "awra:bill:BILL-1:v2"
    assert updated["TotalAmt"] == Decimal("32.25") and updated["Line"][1]["Description"] == "Freight, corrected"
    assert updated["SalesTermRef"]["value"] == "1"  # sparse: the user's terms survive
    assert len(world.sandbox.entities(REALM, "Bill")) == 1


@pytest.mark.parametrize("company", [_company_with_department()])
def test_a_category_mapped_to_a_department_goes_on_the_header_and_is_accepted(world: World) -> None:
    with world.store.transaction() as tx:
        set_mapping(tx, REALM, "class", "East", "7", actor=ADMIN.email, reason="locations", now=NOW)
    run_check(world.store, REALM, now=NOW)
    _send_phases(world, {"VEN-1", "CUS-1", "BILL-1", "INV-1", "JE-1"})

    bill = _one(world, "Bill", PrivateNote="awra:bill:BILL-1:v1")
    assert bill["DepartmentRef"]["value"] == "7"
    assert all("ClassRef" not in line["AccountBasedExpenseLineDetail"] for line in bill["Line"][1:])
    assert "ClassRef" not in bill["Line"][0]["ItemBasedExpenseLineDetail"]
    invoice = _one(world, "Invoice", PrivateNote="awra:invoice:INV-1:v1")  # West stays a class
    assert "DepartmentRef" not in invoice and invoice["Line"][0]["SalesItemLineDetail"]["ClassRef"]["value"] == "2"
    journal = _one(world, "JournalEntry", PrivateNote="awra:journal_entry:JE-1:v1")
    assert [ln["JournalEntryLineDetail"]["DepartmentRef"]["value"] for ln in journal["Line"]] == ["7", "7"]


# -- gaps are problems, never exceptions -----------------------------------------------------------------
def test_a_missing_or_stale_mapping_or_document_is_a_problem_naming_it(store: Store) -> None:
    store.execute("UPDATE mappings SET status = 'missing', qbo_id = NULL WHERE kind = 'class' AND awra_value = 'East'")
    store.execute("UPDATE mappings SET status = 'stale' WHERE kind = 'account' AND awra_value = '1000'")
    store.execute("DELETE FROM mappings WHERE kind = 'payment_method'")
    _map_party(store, "customer", "CUS-1", "58")

    keys = [("journal_entry", "JE-1"), ("payment", "PAY-1"), ("bill_payment", "BP-1"), ("vendor", "VEN-1")]
    frame = build_payloads(store, REALM, keys)

    problems = dict(zip(frame["record_id"], frame["problem"], strict=True))
    assert problems == {
        "VEN-1": None,
        "PAY-1": "invoice INV-1 is not in QuickBooks yet; payment method Check has no QuickBooks payment method; "
        "deposit account 1000 is mapped to an inactive or deleted QuickBooks account",
        "BP-1": "vendor VEN-1 is not in QuickBooks yet; bill BILL-1 is not in QuickBooks yet; "
        "bank account 1000 is mapped to an inactive or deleted QuickBooks account",
        "JE-1": "line 1: category East has no QuickBooks class or department; "
        "line 2: account 1000 is mapped to an inactive or deleted QuickBooks account; "
        "line 2: category East has no QuickBooks class or department",
    }
    assert frame.filter(frame["problem"].is_not_null())["payload"].null_count() == 3
    assert _body(frame.row(by_predicate=pl.col("record_id") == "VEN-1", named=True))["DisplayName"] == "Acme Supplies"


def test_keys_pick_records_whatever_their_state_and_skip_unknown_ones(store: Store) -> None:
    _map_party(store, "vendor", "VEN-2", "56")
    frame = build_payloads(store, REALM, [("bill", "BILL-2"), ("item", "WID-100"), ("bill", "NO-SUCH")])
    assert frame.select("record_id", "operation", "problem").rows() == [
        ("BILL-2", "create", None),  # not_ready in the store: the engine decides, the body is still right
        ("WID-100", None, "items are mapped to QuickBooks objects, never created by the sync"),
    ]
    assert build_payloads(store, REALM, []).is_empty()


def _nulls(value: Any, path: str = "") -> Iterator[str]:
    if value is None:
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nulls(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nulls(item, f"{path}[{index}]")


def test_optional_fields_are_left_out_and_text_survives_json(store: Store, tmp_path: Path) -> None:
    tricky = 'He said "hi", \\ then ","ClassRef":null,"x":{"y":null} — naïve ✓\nline two'
    snapshot = tiny_snapshot()
    snapshot["bill_lines"][0].update(description=tricky)
    snapshot["bill_lines"][1].update(category=None, tax_code=None)
    snapshot["bills"][0].update(due_date=None)
    ingest_snapshot(store, write_snapshot(tmp_path / "awra", snapshot, fmt="jsonl"), realm_id=REALM, now=T0)
    _map_party(store, "vendor", "VEN-1", "56")

    row = build_payloads(store, REALM, [("bill", "BILL-1")]).row(0, named=True)

    body = _body(row)
    assert not list(_nulls(body))
    assert "DueDate" not in body and "Id" not in body and "sparse" not in body
    assert body["Line"][0]["Description"] == tricky
    assert body["Line"][1]["AccountBasedExpenseLineDetail"] == {"AccountRef": {"value": "3"}}
    assert body["VendorRef"] == {"value": "56"} and body["DocNumber"] == "INV-9"


# -- money ------------------------------------------------------------------------------------------------
def test_money_and_quantities_are_written_with_their_stored_digits(store: Store) -> None:
    _map_party(store, "vendor", "VEN-1", "56")
    row = build_payloads(store, REALM, [("bill", "BILL-1")]).row(0, named=True)
    assert '"Amount":20.50' in row["payload"] and '"UnitPrice":10.2500' in row["payload"]
    lines = _body(row)["Line"]
    awra = store.rows("SELECT amount, qty, unit_price FROM cur_bill_lines WHERE bill_id = 'BILL-1' ORDER BY line_no")
    assert [(ln["Amount"], ln.get("ItemBasedExpenseLineDetail", {}).get("Qty")) for ln in lines] == [
        (awra[0][0], awra[0][1]),
        (awra[1][0], None),
    ]
    assert lines[0]["ItemBasedExpenseLineDetail"]["UnitPrice"] == awra[0][2] == Decimal("10.25")
    assert all(isinstance(a, Decimal) for a in (awra[0][0], lines[0]["Amount"]))


_MONEY = st.decimals(min_value=Decimal("0.00"), max_value=Decimal("99999999.99"), places=2)


def test_any_money_value_parses_back_to_the_identical_decimal(store: Store) -> None:
    _map_party(store, "customer", "CUS-1", "58")
    store.execute(
        "INSERT INTO external_refs VALUES (?, 'invoice', 'INV-1', 'Invoice', '130', '0', 1, 'sync', ?, NULL)",
        [REALM, NOW],
    )
    keys = [("payment", "PAY-1"), ("journal_entry", "JE-1")]

    @settings(max_examples=40, deadline=None)
    @given(st.lists(_MONEY, min_size=1, max_size=25))
    @example([Decimal("20.50"), Decimal("0.10"), Decimal("0.00"), Decimal("99999999.99")])
    @example([Decimal("9999999999999999.99")])  # the largest DECIMAL(18,2): beyond a double's 15-17 digits
    def check(amounts: list[Decimal]) -> None:
        texts = [str(a) for a in amounts]
        _write_amounts(store, texts)
        frame = build_payloads(store, REALM, keys)
        payment, journal = (_body(r) for r in frame.iter_rows(named=True))
        assert str(payment["TotalAmt"]) == str(payment["Line"][0]["Amount"]) == texts[0]
        assert [str(line["Amount"]) for line in journal["Line"]] == texts

    check()


def _write_amounts(store: Store, texts: list[str]) -> None:
    """Put amounts straight into the stored versions as an ingest leaves them: text cast to DECIMAL, never float."""
    with store.transaction() as tx:
        tx.execute("UPDATE awra_payments SET amount = ?::DECIMAL(18,2) WHERE payment_id = 'PAY-1'", [texts[0]])
        tx.execute("DELETE FROM awra_journal_lines WHERE je_id = 'JE-1'")
        tx.execute(
            """INSERT INTO awra_journal_lines (realm_id, je_id, line_no, account_code, posting_type, amount,
                                               description, category, version, ingest_run_id)
               SELECT ?, 'JE-1', n, '5000', 'debit', a::DECIMAL(18,2), 'x', 'East', 1, 1
               FROM unnest(?::VARCHAR[]) WITH ORDINALITY AS t(a, n)""",
            [REALM, texts],
        )
