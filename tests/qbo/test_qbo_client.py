"""The client's wire rules and every fault shape of ref §3, against a MockTransport QBO."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
from qbo_fakes import (
    HTML_503,
    REALM,
    FakeClock,
    FakeQbo,
    fault_in_200,
    html_503,
    standard_fault,
    truncated_json,
    xml_throttle,
)

from qbo.client import QboCallError, QboClient, parse_body


def test_every_request_carries_minorversion_and_asks_for_json(client: QboClient, fake: FakeQbo) -> None:
    client.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")
    client.read("Vendor", "101")
    client.query("SELECT * FROM Vendor")
    client.company_info()
    for request in fake.api_requests:
        assert request.url.params["minorversion"] == "75"
        assert request.headers["Accept"] == "application/json"
        assert request.headers["Authorization"] == f"Bearer {fake.access}"


def test_writes_carry_the_callers_requestid_and_reads_none(client: QboClient, fake: FakeQbo) -> None:
    created = client.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")
    client.read("Vendor", created.object["Id"])
    write, read = fake.api_requests
    assert write.url.params["requestid"] == "vendor:V1:v1" and created.request_id == "vendor:V1:v1"
    assert "requestid" not in read.url.params
    with pytest.raises(ValueError, match="requestid"):
        client.create("Vendor", {"DisplayName": "B"}, request_id="x" * 51)  # at most 50 (ref §1)


def test_a_repeated_requestid_gets_the_original_answer_not_a_second_vendor(
    client: QboClient, fake: FakeQbo
) -> None:
    first = client.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")
    again = client.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")
    assert again.object["Id"] == first.object["Id"] and again.ok
    assert len(fake.objects["vendor"]) == 1


def test_money_goes_out_and_comes_back_exact(client: QboClient, fake: FakeQbo) -> None:
    line = {"Amount": Decimal("200.10"), "DetailType": "AccountBasedExpenseLineDetail"}
    bill = {"VendorRef": {"value": "56"}, "Line": [line], "TotalAmt": Decimal("1234567890123.45")}
    result = client.create("Bill", bill, request_id="bill:B1:v1")
    sent = fake.api_requests[-1].content.decode()
    assert '"Amount":200.10' in sent and '"TotalAmt":1234567890123.45' in sent
    assert result.object["TotalAmt"] == Decimal("1234567890123.45")
    assert isinstance(result.object["Line"][0]["Amount"], Decimal)


def test_updates_are_sparse_unless_asked_and_need_a_sync_token(client: QboClient, fake: FakeQbo) -> None:
    vendor = client.create(
        "Vendor", {"DisplayName": "Acme", "CompanyName": "Acme Ltd"}, request_id="v1"
    ).object
    updated = client.update(
        "Vendor", {"Id": vendor["Id"], "SyncToken": "0", "DisplayName": "Acme Co"}, request_id="v1-u1"
    )
    assert json.loads(fake.api_requests[-1].content)["sparse"] is True
    assert updated.object["CompanyName"] == "Acme Ltd"  # a full update would have wiped it (ref §11.11)
    with pytest.raises(ValueError, match="SyncToken"):
        client.update("Vendor", {"Id": vendor["Id"], "DisplayName": "x"}, request_id="v1-u2")
    with pytest.raises(QboCallError) as caught:
        client.update(
            "Vendor", {"Id": vendor["Id"], "SyncToken": "0", "DisplayName": "y"}, request_id="v1-u3"
        )
    assert caught.value.outcome.reason == "provider_rejection.stale_object"


def test_delete_posts_the_operation_and_name_lists_cannot_be_deleted(
    client: QboClient, fake: FakeQbo
) -> None:
    bill = client.create("Bill", {"VendorRef": {"value": "56"}}, request_id="b1").object
    client.delete("Bill", bill["Id"], bill["SyncToken"], "b1-del")
    request = fake.api_requests[-1]
    assert request.url.params["operation"] == "delete" and request.url.params["requestid"] == "b1-del"
    assert json.loads(request.content) == {"Id": bill["Id"], "SyncToken": "0"}
    with pytest.raises(ValueError, match="Active false"):
        client.delete("Vendor", "1", "0", "v-del")


def test_allow_duplicate_docnum_is_opt_in(client: QboClient, fake: FakeQbo) -> None:
    client.create("Bill", {"DocNumber": "INV-1"}, request_id="b1")
    client.create("Bill", {"DocNumber": "INV-1"}, request_id="b2", allow_duplicate_docnum=True)
    first, second = fake.api_requests
    assert "include" not in first.url.params and second.url.params["include"] == "allowduplicatedocnum"


# the fault shapes of ref §3
Call = Callable[[QboClient], object]
_CREATE: Call = lambda c: c.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")  # noqa: E731
_READ: Call = lambda c: c.read("Vendor", "58")  # noqa: E731


@pytest.mark.parametrize(
    ("reply", "call", "reason", "code", "text", "tid"),
    [
        (standard_fault, _CREATE, "duplicate_risk.name_exists", "6240", "already exists", "1-6a1f-standard"),
        (
            fault_in_200,
            _CREATE,
            "provider_rejection.business_rule",
            "6000",
            "tax code missing",
            "1-6a1f-200fault",
        ),
        (
            lambda: standard_fault(
                "2500",
                "Invalid Reference Id",
                "Invalid Reference Id : Item 7 is inactive",
                "Line.SalesItemLineDetail.ItemRef",
            ),
            _CREATE,
            "provider_rejection.invalid_reference",
            "2500",
            "Item 7",
            "1-6a1f-standard",
        ),
        (truncated_json, _CREATE, "duplicate_risk.outcome_unknown", None, "Acme Sup", "1-6a1f-truncated"),
    ],
)
def test_each_fault_shape_becomes_a_classified_error_with_the_providers_words(
    client: QboClient,
    fake: FakeQbo,
    reply: Callable[[], httpx.Response],
    call: Call,
    reason: str,
    code: str | None,
    text: str,
    tid: str,
) -> None:
    fake.script(reply())
    with pytest.raises(QboCallError) as caught:
        call(client)
    result = caught.value.result
    assert (result.outcome.reason, result.code, result.intuit_tid) == (reason, code, tid)
    assert text in str(caught.value) and tid in str(caught.value)
    assert result.request_id == "vendor:V1:v1"


def test_the_element_of_a_fault_is_kept(client: QboClient, fake: FakeQbo) -> None:
    fake.script(standard_fault("2500", "Invalid Reference Id", "bad", "Line.SalesItemLineDetail.ItemRef"))
    with pytest.raises(QboCallError) as caught:
        _CREATE(client)
    assert caught.value.result.element == "Line.SalesItemLineDetail.ItemRef"
    assert caught.value.result.fault_type == "ValidationFault"


def test_an_html_503_page_is_retried_on_reads_then_reported_in_plain_words(
    client: QboClient, fake: FakeQbo, clock: FakeClock
) -> None:
    fake.script(html_503(), html_503(), html_503())
    with pytest.raises(QboCallError) as caught:
        _READ(client)
    result = caught.value.result
    assert (result.status, result.outcome.reason, result.attempts) == (
        503,
        "transport.service_unavailable",
        3,
    )
    assert result.message == "503 Service Temporarily Unavailable"
    assert clock.slept == [2.0, 4.0]
    fake.script(html_503())
    fake.objects["vendor"]["58"] = {"Id": "58", "SyncToken": "0", "DisplayName": "Acme"}
    assert _READ(client).object["Id"] == "58"  # one 503, then the retry succeeds


def test_a_500_on_a_write_is_not_resent_but_looked_up_first(client: QboClient, fake: FakeQbo) -> None:
    # "500 resubmit once" (ref §3) is no promise that nothing was saved: the engine looks the record up instead.
    fake.script(
        standard_fault(
            "10000",
            "An application error has occurred",
            "System Failure Error",
            status=500,
            fault_type="SystemFault",
        )
    )
    with pytest.raises(QboCallError) as caught:
        _CREATE(client)
    outcome = caught.value.outcome
    assert (outcome.reason, outcome.retryable, outcome.lookup_first) == ("transport.server_error", True, True)
    assert caught.value.result.attempts == 1 and len(fake.api_requests) == 1


def test_a_timeout_on_a_write_is_ambiguous_and_not_sent_again(client: QboClient, fake: FakeQbo) -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    fake.script(timeout)
    with pytest.raises(QboCallError) as caught:
        _CREATE(client)
    outcome = caught.value.outcome
    assert (outcome.outcome, outcome.reason) == ("ambiguous", "duplicate_risk.outcome_unknown")
    assert len(fake.api_requests) == 1


def test_a_write_that_never_left_is_sent_again_once(client: QboClient, fake: FakeQbo) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    fake.script(refused)
    assert _CREATE(client).ok
    assert len(fake.api_requests) == 2


def test_reads_survive_a_reset_and_a_timeout(client: QboClient, fake: FakeQbo) -> None:
    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer", request=request)

    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    fake.objects["vendor"]["58"] = {"Id": "58", "SyncToken": "0"}
    fake.script(reset, timeout)
    assert _READ(client).attempts == 3
    fake.script(reset, reset, reset)
    with pytest.raises(QboCallError, match="transport.connection_reset"):
        _READ(client)


def test_json_under_the_wrong_content_type_is_still_read(client: QboClient, fake: FakeQbo) -> None:
    fake.script(
        httpx.Response(
            200, content=b'{"Vendor":{"Id":"58","SyncToken":"3"}}', headers={"content-type": "text/plain"}
        )
    )
    assert _READ(client).object == {"Id": "58", "SyncToken": "3"}


def test_xml_where_json_was_asked_is_not_taken_for_success(client: QboClient, fake: FakeQbo) -> None:
    ok_xml = b'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3"><Vendor><Id>58</Id></Vendor></IntuitResponse>'
    fake.script(*[httpx.Response(200, content=ok_xml, headers={"content-type": "application/xml"})] * 3)
    with pytest.raises(QboCallError, match="transport.malformed_response"):
        _READ(client)


def test_no_token_text_ever_reaches_an_error_message(client: QboClient, fake: FakeQbo) -> None:
    echo = f"Bearer {fake.access} was not accepted for {fake.access}"
    fake.script(standard_fault("6000", "Business Validation Error", echo))
    with pytest.raises(QboCallError) as caught:
        _CREATE(client)
    assert fake.access not in str(caught.value) and fake.access not in repr(caught.value.result)
    assert "[redacted]" in str(caught.value)


def test_the_company_and_its_preferences_are_read(client: QboClient, fake: FakeQbo) -> None:
    assert client.company_info().object["CompanyName"] == "Demo Co"
    assert client.preferences().ok
    assert [r.url.path for r in fake.api_requests] == [
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
    gateway = parse_body(
        b'{"warnings":null,"fault":{"error":[{"message":"message=AuthenticationFailed; errorCode=003200; '
        b'statusCode=401","detail":"Malformed bearer token","code":"3200","element":null}],'
        b'"type":"AUTHENTICATION"},"time":1633520295688}'
    )
    assert gateway.fault and gateway.fault.shape == "gateway" and gateway.fault.first.code == "3200"
    assert gateway.fault.time and gateway.fault.time.year == 2021  # epoch milliseconds
    xml = parse_body(xml_throttle(content_type="application/json").content, "application/json")
    assert xml.fault and (xml.fault.shape, xml.fault.type, xml.fault.first.code) == ("xml", "SERVICE", "3001")
    assert xml.fault.first.detail == "The request limit was reached. Try again later"
    html = parse_body(HTML_503, "text/html")
    assert (html.kind, html.summary, html.fault) == ("html", "503 Service Temporarily Unavailable", None)
    oauth_error = parse_body(b'{"error":"invalid_grant","error_description":"Token invalid"}')
    assert oauth_error.fault and oauth_error.fault.first.code == "invalid_grant"
    assert parse_body(truncated_json().content).kind == "malformed"
    assert parse_body(b"").kind == "empty"
    untyped = parse_body(b'{"Fault":{"Error":{"Message":"one","code":"610"},"type":"ValidationFault"}}')
    assert untyped.fault and untyped.fault.first.code == "610"  # a single Error object, not a list
    bare = parse_body(b'{"fault":{"error":[{"message":"message=AuthenticationFailed; errorCode=003200"}]}}')
    assert bare.fault and bare.fault.first.code == "3200"  # no code field: read from the message
