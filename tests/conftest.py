"""Shared fixtures: a tiny, valid AWRA snapshot built from literals, and a fresh store."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from pipelines.store import Store
from schemas.awra import CONTRACT

REALM = "9341453050298461"


def tiny_snapshot() -> dict[str, list[dict[str, str | None]]]:
    """Two vendors, one customer, two items, three accounts, a PO, two bills, an invoice, payments, a JE."""
    ts = "2026-11-01T09:00:00Z"
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
                "txn_date": "2026-11-02",
                "due_date": "2026-12-02",
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
                "txn_date": "2026-11-03",
                "due_date": "2026-12-03",
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
                "txn_date": "2026-11-04",
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
                "txn_date": "2026-11-05",
                "due_date": "2026-12-05",
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
                "txn_date": "2026-11-06",
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
                "txn_date": "2026-11-07",
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
                "txn_date": "2026-11-08",
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
        path = folder / f"{name}.{fmt}"
        if fmt == "csv":
            frame.write_csv(path)
        elif fmt == "parquet":
            frame.write_parquet(path)
        else:
            frame.write_ndjson(path)
    return folder


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's SYNCHEALTH_* settings."""
    for key in list(os.environ):
        if key.startswith("SYNCHEALTH_"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store.duckdb")
    yield s
    s.close()


@pytest.fixture
def snapshot_dir(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "awra", tiny_snapshot())
