"""Golden shapes: envelopes and faults keep the keys and types of the samples in ref §2, §3, §5-§9."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from qbo.sandbox import Limits, Sandbox
from qbo.sandbox.webhooks import cloudevents_payload, legacy_payload

from .sandbox_helpers import REALM, Qbo, authorized_client, body, make_sandbox

GOLDEN = Path(__file__).parent / "golden"
OPEN = "__open__"  # a golden object marked open may carry more keys than the sample shows


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    return type(value).__name__


def assert_conforms(actual: Any, golden: Any, path: str = "$") -> None:
    """`actual` has the golden sample's structure: same keys (unless open), same JSON types, recursively."""
    if isinstance(golden, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {_kind(actual)}"
        wanted = {k for k in golden if k != OPEN}
        missing = wanted - set(actual)
        assert not missing, f"{path}: missing keys {sorted(missing)}"
        if not golden.get(OPEN):
            extra = set(actual) - wanted
            assert not extra, f"{path}: unexpected keys {sorted(extra)}"
        for key in wanted:
            assert_conforms(actual[key], golden[key], f"{path}.{key}")
    elif isinstance(golden, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {_kind(actual)}"
        if len(golden) == 1:
            for index, item in enumerate(actual):
                assert_conforms(item, golden[0], f"{path}[{index}]")
        elif golden:
            assert len(actual) == len(golden), f"{path}: expected {len(golden)} items"
            for index, (item, sample) in enumerate(zip(actual, golden, strict=True)):
                assert_conforms(item, sample, f"{path}[{index}]")
    else:
        assert _kind(actual) == _kind(golden), f"{path}: expected {_kind(golden)}, got {_kind(actual)}"


def golden(name: str) -> Any:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def test_standard_fault(qbo: Qbo) -> None:
    reply = qbo.create("Vendor", {"DisplayName": "Globex"})
    assert reply.status_code == 400
    assert_conforms(body(reply), golden("standard_fault"))


def test_gateway_fault(control: httpx.Client) -> None:
    reply = control.get(f"/v3/company/{REALM}/vendor/1")
    assert reply.status_code == 401
    assert_conforms(body(reply), golden("gateway_fault"))


def test_throttle_uses_the_gateway_shape() -> None:
    sandbox = make_sandbox(limits=Limits(per_minute=0))
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
    assert_conforms(body(qbo.create("Bill", bill)), golden("entity_envelope"))
    assert_conforms(body(qbo.read("Bill", "1")), golden("entity_envelope"))


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
    assert_conforms(body(reply), golden("batch_response"))


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
    assert error.findtext(f"{ns}Detail") == "The request limit was reached. Try again later"


def test_the_shape_checker_catches_drift() -> None:
    sample = golden("standard_fault")
    drifted = json.loads(json.dumps(sample))
    drifted["Fault"]["Error"][0]["code"] = 6240
    with pytest.raises(AssertionError, match="code"):
        assert_conforms(drifted, sample)
    del drifted["time"]
    with pytest.raises(AssertionError, match="missing keys"):
        assert_conforms(drifted, sample)
