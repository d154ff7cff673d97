"""Sandbox test helpers: a tiny company built from literals, a sandbox on a fixed clock, an API client."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from qbo.sandbox import COMPANY_FORMAT, Sandbox, SandboxClock
from qbo.sandbox.wire import dumps, loads

REALM = "9130350000000001"
# 2025-06-15 10:00 in the company's zone (-07:00); the books are closed through 2025-01-31.
START = datetime(2025, 6, 15, 17, 0, tzinfo=UTC)
LOADED_AT = "2025-06-01T09:00:00-07:00"


def _meta() -> dict[str, str]:
    return {"CreateTime": LOADED_AT, "LastUpdatedTime": LOADED_AT}


def _ref(value: str) -> dict[str, str]:
    return {"value": value}


def company() -> dict[str, Any]:
    """Accounts, tax codes, parties, items, one open bill and one open invoice; one of each inactive."""
    accounts = [
        ("1", "Checking", "Bank", True),
        ("2", "Accounts Payable", "Accounts Payable", True),
        ("3", "Accounts Receivable", "Accounts Receivable", True),
        ("4", "Office Expenses", "Expense", True),
        ("5", "Sales", "Income", True),
        ("6", "Old Expenses", "Expense", False),
        ("7", "Visa Card", "Credit Card", True),
    ]
    return {
        "format": COMPANY_FORMAT,
        "realm_id": REALM,
        "company_info": {"Id": "1", "CompanyName": "Tiny Co", "Country": "US"},
        "preferences": {
            "Id": "1",
            "AccountingInfoPrefs": {"BookCloseDate": "2025-01-31"},
            "CurrencyPrefs": {"HomeCurrency": {"value": "USD"}, "MultiCurrencyEnabled": False},
            "SalesFormsPrefs": {"CustomTxnNumbers": True},
            "OtherPrefs": {"NameValue": [{"Name": "DuplicateDocNumberCheck", "Value": "true"}]},
        },
        "objects": {
            "Account": [
                {"Id": i, "Name": n, "AccountType": t, "Active": a, "SyncToken": "0", "MetaData": _meta()}
                for i, n, t, a in accounts
            ],
            "TaxCode": [
                {"Id": "TAX", "Name": "TAX", "Active": True, "Taxable": True, "MetaData": _meta()},
                {"Id": "NON", "Name": "NON", "Active": True, "Taxable": False, "MetaData": _meta()},
            ],
            "TaxRate": [{"Id": "1", "Name": "State", "RateValue": Decimal("8.25"), "MetaData": _meta()}],
            "PaymentMethod": [
                {"Id": "1", "Name": "Check", "Type": "NON_CREDIT_CARD", "MetaData": _meta()},
                {"Id": "2", "Name": "Visa", "Type": "CREDIT_CARD", "MetaData": _meta()},
            ],
            "Class": [{"Id": "1", "Name": "East", "MetaData": _meta()}],
            "Department": [{"Id": "1", "Name": "Head Office", "MetaData": _meta()}],
            "Term": [{"Id": "1", "Name": "Net 30", "DueDays": 30, "MetaData": _meta()}],
            "Vendor": [
                {"Id": "1", "DisplayName": "Acme Supplies", "MetaData": _meta()},
                {"Id": "2", "DisplayName": "Old Vendor", "Active": False, "MetaData": _meta()},
            ],
            "Customer": [
                {"Id": "1", "DisplayName": "Globex", "MetaData": _meta()},
                {"Id": "2", "DisplayName": "O'Brien & Sons", "MetaData": _meta()},
            ],
            "Employee": [{"Id": "1", "DisplayName": "Jane Roe", "GivenName": "Jane", "MetaData": _meta()}],
            "Item": [
                {
                    "Id": "1",
                    "Name": "Consulting",
                    "Type": "Service",
                    "IncomeAccountRef": _ref("5"),
                    "MetaData": _meta(),
                },
                {
                    "Id": "2",
                    "Name": "Widget",
                    "Type": "NonInventory",
                    "IncomeAccountRef": _ref("5"),
                    "ExpenseAccountRef": _ref("4"),
                    "MetaData": _meta(),
                },
                {
                    "Id": "3",
                    "Name": "Retired",
                    "Type": "Service",
                    "IncomeAccountRef": _ref("5"),
                    "Active": False,
                    "MetaData": _meta(),
                },
            ],
            "Bill": [
                {
                    "Id": "1",
                    "SyncToken": "0",
                    "DocNumber": "B-100",
                    "TxnDate": "2025-06-01",
                    "VendorRef": _ref("1"),
                    "TotalAmt": Decimal("100.00"),
                    "Balance": Decimal("100.00"),
                    "MetaData": _meta(),
                    "Line": [
                        {
                            "Id": "1",
                            "Amount": Decimal("100.00"),
                            "DetailType": "AccountBasedExpenseLineDetail",
                            "AccountBasedExpenseLineDetail": {"AccountRef": _ref("4")},
                        }
                    ],
                },
            ],
            "Invoice": [
                {
                    "Id": "1",
                    "SyncToken": "0",
                    "DocNumber": "1001",
                    "TxnDate": "2025-06-01",
                    "CustomerRef": _ref("1"),
                    "TotalAmt": Decimal("250.00"),
                    "Balance": Decimal("250.00"),
                    "MetaData": _meta(),
                    "Line": [
                        {
                            "Id": "1",
                            "Amount": Decimal("250.00"),
                            "DetailType": "SalesItemLineDetail",
                            "SalesItemLineDetail": {
                                "ItemRef": _ref("1"),
                                "Qty": 1,
                                "UnitPrice": Decimal("250.00"),
                            },
                        }
                    ],
                },
            ],
        },
    }


def make_sandbox(**kwargs: Any) -> Sandbox:
    kwargs.setdefault("clock", SandboxClock(start=START))
    return Sandbox(company(), **kwargs)


class Qbo:
    """A thin test client for the QBO API of one realm; bodies go out and come back with Decimal money."""

    def __init__(self, http: httpx.Client, realm: str = REALM) -> None:
        self.http = http
        self.realm = realm

    def send(self, method: str, resource: str, body: Any = None, **params: Any) -> httpx.Response:
        content = None if body is None else dumps(body)
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        return self.http.request(
            method, f"/v3/company/{self.realm}/{resource}", params=params, content=content, headers=headers
        )

    def create(self, entity: str, body: dict[str, Any], **params: Any) -> httpx.Response:
        return self.send("POST", entity.lower(), body, **params)

    update = create

    def read(self, entity: str, obj_id: str) -> httpx.Response:
        return self.send("GET", f"{entity.lower()}/{obj_id}")

    def delete(self, entity: str, obj_id: str, sync_token: str, **params: Any) -> httpx.Response:
        return self.send("POST", entity.lower(), {"Id": obj_id, "SyncToken": sync_token}, operation="delete", **params)

    def query(self, text: str) -> httpx.Response:
        return self.send("GET", "query", query=text)

    def cdc(self, entities: str, changed_since: str) -> httpx.Response:
        return self.send("GET", "cdc", entities=entities, changedSince=changed_since)

    def batch(self, items: list[dict[str, Any]], **params: Any) -> httpx.Response:
        return self.send("POST", "batch", {"BatchItemRequest": items}, **params)


def body(response: httpx.Response) -> Any:
    """The JSON of a response, money as Decimal."""
    return loads(response.content)


def fault(response: httpx.Response) -> dict[str, str]:
    """The one Error of a standard fault reply."""
    errors = body(response)["Fault"]["Error"]
    assert len(errors) == 1
    return errors[0]


def authorized_client(sandbox: Sandbox, realm: str = REALM, scope: str | None = None) -> httpx.Client:
    tokens = sandbox.issue_tokens(realm, scope) if scope else sandbox.issue_tokens(realm)
    return httpx.Client(
        transport=sandbox.transport(),
        base_url="http://sandbox.local",
        headers={"authorization": f"Bearer {tokens['access_token']}"},
    )
