"""Test data built from literals: a tiny AWRA snapshot and the QBO company that matches it, dated from the clock."""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from pipelines.clock import system_clock
from pipelines.store import Store, awra_table
from schemas.awra import CONTRACT
from schemas.manifest import MANIFEST_FILE, Manifest, manifest_json

REALM = "9341453050298461"


def _suite_now() -> datetime:
    """Today at 09:00 UTC, or yesterday's 09:00 while today's is still to come: never ahead of the wall clock."""
    wall = system_clock()
    nine = wall.replace(hour=9, minute=0, second=0, microsecond=0)
    return nine if nine <= wall else nine - timedelta(days=1)


# Every date in the test data is relative to the day the suite runs (so it passes on any day, and under faketime):
# T0 is "now" for the engine, and the tiny company's documents fall in ANCHOR's month, the first month that starts
# 25 to 55 days before T0, so a month of documents is complete, in the past, and due within a few weeks.
T0 = _suite_now()
_start = (T0 - timedelta(days=25)).date()
ANCHOR = date(_start.year, _start.month, 1)


def month(offset: int = 0) -> date:
    """The first day of the month `offset` months after ANCHOR's."""
    index = ANCHOR.year * 12 + ANCHOR.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def day(n: int, months: int = 0) -> date:
    """Day n (1-28) of the month `months` after ANCHOR's; for later days use last_day()."""
    if not 1 <= n <= 28:
        raise ValueError("day() takes 1-28, the days every month has; use last_day() for the month's end")
    return month(months).replace(day=n)


def last_day(months: int = 0) -> date:
    first = month(months)
    return first.replace(day=calendar.monthrange(first.year, first.month)[1])


def iso(n: int, months: int = 0) -> str:
    return day(n, months).isoformat()


PERIOD = f"{ANCHOR:%Y-%m}"  # the month the tiny company's documents are in, as the pages name a period
PERIOD_NAME = f"{ANCHOR:%B %Y}"
BOOK_CLOSE = last_day(-2).isoformat()  # QuickBooks closed up to the end of the month before the previous one


def tiny_snapshot() -> dict[str, list[dict[str, str | None]]]:
    """Two vendors, one customer, two items, three accounts, a PO, two bills, an invoice, payments, a JE."""
    ts = f"{ANCHOR.isoformat()}T09:00:00Z"
    return {
        "vendors": [
            {
                "vendor_id": "VEN-1",
                "name": "Acme Supplies",
                "currency": "USD",
                "status": "active",
                "approval_status": "approved",
                "updated_at": ts,
            },
            {
                "vendor_id": "VEN-2",
                "name": "Bolt & Nut Co",
                "currency": "USD",
                "status": "active",
                "approval_status": "approved",
                "updated_at": ts,
            },
        ],
        "customers": [
            {
                "customer_id": "CUS-1",
                "name": "Northwind",
                "currency": "USD",
                "status": "active",
                "approval_status": "approved",
                "updated_at": ts,
            },
        ],
        "items": [
            {
                "item_sku": "WID-100",
                "name": "Widget",
                "type": "non_inventory",
                "status": "active",
                "updated_at": ts,
                "income_account_code": "4000",
                "expense_account_code": "5000",
            },
            {
                "item_sku": "SVC-1",
                "name": "Install",
                "type": "service",
                "status": "active",
                "updated_at": ts,
                "income_account_code": "4000",
                "expense_account_code": None,
            },
        ],
        "accounts": [
            {"account_code": "1000", "name": "Checking", "type": "Bank", "status": "active"},
            {"account_code": "4000", "name": "Sales", "type": "Income", "status": "active"},
            {
                "account_code": "5000",
                "name": "Cost of Goods",
                "type": "Cost of Goods Sold",
                "status": "active",
            },
        ],
        "purchase_orders": [
            {
                "po_id": "PO-1",
                "po_number": "PO-1",
                "vendor_id": "VEN-1",
                "txn_date": iso(2),
                "due_date": iso(2, 1),
                "currency": "USD",
                "total": "20.00",
                "approval_status": "approved",
                "posting_status": "posted",
                "owner": "ap@acme.example",
                "updated_at": ts,
            },
        ],
        "po_lines": [
            {
                "po_id": "PO-1",
                "line_no": "1",
                "item_sku": "WID-100",
                "account_code": None,
                "description": "Widgets",
                "qty": "2",
                "unit_price": "10",
                "amount": "20.00",
                "tax_code": "NON",
                "category": "East",
            },
        ],
        "bills": [
            {
                "bill_id": "BILL-1",
                "bill_number": "INV-9",
                "vendor_id": "VEN-1",
                "po_id": "PO-1",
                "txn_date": iso(3),
                "due_date": iso(3, 1),
                "currency": "USD",
                "total": "30.50",
                "approval_status": "approved",
                "posting_status": "posted",
                "owner": "ap@acme.example",
                "updated_at": ts,
            },
            {
                "bill_id": "BILL-2",
                "bill_number": "77",
                "vendor_id": "VEN-2",
                "po_id": None,
                "txn_date": iso(4),
                "due_date": None,
                "currency": "USD",
                "total": "5.00",
                "approval_status": "pending",
                "posting_status": "unposted",
                "owner": "ap@acme.example",
                "updated_at": ts,
            },
        ],
        "bill_lines": [
            {
                "bill_id": "BILL-1",
                "line_no": "1",
                "item_sku": "WID-100",
                "account_code": None,
                "description": "Widgets",
                "qty": "2",
                "unit_price": "10.25",
                "amount": "20.50",
                "tax_code": "NON",
                "category": "East",
            },
            {
                "bill_id": "BILL-1",
                "line_no": "2",
                "item_sku": None,
                "account_code": "5000",
                "description": "Freight",
                "qty": None,
                "unit_price": None,
                "amount": "10",
                "tax_code": "NON",
                "category": "East",
            },
            {
                "bill_id": "BILL-2",
                "line_no": "1",
                "item_sku": None,
                "account_code": "5000",
                "description": "Nuts",
                "qty": None,
                "unit_price": None,
                "amount": "5.00",
                "tax_code": "NON",
                "category": None,
            },
        ],
        "invoices": [
            {
                "invoice_id": "INV-1",
                "invoice_number": "1001",
                "customer_id": "CUS-1",
                "txn_date": iso(5),
                "due_date": iso(5, 1),
                "currency": "USD",
                "total": "150.00",
                "approval_status": "approved",
                "posting_status": "posted",
                "owner": "ar@acme.example",
                "updated_at": ts,
            },
        ],
        "invoice_lines": [
            {
                "invoice_id": "INV-1",
                "line_no": "1",
                "item_sku": "SVC-1",
                "account_code": None,
                "description": "Install",
                "qty": "1.5",
                "unit_price": "100",
                "amount": "150.00",
                "tax_code": "TAX",
                "category": "West",
            },
        ],
        "payments": [
            {
                "payment_id": "PAY-1",
                "payment_number": "P-1",
                "customer_id": "CUS-1",
                "invoice_id": "INV-1",
                "txn_date": iso(6),
                "amount": "150.00",
                "payment_method": "Check",
                "deposit_account_code": "1000",
                "currency": "USD",
                "approval_status": "approved",
                "posting_status": "posted",
                "owner": "ar@acme.example",
                "updated_at": ts,
            },
        ],
        "bill_payments": [
            {
                "bill_payment_id": "BP-1",
                "vendor_id": "VEN-1",
                "bill_id": "BILL-1",
                "txn_date": iso(7),
                "amount": "30.50",
                "payment_method": "Check",
                "bank_account_code": "1000",
                "currency": "USD",
                "approval_status": "approved",
                "posting_status": "posted",
                "owner": "ap@acme.example",
                "updated_at": ts,
            },
        ],
        "journal_entries": [
            {
                "je_id": "JE-1",
                "je_number": "JE-1",
                "txn_date": iso(8),
                "currency": "USD",
                "approval_status": "approved",
                "posting_status": "posted",
                "owner": "gl@acme.example",
                "updated_at": ts,
            },
        ],
        "journal_lines": [
            {
                "je_id": "JE-1",
                "line_no": "1",
                "account_code": "5000",
                "posting_type": "debit",
                "amount": "12.34",
                "description": "Accrual",
                "category": "East",
            },
            {
                "je_id": "JE-1",
                "line_no": "2",
                "account_code": "1000",
                "posting_type": "credit",
                "amount": "12.34",
                "description": "Accrual",
                "category": "East",
            },
        ],
    }


def frames_of(snapshot: dict[str, list[dict]]) -> dict[str, pl.DataFrame]:
    """Snapshot rows as text frames with exactly the contract columns, in contract order."""
    out = {}
    for name, table in CONTRACT.items():
        schema = {c: pl.String for c in table.column_names}
        out[name] = pl.DataFrame(snapshot.get(name, []), schema=schema)
    return out


def write_snapshot(folder: Path, snapshot: dict[str, list[dict]], fmt: str = "csv") -> Path:
    """Write a snapshot folder in one format; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames_of(snapshot).items():
        write_frame(frame, folder / f"{name}.{fmt}")
    return folder


def write_frame(frame: pl.DataFrame, path: Path) -> None:
    """One snapshot file, in the format its suffix names (.csv, .parquet, else JSON lines)."""
    if path.suffix == ".csv":
        frame.write_csv(path)
    elif path.suffix == ".parquet":
        frame.write_parquet(path)
    else:
        frame.write_ndjson(path)


def write_delta(
    folder: Path,
    changed: dict[str, list[dict]],
    *,
    snapshot_id: str,
    base: str,
    removed: dict[str, list[str]] | None = None,
    fmt: str = "csv",
) -> Path:
    """Write a delta snapshot folder: the tables in `changed` (whole records), removals, and its manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames_of(changed).items():
        if name in changed:
            write_frame(frame, folder / f"{name}.{fmt}")
    manifest = Manifest("delta", snapshot_id, base, {k: tuple(v) for k, v in (removed or {}).items()})
    (folder / MANIFEST_FILE).write_text(manifest_json(manifest))
    return folder


def write_manifest(folder: Path, snapshot_id: str) -> Path:
    """Make a snapshot folder a full snapshot with a manifest (contract v1.1) named `snapshot_id`."""
    (folder / MANIFEST_FILE).write_text(manifest_json(Manifest("full", snapshot_id)))
    return folder


def _ref(value: str) -> dict[str, str]:
    return {"value": value}


def tiny_company(book_close: str = BOOK_CLOSE) -> dict:
    """A QBO company file matching tiny_snapshot(): every reference value exists and is active."""
    created = f"{month(-10).isoformat()}T00:00:00-08:00"
    meta = {"CreateTime": created, "LastUpdatedTime": created}

    def obj(i: int, **fields) -> dict:
        return {"Id": str(i), "SyncToken": "0", "MetaData": meta, **fields}

    return {
        "format": "synchealth-qbo-company/1",
        "realm_id": REALM,
        "company_info": {"Id": "1", "CompanyName": "Tiny Co", "Country": "US", "SyncToken": "0"},
        "preferences": {
            "Id": "1",
            "SyncToken": "0",
            "AccountingInfoPrefs": {"BookCloseDate": book_close},
            "CurrencyPrefs": {"HomeCurrency": {"value": "USD"}, "MultiCurrencyEnabled": False},
            "SalesFormsPrefs": {"CustomTxnNumbers": True},
            "OtherPrefs": {"NameValue": [{"Name": "DuplicateDocNumberCheck", "Value": "true"}]},
        },
        "objects": {
            "Account": [
                obj(1, Name="Checking", AcctNum="1000", AccountType="Bank", Classification="Asset", Active=True),
                obj(2, Name="Sales", AcctNum="4000", AccountType="Income", Classification="Revenue", Active=True),
                obj(
                    3,
                    Name="Cost of Goods",
                    AcctNum="5000",
                    AccountType="Cost of Goods Sold",
                    Classification="Expense",
                    Active=True,
                ),
                obj(
                    4,
                    Name="Accounts Payable",
                    AcctNum="2000",
                    AccountType="Accounts Payable",
                    Classification="Liability",
                    Active=True,
                ),
            ],
            "TaxCode": [obj(1, Name="TAX", Active=True, Taxable=True), obj(2, Name="NON", Active=True, Taxable=False)],
            "TaxRate": [],
            "PaymentMethod": [obj(1, Name="Check", Type="NON_CREDIT_CARD", Active=True)],
            "Class": [obj(1, Name="East", Active=True), obj(2, Name="West", Active=True)],
            "Department": [],
            "Term": [obj(1, Name="Net 30", DueDays=30, Active=True)],
            "Vendor": [],
            "Customer": [],
            "Employee": [],
            "Item": [
                obj(
                    1,
                    Name="Widget",
                    Sku="WID-100",
                    Type="NonInventory",
                    Active=True,
                    IncomeAccountRef=_ref("2"),
                    ExpenseAccountRef=_ref("3"),
                ),
                obj(2, Name="Install", Sku="SVC-1", Type="Service", Active=True, IncomeAccountRef=_ref("2")),
            ],
        },
    }


def load_company(store: Store, company: dict) -> None:
    """Put a company file's objects and preferences in the store's QBO mirror, as a pull would."""
    from pipelines.pull import load_company_file

    load_company_file(store, company, T0)


def dump_store(store: Store) -> dict[str, pl.DataFrame]:
    """What a person could see of the records: every version of every AWRA row (without run ids), which records are
    live and their version history, sorted so two stores holding the same content compare equal."""
    out = {}
    for name, table in CONTRACT.items():
        out[name] = store.frame(
            f"SELECT * EXCLUDE (ingest_run_id) FROM {awra_table(name)} ORDER BY {', '.join(table.key)}, version"
        )
    out["records"] = store.frame(
        "SELECT realm_id, entity, record_id, current_version, content_hash, removed_at IS NULL AS live "
        "FROM records ORDER BY entity, record_id"
    )
    out["record_versions"] = store.frame(
        "SELECT entity, record_id, version, content_hash FROM record_versions ORDER BY ALL"
    )
    return out


def rows_validated(monkeypatch) -> dict[str, int]:
    """Rows handed to validation per table on the next ingest (what a re-ingest really reads past the files)."""
    import pipelines.ingest as awra

    seen: dict[str, int] = {}
    real = awra.validate_snapshot

    def spy(files):
        seen.update({name: raw.frame.height for name, raw in files.items()})
        return real(files)

    monkeypatch.setattr(awra, "validate_snapshot", spy)
    return seen
