"""Webhook guards: every malformed signed body is a counted 400 (never a 500 that QBO retries for ever)."""

from __future__ import annotations

import json

import pytest
from fixtures import REALM, T0
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipelines.serve.webhooks import WebhookInbox, handle_delivery, sign

VERIFIER = "verifier-token-for-tests"


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
