"""Webhooks (ref §9): every change is posted as legacy or CloudEvents JSON, signed with intuit-signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator

import httpx
import pytest

from qbo.sandbox import Sandbox
from qbo.sandbox.webhooks import sign

from .sandbox_helpers import REALM, Qbo, authorized_client, make_sandbox

TOKEN = "verifier-token-123"


class Receiver:
    """An in-memory webhook endpoint (an httpx MockTransport handler)."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[httpx.Request] = []
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status)

    def payloads(self) -> list[object]:
        return [json.loads(r.content) for r in self.requests]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def hooked(receiver: Receiver) -> Iterator[Sandbox]:
    with httpx.Client(transport=httpx.MockTransport(receiver)) as client:
        sandbox = make_sandbox(webhook_client=client)
        yield sandbox
        sandbox.close()
    assert sandbox.errors == []


def _signed(request: httpx.Request) -> bool:
    digest = hmac.new(TOKEN.encode(), request.content, hashlib.sha256).digest()
    return hmac.compare_digest(request.headers["intuit-signature"], base64.b64encode(digest).decode())


def test_legacy_notifications_for_create_update_and_delete(hooked: Sandbox, receiver: Receiver) -> None:
    hooked.configure_webhooks("https://hooks.example/qbo", TOKEN, "legacy")
    with authorized_client(hooked) as http:
        qbo = Qbo(http)
        qbo.create("Vendor", {"DisplayName": "Hooked Co"})
        qbo.update("Vendor", {"Id": "3", "SyncToken": "0", "sparse": True, "Notes": "n"})
        qbo.delete("Bill", "1", "0")
    assert hooked.flush_webhooks()
    assert all(_signed(r) for r in receiver.requests)
    assert all(str(r.url) == "https://hooks.example/qbo" for r in receiver.requests)
    changes = []
    for payload in receiver.payloads():
        (notification,) = payload["eventNotifications"]  # type: ignore[index]
        assert notification["realmId"] == REALM
        changes.extend(notification["dataChangeEvent"]["entities"])
    assert [(c["name"], c["id"], c["operation"]) for c in changes] == [
        ("Vendor", "3", "Create"),
        ("Vendor", "3", "Update"),
        ("Bill", "1", "Delete"),
    ]
    assert changes[0]["lastUpdated"] == "2025-06-15T10:00:00-0700"


def test_cloudevents_is_an_array_with_realm_and_entity_ids(hooked: Sandbox, receiver: Receiver) -> None:
    hooked.configure_webhooks("https://hooks.example/qbo", TOKEN, "cloudevents")
    hooked.user_patch(REALM, "Account", "4", {"Active": False})
    assert hooked.flush_webhooks()
    (request,) = receiver.requests
    assert _signed(request)
    (event,) = json.loads(request.content)
    assert event["specversion"] == "1.0" and event["type"] == "qbo.account.updated.v1"
    assert (event["intuitaccountid"], event["intuitentityid"]) == (REALM, "4")
    assert event["source"].startswith("intuit.") and event["time"].endswith("Z")
    assert event["data"] == {} and event["datacontenttype"] == "application/json"


def test_no_url_no_posts_and_a_failing_receiver_is_only_recorded(hooked: Sandbox, receiver: Receiver) -> None:
    hooked.user_patch(REALM, "Vendor", "1", {"Notes": "quiet"})
    assert hooked.flush_webhooks() and receiver.requests == []
    receiver.status = 500
    hooked.configure_webhooks("https://hooks.example/qbo", TOKEN)
    hooked.user_patch(REALM, "Vendor", "1", {"Notes": "loud"})
    assert hooked.flush_webhooks()
    assert hooked.webhooks.deliveries[-1]["status"] == 500


@pytest.mark.parametrize(
    ("url", "token", "fmt"), [("", TOKEN, "legacy"), ("https://x", "", "legacy"), ("https://x", TOKEN, "xml")]
)
def test_webhook_configuration_is_checked(control: httpx.Client, url: str, token: str, fmt: str) -> None:
    reply = control.post("/_sandbox/webhooks", json={"url": url, "verifier_token": token, "format": fmt})
    assert reply.status_code == 400


def test_the_signature_matches_the_reference_recipe() -> None:
    expected = base64.b64encode(hmac.new(b"k", b"{}", hashlib.sha256).digest()).decode()
    assert sign("k", b"{}") == expected
