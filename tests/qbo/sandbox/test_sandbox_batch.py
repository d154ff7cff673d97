"""Batch (ref §8): up to 30 items run in order, each failing on its own, with a 200 for the whole."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from qbo.sandbox import Sandbox

from .sandbox_helpers import REALM, Qbo, body, fault


def _bill(doc: str, vendor: str = "1", account: str = "4") -> dict[str, Any]:
    return {
        "VendorRef": {"value": vendor},
        "TxnDate": "2025-06-12",
        "DocNumber": doc,
        "Line": [
            {
                "Amount": Decimal("10.00"),
                "DetailType": "AccountBasedExpenseLineDetail",
                "AccountBasedExpenseLineDetail": {"AccountRef": {"value": account}},
            }
        ],
    }


def test_thirty_items_with_mixed_faults_each_answer_for_themselves(sandbox: Sandbox, qbo: Qbo) -> None:
    items: list[dict[str, Any]] = []
    expected: dict[str, str | None] = {}
    for n in range(30):
        bid = f"b{n}"
        kind = n % 6
        if kind == 0:
            items.append({"bId": bid, "operation": "create", "Vendor": {"DisplayName": f"Batch Vendor {n}"}})
            expected[bid] = None
        elif kind == 1:
            items.append({"bId": bid, "operation": "create", "Vendor": {"DisplayName": "Globex"}})
            expected[bid] = "6240"
        elif kind == 2:
            items.append({"bId": bid, "operation": "create", "Bill": _bill(f"BB-{n}", vendor="99")})
            expected[bid] = "2500"
        elif kind == 3:
            items.append({"bId": bid, "operation": "create", "Bill": _bill("B-100")})
            expected[bid] = "6140"
        elif kind == 4:
            items.append({"bId": bid, "Query": "select * from Term"})
            expected[bid] = None
        else:
            items.append(
                {
                    "bId": bid,
                    "operation": "create",
                    "optionsData": "allowduplicatedocnum",
                    "Bill": _bill("B-100"),
                }
            )
            expected[bid] = None
    reply = qbo.batch(items)
    assert reply.status_code == 200
    answers = body(reply)["BatchItemResponse"]
    assert [a["bId"] for a in answers] == [i["bId"] for i in items]
    for answer in answers:
        code = expected[answer["bId"]]
        if code is None:
            assert "Fault" not in answer
            assert set(answer) & {"Vendor", "Bill", "QueryResponse"}
        else:
            assert answer["Fault"]["type"] == "ValidationFault"
            assert answer["Fault"]["Error"][0]["code"] == code
    names = [v["DisplayName"] for v in sandbox.entities(REALM, "Vendor")]
    assert sum(name.startswith("Batch Vendor") for name in names) == 5


def test_thirty_one_items_are_refused_whole(sandbox: Sandbox, qbo: Qbo) -> None:
    items = [{"bId": str(n), "operation": "create", "Vendor": {"DisplayName": f"V{n}"}} for n in range(31)]
    reply = qbo.batch(items)
    assert reply.status_code == 400
    assert fault(reply)["element"] == "BatchItemRequest"
    assert len(sandbox.entities(REALM, "Vendor")) == 2


def test_items_cannot_see_objects_created_earlier_in_the_same_batch(qbo: Qbo) -> None:
    items = [
        {"bId": "v", "operation": "create", "Vendor": {"DisplayName": "Fresh Vendor"}},
        {"bId": "b", "operation": "create", "Bill": _bill("FV-1", vendor="3")},
        {"bId": "q", "Query": "select * from Vendor where DisplayName = 'Fresh Vendor'"},
    ]
    answers = {a["bId"]: a for a in body(qbo.batch(items))["BatchItemResponse"]}
    assert answers["v"]["Vendor"]["Id"] == "3"
    assert answers["b"]["Fault"]["Error"][0]["code"] == "2500"
    assert answers["q"]["QueryResponse"] == {}
    assert qbo.create("Bill", _bill("FV-1", vendor="3")).status_code == 200


def test_update_delete_and_void_items(qbo: Qbo) -> None:
    items = [
        {
            "bId": "u",
            "operation": "update",
            "Vendor": {"Id": "1", "SyncToken": "0", "sparse": True, "Notes": "x"},
        },
        {"bId": "s", "operation": "update", "Customer": {"Id": "1", "SyncToken": "7", "sparse": True}},
        {"bId": "d", "operation": "delete", "Bill": {"Id": "1", "SyncToken": "0"}},
        {"bId": "v", "operation": "update", "optionsData": "void", "Invoice": {"Id": "1", "SyncToken": "0"}},
    ]
    answers = {a["bId"]: a for a in body(qbo.batch(items))["BatchItemResponse"]}
    assert answers["u"]["Vendor"]["SyncToken"] == "1"
    assert answers["s"]["Fault"]["Error"][0]["code"] == "5010"
    assert answers["d"]["Bill"]["status"] == "Deleted"
    assert answers["v"]["Invoice"]["TotalAmt"] == 0


@pytest.mark.parametrize(
    ("payload", "element"),
    [
        ({}, "BatchItemRequest"),
        ({"BatchItemRequest": []}, "BatchItemRequest"),
        ({"BatchItemRequest": [{"Query": "select * from Term"}]}, "BatchItemRequest.bId"),
    ],
)
def test_malformed_batches_are_refused(qbo: Qbo, payload: dict[str, Any], element: str) -> None:
    reply = qbo.send("POST", "batch", payload)
    assert reply.status_code == 400 and fault(reply)["element"] == element


def test_long_bids_work_with_a_requestid_as_in_production(qbo: Qbo) -> None:
    # Real production batches used bIds of 36 to 65 characters (finoptimal/fo_qbo); the sandbox refused 11.
    bid = "JournalEntry|51278|GClayton_COM_022024|Gopher-Hubspot-Commissions"
    items = [{"bId": bid, "Query": "select * from Term"}]
    reply = qbo.batch(items, requestid="r-1")
    assert reply.status_code == 200 and body(reply)["BatchItemResponse"][0]["bId"] == bid
