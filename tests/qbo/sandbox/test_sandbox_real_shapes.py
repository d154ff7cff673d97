"""Where the sandbox answered otherwise than real QBO (tests/qbo/real), it now answers as QBO does."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from pipelines.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from qbo.sandbox import Sandbox

from .golden_shapes import assert_conforms, golden
from .sandbox_helpers import REALM, Qbo, authorized_client, body, fault, make_sandbox

TRY_AGAIN = (
    "Business Validation Error: An unexpected error occurred while accessing or saving your data. Please wait a "
    "few minutes and try again. If the problem persists, contact customer support."
)


def _je(doc: str) -> dict[str, Any]:
    def line(posting: str) -> dict[str, Any]:
        return {
            "Amount": Decimal("10.00"),
            "DetailType": "JournalEntryLineDetail",
            "JournalEntryLineDetail": {"PostingType": posting, "AccountRef": {"value": "4"}},
        }

    return {"DocNumber": doc, "TxnDate": "2025-06-10", "Line": [line("Debit"), line("Credit")]}


def test_the_saved_anyway_6000_is_answered_after_the_write_is_stored(sandbox: Sandbox, qbo: Qbo) -> None:
    sandbox.set_faults("try_again_6000@create=1")
    reply = qbo.create("Vendor", {"DisplayName": "Saved Anyway"}, requestid="v-1")
    assert reply.status_code == 400
    error = fault(reply)
    assert (error["code"], error["Detail"]) == ("6000", TRY_AGAIN)
    assert [v["DisplayName"] for v in sandbox.entities(REALM, "Vendor")].count("Saved Anyway") == 1
    sandbox.set_faults(None)
    again = qbo.create("Vendor", {"DisplayName": "Saved Anyway"}, requestid="v-1")
    assert again.status_code == 200 and body(again)["Vendor"]["DisplayName"] == "Saved Anyway"  # the saved answer
    assert [v["DisplayName"] for v in sandbox.entities(REALM, "Vendor")].count("Saved Anyway") == 1


def test_a_system_failure_is_10000_without_the_try_again_text(sandbox: Sandbox, qbo: Qbo) -> None:
    sandbox.set_faults("http_500=1")
    reply = qbo.read("Vendor", "1")
    error = fault(reply)
    assert reply.status_code == 500 and error["code"] == "10000"
    assert error["Detail"].startswith("System Failure Error:") and "try again" not in error["Detail"]


def test_a_duplicate_doc_number_names_the_txn_type_in_words(qbo: Qbo) -> None:
    assert qbo.create("JournalEntry", _je("AA_2025-07_7676ce")).status_code == 200
    error = fault(qbo.create("JournalEntry", _je("AA_2025-07_7676ce")))
    assert error["code"] == "6140"
    assert "DocNumber=AA_2025-07_7676ce is assigned to TxnType=Journal Entry with TxnId=" in error["Detail"]


def test_replies_carry_the_defaults_real_qbo_fills(qbo: Qbo, sandbox: Sandbox) -> None:
    line = {
        "Amount": 20,
        "DetailType": "AccountBasedExpenseLineDetail",
        "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "4"}},
    }
    bill = body(qbo.create("Bill", {"VendorRef": {"value": "1"}, "TxnDate": "2025-06-11", "Line": [line]}))["Bill"]
    assert bill["APAccountRef"] == {"value": "2", "name": "Accounts Payable"}
    sales = {"DetailType": "SalesItemLineDetail", "Amount": 5, "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}
    invoice = body(qbo.create("Invoice", {"CustomerRef": {"value": "1"}, "Line": [sales]}))["Invoice"]
    assert (invoice["PrintStatus"], invoice["EmailStatus"], invoice["TxnTaxDetail"]) == (
        "NeedToPrint",
        "NotSet",
        {"TotalTax": 0},
    )
    assert invoice["TotalAmt"] == 5  # an empty tax detail adds nothing
    funds = sandbox.user_create(REALM, "Account", {"Name": "Undeposited Funds", "AccountType": "Other Current Asset"})
    payment = body(qbo.create("Payment", {"CustomerRef": {"value": "1"}, "TotalAmt": 5}))["Payment"]
    assert payment["DepositToAccountRef"] == {"value": funds["Id"], "name": "Undeposited Funds"}


def test_a_3100_gateway_fault_has_a_null_detail_as_real_ones_do(sandbox: Sandbox) -> None:
    tokens = sandbox.issue_tokens("9130350000000999")  # a token for another company
    with httpx.Client(
        transport=sandbox.transport(),
        base_url="http://sandbox.local",
        headers={"authorization": f"Bearer {tokens['access_token']}"},
    ) as http:
        reply = Qbo(http).read("Vendor", "1")
    assert reply.status_code == 403
    error = body(reply)["fault"]["error"][0]
    assert (error["code"], error["detail"]) == ("3100", None)
    assert_conforms(body(reply), golden("gateway_fault"))


def test_a_token_answer_with_openid_scopes_carries_an_id_token_in_the_golden_shape(sandbox: Sandbox) -> None:
    tokens = sandbox.issue_tokens(REALM, "com.intuit.quickbooks.accounting openid email")
    assert tokens["id_token"]
    assert_conforms(json.loads(json.dumps(tokens)), golden("token_response"))


def test_a_refresh_for_a_user_who_left_is_the_real_invalid_grant(control: httpx.Client, sandbox: Sandbox) -> None:
    tokens = sandbox.issue_tokens(REALM)
    assert control.post(f"/_sandbox/{REALM}/user-left").json() == {"grants": 1}
    reply = control.post(
        "/oauth2/v1/tokens/bearer",
        auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert reply.status_code == 400
    assert body(reply) == {
        "error_description": "Unauthorized Request: User is not a member of the specified Realm",
        "x_error_reason": "user_not_in_realm",
        "x_error_reason_detail": "The user is not in the specified realm",
        "error": "invalid_grant",
    }
    assert_conforms(body(reply), golden("invalid_grant"))


def test_a_url_outside_the_api_is_the_web_servers_html_404(control: httpx.Client) -> None:
    reply = control.get("/v3/%2Fquery%3Fquery=SELECT")
    assert reply.status_code == 404 and reply.headers["content-type"].startswith("text/html")
    assert b"<title>404 Not Found</title>" in reply.content


def test_an_unknown_resource_under_the_company_is_code_500_could_not_find_resource(qbo: Qbo) -> None:
    reply = qbo.send("GET", "customer/1/5")
    error = fault(reply)
    assert reply.status_code == 400 and (error["code"], error["Message"]) == ("500", "Unsupported Operation")
    assert error["Detail"].startswith(f"Operation Could not find resource for relative : /v3/company/{REALM}/")
    assert error["Detail"].endswith(" is not supported.")


def test_the_403_throttle_is_an_injectable_fault() -> None:
    sandbox = make_sandbox(faults="throttle_403_xml=1")
    with authorized_client(sandbox) as http:
        reply = Qbo(http).read("Vendor", "1")
    assert reply.status_code == 403 and b"statusCode=403</Message>" in reply.content


_REF = st.fixed_dictionaries({"Id": st.integers(1, 999).map(str)})


@given(
    rows=st.lists(_REF, min_size=1, max_size=3),
    total=st.none() | st.integers(0, 10_000),
    entity=st.sampled_from(["Customer", "Vendor", "Invoice"]),
)
def test_the_goldens_take_a_page_or_a_cdc_block_with_or_without_total_count(
    rows: list[dict[str, str]], total: int | None, entity: str
) -> None:
    page: dict[str, Any] = {entity: rows, "startPosition": 1, "maxResults": len(rows)}
    if total is not None:
        page["totalCount"] = total  # the issue's corpus saw it on pages and CDC blocks; it must not break a check
    assert_conforms({"QueryResponse": page, "time": "2020-09-29T06:04:24.267-07:00"}, golden("query_response"))
    cdc = {"CDCResponse": [{"QueryResponse": [page, {}]}], "time": "2020-09-29T08:02:53.512-07:00"}
    assert_conforms(cdc, golden("cdc_response"))
