"""One regression per way real QuickBooks answers were misread: each fails on the client as it was before."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import Box
from hypothesis import given, settings
from hypothesis import strategies as st
from real_corpus import CORPUS, Sample, body_of, load
from scripted import Scripted

from qbo import faults
from qbo.client import BatchItem, QboCallError, QboClient, parse_body
from qbo.faults import CATALOGUE, classify

SAMPLES = {s.name: s for s in load()}


def _answer(name: str, status: int, content_type: str = "application/json") -> httpx.Response:
    return httpx.Response(status, content=body_of(SAMPLES[name]), headers={"content-type": content_type})


def _create(client: QboClient) -> QboCallError:
    with pytest.raises(QboCallError) as caught:
        client.create("JournalEntry", {"Line": []}, request_id="je:1:v1")
    return caught.value


# 1. The 6000 that asks to try again is QBO's trouble; the write may be saved, so it is looked up first.
def test_1_the_try_again_6000_is_transport_owned_by_the_system_and_looked_up_before_any_resend(
    client: QboClient, qbo: Scripted
) -> None:
    qbo.script(_answer("fault_6000_try_again_fo_qbo.pylit", 400))
    err = _create(client)
    outcome = err.outcome
    assert (outcome.dimension, outcome.reason, outcome.owner) == ("transport", "transport.try_again", "system")
    assert outcome.retryable and outcome.lookup_first
    assert len(qbo.api_requests) == 1  # and never resent by the client


# 2. Every error of a fault is kept, shown and classified; the record gets the one PRECEDENCE puts first.
def test_2_a_6140_beside_three_missing_accountrefs_is_a_record_to_fix_and_every_error_is_kept(
    client: QboClient, qbo: Scripted
) -> None:
    sample = SAMPLES["batch_6140_2020_fo_qbo.pylit"]
    qbo.script(httpx.Response(200, content=body_of(sample), headers={"content-type": "application/json"}))
    bids = list(sample.expect["batch"])
    results = client.batch([BatchItem(b, "create", "JournalEntry", {"Line": []}) for b in bids], request_id="je-b")
    first = results[bids[0]]
    assert first.outcome.reason == "provider_rejection.required_field_missing" and first.code == "2020"
    assert [e.code for e in first.errors] == ["6140", "2020", "2020", "2020"]
    assert [o.reason for o in first.error_outcomes] == [
        "duplicate_risk.doc_number_exists",
        *["provider_rejection.required_field_missing"] * 3,
    ]
    assert "6140" in first.detail and "TxnType=Journal Entry" in first.detail  # shown in the record's chain
    assert len(first.describe_errors()) == 4


@given(
    st.lists(
        st.sampled_from(sorted({c for r in CATALOGUE.values() for c in r.codes if c.isdigit()})), min_size=1, max_size=6
    ),
    st.sampled_from([200, 400]),
)
@settings(max_examples=200, deadline=None)
def test_2_the_deciding_error_is_the_first_by_precedence_whatever_the_order(codes: list[str], status: int) -> None:
    index, outcomes = faults.classify_errors(status, [(c, "m", "d") for c in codes], write=True, operation="create")
    assert len(outcomes) == len(codes)
    rank = [faults.PRECEDENCE.index(o.dimension) for o in outcomes]
    assert rank[index] == min(rank) and index == rank.index(min(rank))


# 3. An HTML 404 is a wrong address for an admin, not a missing object for finance.
def test_3_an_html_404_page_is_a_wrong_address_for_an_admin(client: QboClient, qbo: Scripted) -> None:
    qbo.script(_answer("html_404_apache_qboapi.html", 404, "text/html; charset=iso-8859-1"))
    with pytest.raises(QboCallError) as caught:
        client.query("SELECT * FROM Customer")
    outcome = caught.value.outcome
    assert (outcome.dimension, outcome.owner) == ("authorization", "admin")
    assert outcome.reason == "authorization.wrong_address"


# 4. A 610 in answer to a delete: what the delete asked for is done.
def test_4_a_610_to_a_delete_is_the_delete_done(client: QboClient, qbo: Scripted) -> None:
    qbo.script(_answer("object_not_found_610_deleted_pqb117.pylit", 400))
    done = client.delete("JournalEntry", "4351", "0", "je:4351:del")
    assert done.ok and done.outcome is faults.ALREADY_DELETED and done.code == "610" and done.object is None
    # To a create, the same 610 is still a missing object the record points at.
    qbo.script(_answer("object_not_found_610_deleted_pqb117.pylit", 400))
    assert _create(client).outcome.reason == "provider_rejection.object_not_found"


# 5. Codes seen in real answers have their own reason instead of "unknown fault".
@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("4001", "provider_rejection.query_rejected"),
        ("2050", "provider_rejection.invalid_value"),
        ("2080", "provider_rejection.invalid_value"),
        ("2010", "provider_rejection.invalid_request"),
        ("2030", "provider_rejection.invalid_request"),
        ("10100", "provider_rejection.result_too_large"),
        ("6070", "provider_rejection.amount_mismatch"),
        ("6002", "transport.gateway_timeout"),
        ("130", "scope_or_environment"),
    ],
)
def test_5_codes_seen_in_real_answers_are_catalogued(code: str, reason: str) -> None:
    assert classify(400, code).reason.endswith(reason)


def test_5_an_unknown_code_on_a_write_is_looked_up_first_and_counted() -> None:
    before = faults.unknown_codes().get("98765", 0)
    outcome = classify(400, "98765", write=True)
    assert (outcome.reason, outcome.owner, outcome.lookup_first) == ("provider_rejection.unknown_fault", "admin", True)
    assert classify(503, "98765", write=True).reason == "transport.service_unavailable"
    assert faults.unknown_codes()["98765"] == before + 1


# 6. A fault in XML that does not parse keeps its code; in an XML batch each item keeps its own fault.
def test_6_a_fault_in_broken_xml_keeps_its_code() -> None:
    parsed = parse_body((CORPUS / "auth_3200_xml_malformed_qboapi.xml").read_bytes(), "text/xml")
    assert parsed.kind == "malformed" and parsed.fault is not None
    assert parsed.fault.first.code == "3200" and parsed.fault.type == "AUTHENTICATION"
    assert "ApplicationAuthenticationFailed" in (parsed.fault.first.message or "")


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60))
def test_6_the_code_survives_whatever_breaks_the_detail(junk: str) -> None:
    body = (
        '<IntuitResponse xmlns="http://schema.intuit.com/finance/v3"><Fault type="AUTHENTICATION">'
        f'<Error code="3200"><Message>m</Message><Detail>a <b{junk}</Detail></Error></Fault></IntuitResponse>'
    ).encode()
    parsed = parse_body(body, "text/xml")
    assert parsed.fault is not None and parsed.fault.first.code == "3200"


def test_6_in_an_xml_batch_each_item_keeps_its_own_fault(client: QboClient, qbo: Scripted) -> None:
    sample = SAMPLES["batch_xml_2050_2080_qbruby.xml"]
    qbo.script(httpx.Response(200, content=sample.raw(), headers={"content-type": "application/xml"}))
    entities = sample.entry["batch_entities"]
    results = client.batch([BatchItem(b, "create", e, {"DisplayName": b}) for b, e in entities.items()], request_id="x")
    assert results["1a"].outcome.reason == "provider_rejection.invalid_value"
    assert [e.code for e in results["1a"].errors] == ["2050", "2080"]
    assert all(results[b].ok for b in entities if b != "1a")
    assert results["2b"].object["DisplayName"] == "Mark Basler"


# 7. A 10000 at HTTP 400 is no 5xx: the write is not sent again (nor after a 5xx: it is looked up first).
def test_7_a_write_answered_10000_at_http_400_is_sent_once(client: QboClient, qbo: Scripted) -> None:
    body = json.dumps(
        {"Fault": {"Error": [{"Message": "m", "Detail": "System Failure Error: x", "code": "10000"}], "type": "x"}}
    )
    qbo.script(httpx.Response(400, content=body.encode(), headers={"content-type": "application/json"}))
    err = _create(client)
    assert len(qbo.api_requests) == 1 and err.result.attempts == 1
    assert err.outcome.reason == "transport.server_error" and err.outcome.lookup_first


# 8. invalid_grant with x_error_reason user_not_in_realm: the admin reads that the user left the company.
def test_8_a_user_who_left_the_company_is_named_and_the_realm_waits_for_a_reconnect(box: Box) -> None:
    box.sandbox.user_left(box.client.realm_id)
    box.sandbox.clock.advance(3600)  # the access token expires: the next call refreshes
    with pytest.raises(QboCallError) as caught:
        box.client.read("Vendor", "1")
    outcome = caught.value.outcome
    assert (outcome.reason, outcome.owner) == ("authorization.user_not_in_company", "admin")
    assert "not a member of this company" in outcome.explanation
    status = box.tokens.status(box.client.realm_id)
    assert (status.status, status.reason) == ("reconnect_needed", "authorization.user_not_in_company")


# 9. Production batches used bIds of 36 to 65 characters.
def test_9_long_production_bids_are_sent_and_matched(box: Box) -> None:
    bids = [b for s in load() if s.kind == "batch" for b in s.expect["batch"] if len(b) > 30]
    assert max(len(b) for b in bids) == 65
    items = [BatchItem(b, "create", "Vendor", {"DisplayName": f"Vendor {n}"}) for n, b in enumerate(bids)]
    results = box.client.batch(items, request_id="long-bids")
    assert set(results) == set(bids) and all(r.ok and r.object["Id"] for r in results.values())


def test_the_corpus_has_a_sample_for_every_numbered_problem() -> None:
    kinds = {s.name: s for s in load()}
    for name in (
        "fault_6000_try_again_fo_qbo.pylit",
        "batch_6140_2020_fo_qbo.pylit",
        "html_404_apache_qboapi.html",
        "batch_610_deleted_fo_qbo.pylit",
        "result_set_big_10100_ojs188.json",
        "auth_3200_xml_malformed_qboapi.xml",
        "token_user_not_in_realm_fo_qbo.pylit",
    ):
        assert isinstance(kinds[name], Sample)
