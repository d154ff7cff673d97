"""Change data capture (ref §7): shape, deleted objects, the 1000-object cap and the 30-day look-back."""

from __future__ import annotations

import pytest

from qbo.sandbox import Sandbox

from .sandbox_helpers import REALM, Qbo, authorized_client, body, fault

SINCE = "2025-06-10T00:00:00-07:00"


def test_changes_since_come_back_grouped_by_entity_in_request_order(sandbox: Sandbox, qbo: Qbo) -> None:
    qbo.create("Customer", {"DisplayName": "New Customer"})
    qbo.update("Vendor", {"Id": "1", "SyncToken": "0", "sparse": True, "Notes": "changed"})
    reply = body(qbo.cdc("Vendor,Customer,Invoice", SINCE))
    assert set(reply) == {"CDCResponse", "time"}
    (response,) = reply["CDCResponse"]
    vendors, customers, invoices = response["QueryResponse"]
    assert [v["Id"] for v in vendors["Vendor"]] == ["1"]
    assert (vendors["startPosition"], vendors["maxResults"]) == (1, 1)
    assert [c["DisplayName"] for c in customers["Customer"]] == ["New Customer"]
    assert invoices == {}


def test_no_changes_is_one_empty_object(qbo: Qbo) -> None:
    assert body(qbo.cdc("Vendor", SINCE))["CDCResponse"] == [{"QueryResponse": [{}]}]


def test_loaded_objects_count_as_changed_at_their_last_updated_time(qbo: Qbo) -> None:
    reply = body(qbo.cdc("Item", "2025-05-20T00:00:00-07:00"))
    assert [i["Id"] for i in reply["CDCResponse"][0]["QueryResponse"][0]["Item"]] == ["1", "2", "3"]


def test_deleted_objects_carry_status_deleted(sandbox: Sandbox, qbo: Qbo) -> None:
    qbo.delete("Bill", "1", "0")
    sandbox.user_delete(REALM, "Invoice", "1")
    groups = body(qbo.cdc("Bill,Invoice", SINCE))["CDCResponse"][0]["QueryResponse"]
    for group, entity in zip(groups, ("Bill", "Invoice"), strict=True):
        (deleted,) = group[entity]
        assert deleted["Id"] == "1" and deleted["status"] == "Deleted"
        assert deleted["MetaData"]["LastUpdatedTime"] == "2025-06-15T10:00:00-07:00"
        assert "TotalAmt" not in deleted


def test_the_latest_state_is_returned_once(qbo: Qbo) -> None:
    for note in ("one", "two", "three"):
        token = body(qbo.read("Vendor", "1"))["Vendor"]["SyncToken"]
        qbo.update("Vendor", {"Id": "1", "SyncToken": token, "sparse": True, "Notes": note})
    (vendor,) = body(qbo.cdc("Vendor", SINCE))["CDCResponse"][0]["QueryResponse"][0]["Vendor"]
    assert (vendor["Notes"], vendor["SyncToken"]) == ("three", "3")


def test_at_most_1000_objects_the_oldest_first_and_a_later_window_gets_the_rest(sandbox: Sandbox, qbo: Qbo) -> None:
    for n in range(700):
        sandbox.user_create(REALM, "Customer", {"DisplayName": f"Bulk Customer {n}"})
    sandbox.clock.advance(5)
    for n in range(600):
        sandbox.user_create(REALM, "Vendor", {"DisplayName": f"Bulk Vendor {n}"})
    first = body(qbo.cdc("Customer,Vendor", SINCE))["CDCResponse"][0]["QueryResponse"]
    customers, vendors = first[0]["Customer"], first[1]["Vendor"]
    assert (len(customers), len(vendors)) == (700, 300)
    newest = max(v["MetaData"]["LastUpdatedTime"] for v in vendors)
    rest = body(qbo.cdc("Vendor", newest))["CDCResponse"][0]["QueryResponse"][0]["Vendor"]
    assert {v["Id"] for v in vendors} | {v["Id"] for v in rest} == {
        v["Id"] for v in sandbox.entities(REALM, "Vendor") if v["DisplayName"].startswith("Bulk")
    }


def test_a_look_back_over_30_days_is_refused(sandbox: Sandbox, qbo: Qbo) -> None:
    assert qbo.cdc("Vendor", "2025-05-17T00:00:00-07:00").status_code == 200
    sandbox.clock.advance(2 * 86400)
    with authorized_client(sandbox) as http:  # the first access token expired meanwhile
        reply = Qbo(http).cdc("Vendor", "2025-05-17T00:00:00-07:00")
    assert reply.status_code == 400
    assert fault(reply)["element"] == "changedSince"
    assert "30 days" in fault(reply)["Detail"]


@pytest.mark.parametrize(
    ("entities", "since", "element"),
    [
        ("TaxCode", SINCE, "entities"),
        ("Vendor,TaxRate", SINCE, "entities"),
        ("Gizmo", SINCE, "entities"),
        ("", SINCE, "entities"),
        ("Vendor", "", "changedSince"),
        ("Vendor", "yesterday", "changedSince"),
    ],
)
def test_bad_cdc_requests_name_the_parameter(qbo: Qbo, entities: str, since: str, element: str) -> None:
    reply = qbo.cdc(entities, since)
    assert reply.status_code == 400 and fault(reply)["element"] == element
