"""CDC over the 1000-object cap (split, merge, dedupe, verify) and batches of at most 30 matched by bId."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from scripted import REALM, SandboxTime, Scripted

from qbo.client import BatchItem, CdcWindowError, QboClient
from qbo.sandbox import Sandbox


def _changes(sandbox: Sandbox, clock: SandboxTime, entity: str, count: int, start: datetime) -> list[str]:
    """`count` objects made one second apart from `start` (the clock moves on to it: it never goes back), as QBO
    users would; their Ids."""
    made = []
    for n in range(count):
        clock.at(start + timedelta(seconds=n))
        body = {"DisplayName": f"{entity} {n}"} if entity == "Vendor" else {"VendorRef": {"value": "1"}}
        made.append(sandbox.user_create(REALM, entity, body)["Id"])
    return made


def _cdc_requests(qbo: Scripted) -> list[httpx.Request]:
    return [r for r in qbo.api_requests if r.url.path.endswith("/cdc")]


def test_cdc_under_the_cap_is_one_call(client: QboClient, qbo: Scripted, sandbox: Sandbox, clock: SandboxTime) -> None:
    since = clock.now - timedelta(days=1)
    made = _changes(sandbox, clock, "Vendor", 10, clock.now)
    clock.advance(2 * 86400)
    found = client.cdc(["Vendor", "Bill"], since)
    assert ([v["Id"] for v in found["Vendor"]], found["Bill"]) == (made, [])
    request = _cdc_requests(qbo)[0]
    assert request.url.params["entities"] == "Vendor,Bill" and len(qbo.api_requests) == 1


def test_cdc_over_the_cap_splits_the_window_and_loses_nothing(
    client: QboClient, qbo: Scripted, sandbox: Sandbox, clock: SandboxTime
) -> None:
    since, start = clock.now - timedelta(days=1), clock.now
    vendors = _changes(sandbox, clock, "Vendor", 1500, start)
    bills = _changes(sandbox, clock, "Bill", 1000, start + timedelta(seconds=1500))
    clock.advance(86400)
    sandbox.user_delete(REALM, "Bill", bills[0])
    found = client.cdc(["Vendor", "Bill"], since)
    assert [v["Id"] for v in found["Vendor"]] == vendors  # every one, once, in the order they changed
    assert [b["Id"] for b in found["Bill"]] == [*bills[1:], bills[0]] and found["Bill"][-1]["status"] == "Deleted"
    windows = [r.url.params["changedSince"] for r in _cdc_requests(qbo)]
    assert len(windows) >= 3 and windows == sorted(windows)  # each window starts where the last one ended
    assert not [r for r in qbo.api_requests if "SELECT *" in r.url.params.get("query", "")]  # no fallback


def test_cdc_is_completed_by_a_query_when_the_cap_drops_the_oldest(
    client: QboClient, qbo: Scripted, sandbox: Sandbox, clock: SandboxTime
) -> None:
    since = clock.now - timedelta(days=1)
    made = _changes(sandbox, clock, "Vendor", 1800, clock.now)
    clock.advance(86400)

    def newest(request: httpx.Request) -> httpx.Response:
        # Were QBO to keep the newest 1000 (unconfirmed, ref §7), walking forward would miss changes. The sandbox
        # keeps the oldest; this answer is the sandbox's own CDC with the other thousand.
        answer = qbo.inner.handle_request(request)
        if not request.url.path.endswith("/cdc"):
            return answer
        vendors = [v for v in qbo.entities("Vendor") if v["Id"] in set(made)][-1000:]
        return httpx.Response(200, json={"CDCResponse": [{"QueryResponse": [{"Vendor": vendors}]}]})

    qbo.script(*[newest] * 10)
    found = client.cdc(["Vendor"], since)
    assert sorted(int(o["Id"]) for o in found["Vendor"]) == sorted(int(i) for i in made)
    assert [r for r in qbo.api_requests if "SELECT * FROM Vendor" in r.url.params.get("query", "")]


def test_cdc_keeps_the_newest_version_and_a_deletion_is_final(client: QboClient, qbo: Scripted) -> None:
    # One object in two windows, old then new: the sandbox's CDC lists each object once, at its latest change.
    base = qbo.sandbox.clock.now() - timedelta(days=1)

    def bill(oid: int, token: str, seconds: int, **extra: str) -> dict:
        at = (base + timedelta(seconds=seconds)).isoformat(timespec="seconds")
        return {"Id": str(oid), "SyncToken": token, "MetaData": {"LastUpdatedTime": at}, **extra}

    full = [bill(n, "0", n) for n in range(1, 1001)]
    later = [bill(7, "1", 2000), bill(8, "0", 2001, status="Deleted")]
    qbo.script(
        httpx.Response(200, json={"CDCResponse": [{"QueryResponse": [{"Bill": full}]}]}),
        httpx.Response(200, json={"CDCResponse": [{"QueryResponse": [{"Bill": later}]}]}),
        httpx.Response(200, json={"QueryResponse": {"totalCount": 999}}),
    )
    found = {o["Id"]: o for o in client.cdc(["Bill"], base)["Bill"]}
    assert len(found) == 1000
    assert found["7"]["SyncToken"] == "1" and found["8"]["status"] == "Deleted"


def test_cdc_leaves_changes_after_until_to_the_next_window(
    client: QboClient, sandbox: Sandbox, clock: SandboxTime
) -> None:
    since, start = clock.now - timedelta(days=1), clock.now
    made = _changes(sandbox, clock, "Vendor", 10, start)
    clock.advance(86400)
    until = start + timedelta(seconds=4)
    assert [o["Id"] for o in client.cdc(["Vendor"], since, until)["Vendor"]] == made[:4]


def test_cdc_refuses_a_look_back_over_30_days_before_asking(
    client: QboClient, qbo: Scripted, clock: SandboxTime
) -> None:
    with pytest.raises(CdcWindowError, match="30 days"):
        client.cdc(["Vendor"], clock.now - timedelta(days=31))
    with pytest.raises(ValueError, match="TaxCode"):
        client.cdc(["TaxCode"], clock.now - timedelta(days=1))  # not in CDC (ref §7)
    assert qbo.api_requests == []


# batch
def _vendor_items(count: int) -> list[BatchItem]:
    return [BatchItem(f"v{n}", "create", "Vendor", {"DisplayName": f"Vendor {n}"}) for n in range(1, count + 1)]


def test_a_batch_of_30_with_mixed_faults_is_matched_by_bid(client: QboClient, qbo: Scripted, sandbox: Sandbox) -> None:
    sandbox.user_create(REALM, "Vendor", {"DisplayName": "Vendor 4"})
    items = _vendor_items(29) + [BatchItem("q", query="SELECT * FROM Vendor")]
    results = client.batch(items, request_id="run-7:batch")
    assert len(results) == 30 and len(qbo.api_requests) == 1
    assert results["v4"].outcome.reason == "duplicate_risk.name_exists" and results["v4"].code == "6240"
    assert results["v5"].ok and results["v5"].object["DisplayName"] == "Vendor 5"
    assert results["q"].ok and results["q"].operation == "batch.query"
    assert all(r.request_id == "run-7:batch" and r.bid == bid for bid, r in results.items())
    sent = qbo.api_requests[0]
    assert sent.url.params["requestid"] == "run-7:batch" and sent.url.params["minorversion"] == "75"


def test_more_than_30_items_go_in_batches_of_30_and_a_retry_creates_nothing_twice(
    client: QboClient, qbo: Scripted
) -> None:
    before = len(qbo.entities("Vendor"))
    results = client.batch(_vendor_items(65), request_id="run-7")
    sizes = [len(json.loads(r.content)["BatchItemRequest"]) for r in qbo.api_requests]
    assert sizes == [30, 30, 5] and len(results) == 65 and all(r.ok for r in results.values())
    ids = [r.url.params["requestid"] for r in qbo.api_requests]
    assert len(set(ids)) == 3 and all(len(i) == 36 and uuid.UUID(i) for i in ids)  # ref §1: 36 on batch
    again = client.batch(_vendor_items(65), request_id="run-7")  # the same run, retried
    assert [r.url.params["requestid"] for r in qbo.api_requests[3:]] == ids
    assert {b: r.object["Id"] for b, r in again.items()} == {b: r.object["Id"] for b, r in results.items()}
    assert len(qbo.entities("Vendor")) == before + 65


def test_an_item_without_an_answer_is_ambiguous(client: QboClient, qbo: Scripted) -> None:
    # QBO answering one item of two is not something the sandbox does; the client must not take it as success.
    qbo.script(httpx.Response(200, json={"BatchItemResponse": [{"bId": "v1", "Vendor": {"Id": "9"}}]}))
    results = client.batch(_vendor_items(2), request_id="r1")
    assert results["v1"].ok and results["v2"].outcome.outcome == "ambiguous"


def test_after_a_failed_batch_the_rest_are_held_back(client: QboClient, qbo: Scripted, sandbox: Sandbox) -> None:
    before = qbo.entities("Vendor")
    sandbox.set_faults("http_500@batch=1")
    results = client.batch(_vendor_items(65), request_id="run-8")
    # The first batch only: a 5xx may have saved some of it, so it is looked up, never resubmitted blindly.
    assert len(qbo.api_requests) == 1
    assert {results[f"v{n}"].outcome.reason for n in range(1, 31)} == {"transport.server_error"}
    assert all(results[f"v{n}"].outcome.lookup_first for n in range(1, 31))
    assert {results[f"v{n}"].outcome.reason for n in range(31, 66)} == {"transport.not_sent"}
    assert qbo.entities("Vendor") == before


def test_bids_must_be_visible_text_of_at_most_100_characters_and_unique(client: QboClient) -> None:
    with pytest.raises(ValueError, match="bId"):
        client.batch([BatchItem("b" * 101, "create", "Bill", {})], request_id="r")
    with pytest.raises(ValueError, match="bId"):
        client.batch([BatchItem("bill BILL-1", "create", "Bill", {})], request_id="r")
    with pytest.raises(ValueError, match="unique"):
        client.batch(
            [BatchItem("a", query="SELECT * FROM Bill"), BatchItem("a", query="SELECT * FROM Bill")],
            request_id="r",
        )
