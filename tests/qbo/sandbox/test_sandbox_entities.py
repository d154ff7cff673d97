"""Create, read, sparse and full update, delete, void and inactivate, with QBO's envelopes (ref §5)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from qbo.sandbox.entities import ENTITIES, NAME_LISTS

from .sandbox_helpers import REALM, Qbo, body, fault

BILL = {
    "VendorRef": {"value": "1"},
    "TxnDate": "2025-06-10",
    "DocNumber": "INV-991",
    "PrivateNote": "awra:bill:BILL-1:v1",
    "Line": [
        {
            "Amount": Decimal("200.00"),
            "DetailType": "AccountBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "4"}},
        }
    ],
}


def test_create_returns_the_entity_envelope_with_ids_as_strings(qbo: Qbo) -> None:
    reply = qbo.create("Bill", BILL, minorversion=75)
    assert reply.status_code == 200
    assert reply.headers["intuit_tid"]
    bill = body(reply)["Bill"]
    assert bill["Id"] == "2" and bill["SyncToken"] == "0"
    assert bill["domain"] == "QBO" and bill["sparse"] is False
    assert bill["TotalAmt"] == Decimal("200.00") and bill["Balance"] == Decimal("200.00")
    assert bill["VendorRef"] == {"value": "1", "name": "Acme Supplies"}
    assert bill["MetaData"]["CreateTime"] == "2025-06-15T10:00:00-07:00"
    assert bill["Line"][0]["Id"] == "1"
    assert bill["CurrencyRef"]["value"] == "USD"
    assert bill["DueDate"] == "2025-06-10"
    assert body(qbo.read("Bill", "2"))["Bill"] == bill


def test_money_comes_back_without_float_error(qbo: Qbo) -> None:
    lines = [
        {
            "Amount": Decimal(amount),
            "DetailType": "AccountBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "4"}},
        }
        for amount in ("0.10", "0.20", "1234567.89")
    ]
    reply = qbo.create("Bill", {**BILL, "DocNumber": "M-1", "Line": lines, "TotalAmt": Decimal("1234568.19")})
    assert reply.status_code == 200, reply.text
    assert b'"TotalAmt":1234568.19' in reply.content


def test_sparse_update_changes_only_what_it_sends_and_bumps_the_sync_token(qbo: Qbo) -> None:
    vendor = body(qbo.create("Vendor", {"DisplayName": "Sparse Co", "CompanyName": "Sparse Inc"}))["Vendor"]
    reply = qbo.update("Vendor", {"Id": vendor["Id"], "SyncToken": "0", "sparse": True, "Notes": "hello"})
    updated = body(reply)["Vendor"]
    assert updated["SyncToken"] == "1"
    assert updated["CompanyName"] == "Sparse Inc" and updated["Notes"] == "hello"
    assert updated["MetaData"]["CreateTime"] == vendor["MetaData"]["CreateTime"]


def test_full_update_clears_the_fields_it_leaves_out(qbo: Qbo) -> None:
    vendor = body(qbo.create("Vendor", {"DisplayName": "Full Co", "CompanyName": "Full Inc"}))["Vendor"]
    reply = qbo.update("Vendor", {"Id": vendor["Id"], "SyncToken": "0", "DisplayName": "Full Co"})
    updated = body(reply)["Vendor"]
    assert updated["SyncToken"] == "1"
    assert "CompanyName" not in updated


def test_name_lists_cannot_be_deleted_only_inactivated(qbo: Qbo) -> None:
    refused = qbo.delete("Vendor", "1", "0")
    assert refused.status_code == 400
    assert fault(refused)["code"] == "500"
    reply = qbo.update("Vendor", {"Id": "1", "SyncToken": "0", "sparse": True, "Active": False})
    assert body(reply)["Vendor"]["Active"] is False
    assert "Vendor" not in body(qbo.query("select * from Vendor"))["QueryResponse"]
    every = body(qbo.query("select * from Vendor where Active IN (true, false)"))["QueryResponse"]["Vendor"]
    assert [v["Id"] for v in every] == ["1", "2"]


def test_a_deleted_transaction_stays_dead(qbo: Qbo) -> None:
    reply = qbo.delete("Bill", "1", "0")
    assert reply.status_code == 200
    assert body(reply)["Bill"] == {"status": "Deleted", "domain": "QBO", "Id": "1"}
    for again in (qbo.read("Bill", "1"), qbo.delete("Bill", "1", "0")):
        assert again.status_code == 400
        assert fault(again)["code"] == "610"
        assert "deleted" in fault(again)["Detail"]
    assert "Bill" not in body(qbo.query("select * from Bill"))["QueryResponse"]


def test_reading_a_missing_object_is_610(qbo: Qbo) -> None:
    reply = qbo.read("Vendor", "999")
    assert reply.status_code == 400
    assert fault(reply)["code"] == "610"


@pytest.mark.parametrize(
    ("entity", "operation", "params"),
    [("Invoice", "void", {}), ("Payment", "update", {"include": "void"})],
)
def test_void_zeroes_the_transaction(qbo: Qbo, entity: str, operation: str, params: dict[str, str]) -> None:
    if entity == "Payment":
        created = qbo.create("Payment", {"CustomerRef": {"value": "1"}, "TotalAmt": Decimal("50.00")})
        obj_id = body(created)["Payment"]["Id"]
    else:
        obj_id = "1"
    reply = qbo.send(
        "POST",
        entity.lower(),
        {"Id": obj_id, "SyncToken": "0", "sparse": True},
        operation=operation,
        **params,
    )
    voided = body(reply)[entity]
    assert voided["TotalAmt"] == 0 and voided["SyncToken"] == "1"
    assert voided["PrivateNote"].startswith("Voided")


def test_payments_reduce_the_invoice_balance_and_bump_its_sync_token(qbo: Qbo) -> None:
    payment = {
        "CustomerRef": {"value": "1"},
        "TotalAmt": Decimal("100.00"),
        "Line": [{"Amount": Decimal("100.00"), "LinkedTxn": [{"TxnId": "1", "TxnType": "Invoice"}]}],
    }
    created = body(qbo.create("Payment", payment))["Payment"]
    assert created["UnappliedAmt"] == 0
    invoice = body(qbo.read("Invoice", "1"))["Invoice"]
    assert invoice["Balance"] == Decimal("150.00") and invoice["SyncToken"] == "1"
    qbo.delete("Payment", created["Id"], "0")
    assert body(qbo.read("Invoice", "1"))["Invoice"]["Balance"] == Decimal("250.00")


def test_invoice_numbers_are_assigned_when_left_out(qbo: Qbo) -> None:
    invoice = {
        "CustomerRef": {"value": "1"},
        "Line": [
            {
                "Amount": 100,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 1, "UnitPrice": 100},
            }
        ],
    }
    assert body(qbo.create("Invoice", invoice))["Invoice"]["DocNumber"] == "1002"


def test_company_info_and_preferences_read_as_single_objects(qbo: Qbo) -> None:
    assert body(qbo.send("GET", f"companyinfo/{REALM}"))["CompanyInfo"]["CompanyName"] == "Tiny Co"
    prefs = body(qbo.send("GET", "preferences"))["Preferences"]
    assert prefs["AccountingInfoPrefs"]["BookCloseDate"] == "2025-01-31"
    reply = qbo.update(
        "Preferences",
        {"Id": "1", "SyncToken": "0", "sparse": True, "AccountingInfoPrefs": {"BookCloseDate": "2025-05-31"}},
    )
    assert body(reply)["Preferences"]["SyncToken"] == "1"


@pytest.mark.parametrize("entity", ["TaxCode", "TaxRate"])
def test_tax_codes_and_rates_are_read_only(qbo: Qbo, entity: str) -> None:
    reply = qbo.create(entity, {"Name": "New"})
    assert reply.status_code == 400 and fault(reply)["code"] == "500"


@pytest.mark.parametrize("entity", ENTITIES)
def test_every_entity_is_queryable(qbo: Qbo, entity: str) -> None:
    reply = qbo.query(f"select count(*) from {entity}")
    assert reply.status_code == 200
    assert isinstance(body(reply)["QueryResponse"]["totalCount"], int)


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"\xff\xfe not utf-8", "500"), (b"{not json", "2010"), (b"[1, 2]", "2010")],
)
def test_unreadable_bodies_are_refused(qbo: Qbo, content: bytes, code: str) -> None:
    reply = qbo.http.post(f"/v3/company/{REALM}/vendor", content=content)
    assert reply.status_code == 400 and fault(reply)["code"] == code


def test_unknown_resources_are_unsupported(qbo: Qbo) -> None:
    reply = qbo.send("GET", "timeactivity/1")
    assert reply.status_code == 400 and fault(reply)["code"] == "500"


def test_name_list_catalog_matches_the_reference() -> None:
    assert set(NAME_LISTS) == {
        "Account",
        "Vendor",
        "Customer",
        "Item",
        "Class",
        "Department",
        "Term",
        "PaymentMethod",
        "Employee",
        "TaxCode",
    }
