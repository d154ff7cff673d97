"""The sandbox answers in the golden shapes, which every real answer in tests/qbo/real fits too."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import httpx
import pytest

from pipelines.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from qbo.sandbox import Limits, Sandbox
from qbo.sandbox.webhooks import cloudevents_payload, legacy_payload

from .golden_shapes import GOLDEN, assert_conforms, golden, xml_shape
from .sandbox_helpers import REALM, Qbo, authorized_client, body, make_sandbox


def test_standard_fault(qbo: Qbo) -> None:
    reply = qbo.create("Vendor", {"DisplayName": "Globex"})
    assert reply.status_code == 400
    assert_conforms(body(reply), golden("standard_fault"))


def test_gateway_fault(control: httpx.Client) -> None:
    reply = control.get(f"/v3/company/{REALM}/vendor/1")
    assert reply.status_code == 401
    assert_conforms(body(reply), golden("gateway_fault"))


def test_a_throttle_is_xml_by_default_as_every_real_one_is() -> None:
    sandbox = make_sandbox(limits=Limits(per_minute=0))
    with authorized_client(sandbox) as http:
        reply = Qbo(http).read("Vendor", "1")
    assert reply.status_code == 429 and reply.headers["content-type"] == "application/xml"
    real = (GOLDEN.parent.parent / "real" / "throttle_429_xml_phpsdk54.xml").read_bytes()
    assert xml_shape(reply.content) == xml_shape(real)


def test_the_json_throttle_is_still_the_gateway_shape() -> None:
    sandbox = make_sandbox(limits=Limits(per_minute=0), throttle_format="json")
    with authorized_client(sandbox) as http:
        reply = Qbo(http).read("Vendor", "1")
    assert reply.status_code == 429
    assert_conforms(body(reply), golden("gateway_fault"))


def test_entity_envelope(qbo: Qbo) -> None:
    line = {
        "Amount": 200,
        "DetailType": "AccountBasedExpenseLineDetail",
        "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "4"}},
    }
    bill = {"VendorRef": {"value": "1"}, "TxnDate": "2025-06-11", "Line": [line]}
    created = body(qbo.create("Bill", bill))
    assert_conforms(created, golden("entity_envelope"))
    assert set(created) == {"Bill", "time"} and created["Bill"]["TotalAmt"] == created["Bill"]["Balance"] == 200
    assert_conforms(body(qbo.read("Bill", "1")), golden("entity_envelope"))


def test_delete_reply(qbo: Qbo) -> None:
    reply = body(qbo.delete("Bill", "1", "0"))
    assert_conforms(reply, golden("delete_reply"))
    assert reply["Bill"] == {"status": "Deleted", "domain": "QBO", "Id": "1"}


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("select * from Customer", "query_response"),
        ("select count(*) from Customer", "query_count"),
        ("select * from Customer where DisplayName = 'Nobody'", "query_empty"),
    ],
)
def test_query_responses(qbo: Qbo, query: str, name: str) -> None:
    assert_conforms(body(qbo.query(query)), golden(name))


@pytest.mark.parametrize(
    ("since", "name"),
    [("2025-05-20T00:00:00-07:00", "cdc_response"), ("2025-06-14T00:00:00-07:00", "cdc_empty")],
)
def test_cdc_responses(qbo: Qbo, since: str, name: str) -> None:
    assert_conforms(body(qbo.cdc("Customer", since)), golden(name))


def test_batch_response(qbo: Qbo) -> None:
    reply = qbo.batch(
        [
            {"bId": "2", "operation": "create", "Customer": {"DisplayName": "Batch Customer"}},
            {"bId": "1", "operation": "create", "Customer": {"DisplayName": "Globex"}},
            {"bId": "b3", "Query": "select * from Bill"},
        ]
    )
    assert reply.status_code == 200
    answer = body(reply)
    assert_conforms(answer, golden("batch_response"))
    items = answer["BatchItemResponse"]
    assert [("Customer" in i, "Fault" in i, "QueryResponse" in i) for i in items] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]


def test_token_responses(sandbox: Sandbox, control: httpx.Client) -> None:
    auth = (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    tokens = sandbox.issue_tokens(REALM)
    reply = control.post(
        "/oauth2/v1/tokens/bearer",
        auth=auth,
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert_conforms(body(reply), golden("token_response"))
    again = control.post(
        "/oauth2/v1/tokens/bearer",
        auth=auth,
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert_conforms(body(again), golden("invalid_grant"))


def test_webhook_payloads(sandbox: Sandbox) -> None:
    when = sandbox.clock.now()
    assert_conforms(legacy_payload(REALM, "Customer", "1", "Create", when), golden("webhook_legacy"))
    assert_conforms(cloudevents_payload(REALM, "Account", "1", "Create", when), golden("webhook_cloudevents"))


def test_xml_throttle_fault_is_an_intuit_response() -> None:
    sandbox = make_sandbox(faults="throttle_429_xml=1")
    with authorized_client(sandbox) as http:
        reply = Qbo(http).read("Vendor", "1")
    root = ET.fromstring(reply.content)
    ns = "{http://schema.intuit.com/finance/v3}"
    assert root.tag == f"{ns}IntuitResponse" and root.get("time")
    fault = root.find(f"{ns}Fault")
    assert fault is not None and fault.get("type") == "SERVICE"
    error = fault.find(f"{ns}Error")
    assert error is not None and error.get("code") == "3001"
    assert error.findtext(f"{ns}Message") == "message=ThrottleExceeded; errorCode=003001; statusCode=429"
    # Word for word, two spaces included, as every real throttle in the corpus says it.
    assert error.findtext(f"{ns}Detail") == "The request limit was reached.  Try again later"


def test_the_shape_checker_catches_drift() -> None:
    real = json.loads((GOLDEN.parent.parent / "real" / "duplicate_name_6240_null_qboapi.json").read_text())
    assert_conforms(real, golden("standard_fault"))  # no element, as QBO sent it: optional
    drifted = json.loads(json.dumps(real))
    drifted["Fault"]["Error"][0]["code"] = 6240
    with pytest.raises(AssertionError, match="code"):
        assert_conforms(drifted, golden("standard_fault"))
    del drifted["Fault"]
    with pytest.raises(AssertionError, match="missing keys"):
        assert_conforms(drifted, golden("standard_fault"))
    gateway = golden("gateway_fault")
    gateway["fault"]["error"][0]["detail"] = 7
    with pytest.raises(AssertionError, match="fits none"):
        assert_conforms(gateway, golden("gateway_fault"))
    with pytest.raises(AssertionError, match="no entity key"):
        assert_conforms({"time": "2020-09-29T06:02:35.106-07:00"}, golden("entity_envelope"))
