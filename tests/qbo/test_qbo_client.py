"""The client's wire rules and every fault shape of ref §3, against the sandbox and real captured answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
from real_corpus import CORPUS
from scripted import REALM, SandboxTime, Scripted

from qbo.client import QboCallError, QboClient, parse_body
from qbo.sandbox import Sandbox

# A JSON body cut off mid-way: no server sends it on purpose, so the sandbox cannot; a dropped connection can.
TRUNCATED = b'{"Vendor":{"Id":"58","SyncToken":"0","DisplayName":"Acme Sup'


def _real(name: str, status: int, content_type: str) -> httpx.Response:
    return httpx.Response(status, content=(CORPUS / name).read_bytes(), headers={"content-type": content_type})


def test_every_request_carries_minorversion_and_asks_for_json(client: QboClient, qbo: Scripted) -> None:
    client.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")
    client.read("Vendor", "1")
    client.query("SELECT * FROM Vendor")
    client.company_info()
    for request in qbo.api_requests:
        assert request.url.params["minorversion"] == "75"
        assert request.headers["Accept"] == "application/json"
        assert request.headers["Authorization"] == f"Bearer {qbo.access}"


def test_writes_carry_the_callers_requestid_and_reads_none(client: QboClient, qbo: Scripted) -> None:
    created = client.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")
    client.read("Vendor", created.object["Id"])
    write, read = qbo.api_requests
    assert write.url.params["requestid"] == "vendor:V1:v1" and created.request_id == "vendor:V1:v1"
    assert "requestid" not in read.url.params
    with pytest.raises(ValueError, match="requestid"):
        client.create("Vendor", {"DisplayName": "B"}, request_id="x" * 51)  # at most 50 (ref §1)


def test_a_repeated_requestid_gets_the_original_answer_not_a_second_vendor(client: QboClient, qbo: Scripted) -> None:
    first = client.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")
    again = client.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")
    assert again.object["Id"] == first.object["Id"] and again.ok
    assert [v["DisplayName"] for v in qbo.entities("Vendor")].count("Acme") == 1


def test_money_goes_out_and_comes_back_exact(client: QboClient, qbo: Scripted) -> None:
    line = {
        "Amount": Decimal("1234567890123.45"),
        "DetailType": "AccountBasedExpenseLineDetail",
        "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "4"}},
    }
    bill = {"VendorRef": {"value": "1"}, "Line": [line], "TotalAmt": Decimal("1234567890123.45")}
    result = client.create("Bill", bill, request_id="bill:B1:v1")
    sent = qbo.api_requests[-1].content.decode()
    assert '"Amount":1234567890123.45' in sent and '"TotalAmt":1234567890123.45' in sent
    assert result.object["TotalAmt"] == Decimal("1234567890123.45")
    assert isinstance(result.object["Line"][0]["Amount"], Decimal)


def test_updates_are_sparse_unless_asked_and_need_a_sync_token(client: QboClient, qbo: Scripted) -> None:
    vendor = client.create("Vendor", {"DisplayName": "Acme", "CompanyName": "Acme Ltd"}, request_id="v1").object
    updated = client.update(
        "Vendor", {"Id": vendor["Id"], "SyncToken": "0", "DisplayName": "Acme Co"}, request_id="v1-u1"
    )
    assert json.loads(qbo.api_requests[-1].content)["sparse"] is True
    assert updated.object["CompanyName"] == "Acme Ltd"  # a full update would have wiped it (ref §11.11)
    with pytest.raises(ValueError, match="SyncToken"):
        client.update("Vendor", {"Id": vendor["Id"], "DisplayName": "x"}, request_id="v1-u2")
    with pytest.raises(QboCallError) as caught:
        client.update("Vendor", {"Id": vendor["Id"], "SyncToken": "0", "DisplayName": "y"}, request_id="v1-u3")
    assert caught.value.outcome.reason == "provider_rejection.stale_object"


def test_delete_posts_the_operation_and_name_lists_cannot_be_deleted(client: QboClient, qbo: Scripted) -> None:
    client.delete("Bill", "1", "0", "b1-del")
    request = qbo.api_requests[-1]
    assert request.url.params["operation"] == "delete" and request.url.params["requestid"] == "b1-del"
    assert json.loads(request.content) == {"Id": "1", "SyncToken": "0"}
    assert [b.get("status") for b in qbo.entities("Bill")] == ["Deleted"]
    with pytest.raises(ValueError, match="Active false"):
        client.delete("Vendor", "1", "0", "v-del")


def test_allow_duplicate_docnum_is_opt_in(client: QboClient, qbo: Scripted) -> None:
    line = {
        "Amount": 5,
        "DetailType": "AccountBasedExpenseLineDetail",
        "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "4"}},
    }
    bill = {"VendorRef": {"value": "1"}, "DocNumber": "B-100", "Line": [line]}  # Bill 1 has it already
    with pytest.raises(QboCallError, match="duplicate_risk.doc_number_exists"):
        client.create("Bill", bill, request_id="b1")
    assert client.create("Bill", bill, request_id="b2", allow_duplicate_docnum=True).ok
    first, second = qbo.api_requests
    assert "include" not in first.url.params and second.url.params["include"] == "allowduplicatedocnum"


# the fault shapes of ref §3
Call = Callable[[QboClient], object]
_CREATE: Call = lambda c: c.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")  # noqa: E731
_READ: Call = lambda c: c.read("Vendor", "1")  # noqa: E731


def test_a_fault_from_the_business_rules_becomes_a_classified_error_with_the_providers_words(
    client: QboClient,
) -> None:
    with pytest.raises(QboCallError) as caught:  # the sandbox company has a customer named Globex
        client.create("Vendor", {"DisplayName": "Globex"}, request_id="vendor:V1:v1")
    result = caught.value.result
    assert (result.outcome.reason, result.code, result.fault_type) == (
        "duplicate_risk.name_exists",
        "6240",
        "ValidationFault",
    )
    assert "already exists" in str(caught.value) and result.intuit_tid and result.intuit_tid in str(caught.value)
    assert result.request_id == "vendor:V1:v1"


def test_the_element_of_a_fault_is_kept(client: QboClient) -> None:
    line = {"Amount": 5, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "3"}}}
    with pytest.raises(QboCallError) as caught:  # item 3 is inactive
        client.create("Invoice", {"CustomerRef": {"value": "1"}, "Line": [line]}, request_id="inv:1:v1")
    result = caught.value.result
    assert (result.outcome.reason, result.code) == ("provider_rejection.invalid_reference", "2500")
    assert result.element == "Line.SalesItemLineDetail.ItemRef" and "inactive" in (result.detail or "")


def test_a_fault_in_a_200_is_no_success(client: QboClient, qbo: Scripted) -> None:
    # Real: QBO answered this query fault with HTTP 200 in 2015 (qbo_api cassette); the sandbox answers 400.
    qbo.script(_real("query_parse_4000_in_200_qboapi.json", 200, "application/json;charset=UTF-8"))
    with pytest.raises(QboCallError) as caught:
        client.query('SELECT * FROM Customer WHERE DisplayName = "Amy\'s"')
    assert (caught.value.result.status, caught.value.result.code) == (200, "4000")
    assert caught.value.outcome.reason == "provider_rejection.query_rejected"


def test_a_truncated_body_to_a_write_is_ambiguous(client: QboClient, qbo: Scripted) -> None:
    qbo.script(httpx.Response(200, content=TRUNCATED, headers={"content-type": "application/json"}))
    with pytest.raises(QboCallError) as caught:
        _CREATE(client)
    assert caught.value.outcome.reason == "duplicate_risk.outcome_unknown" and "Acme Sup" in str(caught.value)


def test_an_html_503_page_is_retried_on_reads_then_reported_in_plain_words(
    client: QboClient, sandbox: Sandbox, clock: SandboxTime
) -> None:
    sandbox.set_faults("http_503_html@read=1")
    with pytest.raises(QboCallError) as caught:
        _READ(client)
    result = caught.value.result
    assert (result.status, result.outcome.reason, result.attempts) == (503, "transport.service_unavailable", 3)
    assert result.message == "503 Service Temporarily Unavailable"
    assert clock.slept == [2.0, 4.0]
    sandbox.set_faults(None)
    assert _READ(client).object["Id"] == "1"


def test_a_500_on_a_write_is_not_resent_but_looked_up_first(client: QboClient, qbo: Scripted, sandbox: Sandbox) -> None:
    # "500 resubmit once" (ref §3) is no promise that nothing was saved: the engine looks the record up instead.
    sandbox.set_faults("http_500@create=1")
    with pytest.raises(QboCallError) as caught:
        _CREATE(client)
    outcome = caught.value.outcome
    assert (outcome.reason, outcome.retryable, outcome.lookup_first) == ("transport.server_error", True, True)
    assert caught.value.result.attempts == 1 and len(qbo.api_requests) == 1


def test_a_timeout_on_a_write_is_ambiguous_and_not_sent_again(
    client: QboClient, qbo: Scripted, sandbox: Sandbox
) -> None:
    sandbox.set_faults("timeout_after_commit@create=1")
    with pytest.raises(QboCallError) as caught:
        _CREATE(client)
    outcome = caught.value.outcome
    assert (outcome.outcome, outcome.reason) == ("ambiguous", "duplicate_risk.outcome_unknown")
    assert len(qbo.api_requests) == 1
    assert [v["DisplayName"] for v in qbo.entities("Vendor")].count("Acme") == 1  # it was saved


def test_a_write_that_never_left_is_sent_again_once(client: QboClient, qbo: Scripted) -> None:
    def refused(request: httpx.Request) -> httpx.Response:  # the sandbox cannot refuse a connection
        raise httpx.ConnectError("connection refused", request=request)

    qbo.script(refused)
    assert _CREATE(client).ok
    assert len(qbo.api_requests) == 2


def test_reads_survive_a_reset_and_a_timeout(client: QboClient, qbo: Scripted) -> None:
    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer", request=request)

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    qbo.script(reset, timeout)  # on these two calls exactly, then the sandbox answers
    assert _READ(client).attempts == 3
    qbo.script(reset, reset, reset)
    with pytest.raises(QboCallError, match="transport.connection_reset"):
        _READ(client)


def test_json_under_the_wrong_content_type_is_still_read(client: QboClient, qbo: Scripted) -> None:
    qbo.script(
        httpx.Response(200, content=b'{"Vendor":{"Id":"58","SyncToken":"3"}}', headers={"content-type": "text/plain"})
    )
    assert client.read("Vendor", "58").object == {"Id": "58", "SyncToken": "3"}


def test_xml_where_json_was_asked_is_not_taken_for_success(client: QboClient, qbo: Scripted) -> None:
    ok_xml = (
        b'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3"><Vendor><Id>58</Id></Vendor></IntuitResponse>'
    )
    qbo.script(*[httpx.Response(200, content=ok_xml, headers={"content-type": "application/xml"})] * 3)
    with pytest.raises(QboCallError, match="transport.malformed_response"):
        _READ(client)


def test_no_token_text_ever_reaches_an_error_message(client: QboClient, qbo: Scripted) -> None:
    _READ(client)  # connected and used: the wire knows the access token
    echo = f"Bearer {qbo.access} was not accepted for {qbo.access}"
    body = {"Fault": {"Error": [{"Message": "Business Validation Error", "Detail": echo, "code": "6000"}]}}
    qbo.script(httpx.Response(400, json=body))
    with pytest.raises(QboCallError) as caught:
        _CREATE(client)
    assert qbo.access and qbo.access not in str(caught.value) and qbo.access not in repr(caught.value.result)
    assert "[redacted]" in str(caught.value)


def test_the_company_and_its_preferences_are_read(client: QboClient, qbo: Scripted) -> None:
    assert client.company_info().object["CompanyName"] == "Tiny Co"
    assert client.preferences().ok
    assert [r.url.path for r in qbo.api_requests] == [
        f"/v3/company/{REALM}/companyinfo/{REALM}",
        f"/v3/company/{REALM}/preferences",
    ]


def test_ids_and_realms_cannot_change_the_path(client: QboClient) -> None:
    with pytest.raises(ValueError):
        client.read("Vendor", "58/../../other")
    with pytest.raises(ValueError):
        client.read("Vendor; DROP", "1")


# parse_body, shape by shape
def test_parse_body_reads_every_shape_of_ref_3() -> None:
    gateway = parse_body((CORPUS / "gateway_401_malformed_bearer_pqb250.json").read_bytes())
    assert gateway.fault and gateway.fault.shape == "gateway" and gateway.fault.first.code == "3200"
    assert gateway.fault.time and gateway.fault.time.year == 2021  # epoch milliseconds
    xml = parse_body((CORPUS / "throttle_429_xml_phpsdk54.xml").read_bytes(), "application/json")
    assert xml.fault and (xml.fault.shape, xml.fault.type, xml.fault.first.code) == ("xml", "SERVICE", "3001")
    assert xml.fault.first.detail == "The request limit was reached.  Try again later"
    html = parse_body((CORPUS / "html_503_avi_qboapi81.html").read_bytes(), "text/html")
    assert (html.kind, html.summary, html.fault) == ("html", "503 Service Temporarily Unavailable", None)
    oauth_error = parse_body(b'{"error":"invalid_grant","error_description":"Token invalid"}')
    assert oauth_error.fault and oauth_error.fault.first.code == "invalid_grant"
    assert parse_body(TRUNCATED).kind == "malformed"
    assert parse_body(b"").kind == "empty"
    untyped = parse_body(b'{"Fault":{"Error":{"Message":"one","code":"610"},"type":"ValidationFault"}}')
    assert untyped.fault and untyped.fault.first.code == "610"  # a single Error object, not a list
    bare = parse_body(b'{"fault":{"error":[{"message":"message=AuthenticationFailed; errorCode=003200"}]}}')
    assert bare.fault and bare.fault.first.code == "3200"  # no code field: read from the message
