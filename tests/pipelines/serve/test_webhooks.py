"""Webhook guards: a body is refused past its size before it is held whole, every malformed signed body is a counted 400
(never a 500 that QBO retries for ever), and refused deliveries are counted but kept only as a bounded sample."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fixtures import REALM, T0
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from pipelines.serve.webhooks import (
    MAX_BODY_BYTES,
    REFUSED_KEEP,
    REFUSED_SAMPLE,
    WebhookBodyTooLargeError,
    WebhookInbox,
    handle_delivery,
    persist_deliveries,
    read_body_limited,
    refuse_oversize,
    sign,
)
from pipelines.store import Store

VERIFIER = "verifier-token-for-tests"


# -- reading the body within a limit -----------------------------------------------------------------------------
def _request(chunks: list[bytes], content_length: int | None = None) -> tuple[Request, list[int]]:
    """A Starlette request whose body arrives in these chunks; the list counts the chunks the app pulled."""
    pulled: list[int] = []

    async def receive() -> dict:
        i = len(pulled)
        pulled.append(i)
        return {"type": "http.request", "body": chunks[i] if i < len(chunks) else b"", "more_body": i < len(chunks) - 1}

    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    return Request({"type": "http", "method": "POST", "path": "/webhooks/qbo", "headers": headers}, receive), pulled


def test_a_body_within_the_limit_is_read_whole() -> None:
    chunks = [b"x" * 100] * 10
    request, _ = _request(chunks, content_length=1000)
    assert asyncio.run(read_body_limited(request, 1000)) == b"".join(chunks)


def test_a_body_past_the_limit_is_refused_before_it_is_held_whole() -> None:
    request, pulled = _request([b"x" * 100] * 1000)  # 100,000 bytes sent without a Content-Length
    with pytest.raises(WebhookBodyTooLargeError) as info:
        asyncio.run(read_body_limited(request, 1000))
    assert len(pulled) == 11 and info.value.seen == 1100  # stopped at the first chunk past the limit


def test_a_declared_length_past_the_limit_is_refused_before_anything_is_read() -> None:
    request, pulled = _request([b"x" * 100] * 1000, content_length=100_000)
    with pytest.raises(WebhookBodyTooLargeError, match="larger than 1,000 bytes"):
        asyncio.run(read_body_limited(request, 1000))
    assert pulled == []


def test_an_oversize_delivery_is_answered_413_and_counted() -> None:
    inbox = WebhookInbox()
    status, answer = refuse_oversize(inbox, WebhookBodyTooLargeError(MAX_BODY_BYTES, MAX_BODY_BYTES + 1), T0)
    assert status == 413 and "larger than 1,048,576 bytes" in answer["error"]
    assert inbox.snapshot()["received"]["too_large"] == 1 and not inbox.has_pending()


# -- refused deliveries: counted, kept as a bounded sample ----------------------------------------------------
def _refused(inbox: WebhookInbox, n: int, at: datetime) -> None:
    body = b'{"eventNotifications": []}'
    for i in range(n):
        assert handle_delivery(inbox, VERIFIER, body, "forged" if i % 2 else None, at)[0] == 401


def test_three_thousand_refused_posts_are_counted_and_only_a_sample_is_stored(tmp_path: Path) -> None:
    inbox = WebhookInbox()
    _refused(inbox, 3000, T0)
    counts = inbox.snapshot()
    assert counts["signature_failures"] == 3000 and counts["not_stored"] == 3000 - REFUSED_SAMPLE
    with Store(tmp_path / "hooks.duckdb") as store:
        persist_deliveries(store, inbox.unsaved())
        assert store.scalar("SELECT count(*) FROM webhook_events") == REFUSED_SAMPLE
        # after a restart, the same hour's sample is already full in the store
        restarted = WebhookInbox()
        _refused(restarted, 5, T0 + timedelta(minutes=1))
        persist_deliveries(store, restarted.unsaved())
        assert store.scalar("SELECT count(*) FROM webhook_events") == REFUSED_SAMPLE
        # the next hour has a sample of its own, and a fresh signed delivery is always kept
        later = T0 + timedelta(hours=1)
        _refused(restarted, 5, later)
        change = {"name": "Class", "id": "1", "operation": "Update", "lastUpdated": later.isoformat()}
        body = json.dumps({"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {"entities": [change]}}]})
        body = body.encode()
        assert handle_delivery(restarted, VERIFIER, body, sign(VERIFIER, body), later)[0] == 200
        persist_deliveries(store, restarted.unsaved())
        assert store.scalar("SELECT count(*) FROM webhook_events") == REFUSED_SAMPLE + 5 + 1
        # the sample ages out; a signed delivery stays
        persist_deliveries(store, (_one_refused(later + REFUSED_KEEP + timedelta(hours=2))))
        assert store.rows("SELECT signature, count(*) FROM webhook_events GROUP BY 1 ORDER BY 1") == [
            ("missing", 1), ("valid", 1)
        ]  # fmt: skip


def _one_refused(at: datetime) -> list:
    inbox = WebhookInbox()
    _refused(inbox, 1, at)
    return inbox.unsaved()


# -- every signed body that is not a notification is a counted 400 ---------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=20,
)
# Keys and values QBO's two formats use, so the shapes reach every level of the parser.
names = st.sampled_from(
    ["eventNotifications", "realmId", "dataChangeEvent", "entities", "name", "id", "operation", "lastUpdated",
     "type", "intuitaccountid", "intuitentityid", "time", "specversion"]
)  # fmt: skip
shaped = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.sampled_from(
        [REALM, "Customer", "qbo.account.updated.v1", "2026-11-01T09:00:00Z", "9999-12-31T23:59:59+00:00", "\ud800"]
    ),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(names, kids, max_size=5),
    max_leaves=25,
)


def _deliver(body: bytes) -> int:
    inbox = WebhookInbox()
    status, answer = handle_delivery(inbox, VERIFIER, body, sign(VERIFIER, body), T0)
    counted = sum(v for k, v in inbox.snapshot()["received"].items())
    assert counted == 1, inbox.snapshot()
    assert status in (200, 400), (status, answer)
    if status == 400:
        assert inbox.snapshot()["received"]["unreadable"] == 1 and not inbox.has_pending()
    return status


@settings(max_examples=300, deadline=None)
@given(payload=json_values | shaped)
# Regressions: each was a 500 (an exception in the route), which QBO retries for ever.
@example(payload=5)
@example(payload={"eventNotifications": [5]})
@example(payload={"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {"entities": "Customer"}}]})
@example(payload={"eventNotifications": [{"realmId": REALM, "dataChangeEvent": "x"}]})
@example(payload=[{"type": 5, "intuitaccountid": REALM, "intuitentityid": "1"}])
@example(payload={"eventNotifications": [{"realmId": REALM, "dataChangeEvent": {"entities": [
    {"name": "Customer", "id": "1", "lastUpdated": "9999-12-31T23:59:59+00:00"}]}}]})  # fmt: skip
def test_every_signed_json_body_is_answered_200_or_400_and_counted(payload: object) -> None:
    try:
        body = json.dumps(payload).encode()
    except ValueError:  # NaN is not JSON's
        body = json.dumps(payload, allow_nan=True).encode()
    _deliver(body)


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000, b'{"a":' * 50_000, b"1" * 5000, b"\xff\xfe", b"", b'"\\ud800"', b"null", b"[]", b"{}"],
    ids=["deep array", "deep object", "a number too long", "not UTF-8", "empty", "lone surrogate", "null", "[]", "{}"],
)
def test_signed_bodies_that_are_no_json_notification_are_answered_400(body: bytes) -> None:
    assert _deliver(body) in (200, 400)
    if body not in (b"[]",):
        assert _deliver(body) == 400


def test_the_limit_holds_a_realistic_delivery() -> None:
    change = {"name": "Invoice", "id": "123456", "operation": "Update", "lastUpdated": "2026-11-01T09:00:00-0700"}
    note = {"realmId": REALM, "dataChangeEvent": {"entities": [change] * 5000}}
    assert len(json.dumps({"eventNotifications": [note]})) < MAX_BODY_BYTES  # 5,000 changes in one delivery
