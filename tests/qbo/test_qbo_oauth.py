"""OAuth: authorize URL, code exchange, refresh on expiry or 401 only, rotation saved first, one refresher."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from conftest import BASE
from real_corpus import CORPUS
from scripted import REALM, SandboxTime, Scripted

from pipelines.config import Settings
from qbo.client import QboCallError, QboClient
from qbo.oauth import OAuthClient, OAuthError, authorize_url, endpoints, new_state
from qbo.sandbox.oauth import HARD_EXPIRY_SECONDS
from qbo.tokens import Secret, TokenStore


def test_the_authorize_url_carries_state_scope_and_redirect(settings: Settings) -> None:
    state = new_state()
    url = urlsplit(authorize_url(settings, state))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{BASE}/connect/oauth2"
    assert query == {
        "client_id": settings.qbo_client_id,
        "response_type": "code",
        "scope": "com.intuit.quickbooks.accounting",
        "redirect_uri": settings.qbo_redirect_uri,
        "state": state,
    }
    with pytest.raises(ValueError, match="state"):
        authorize_url(settings, "")


def test_real_environments_use_intuits_endpoints(settings: Settings) -> None:
    for env in ("sandbox", "production"):
        found = endpoints(settings.with_overrides(qbo_env=env))
        assert found.authorize == "https://appcenter.intuit.com/connect/oauth2"
        assert found.token == "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
        assert found.revoke == "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"


def test_a_used_code_fails_cleanly_and_stores_nothing(oauth: OAuthClient, token_store: TokenStore) -> None:
    with pytest.raises(OAuthError) as caught:
        oauth.exchange_code("an-old-code", REALM)
    assert caught.value.outcome.reason == "authorization.connect_failed"
    assert token_store.status(REALM).status == "disconnected"


def test_the_access_token_is_reused_until_it_expires(client: QboClient, qbo: Scripted, clock: SandboxTime) -> None:
    after_connect = qbo.token_calls
    for _ in range(5):
        client.company_info()
    assert qbo.token_calls == after_connect  # no refresh on every call (ref §11.1: pqb#392)
    clock.advance(3600)
    client.company_info()
    client.company_info()
    assert qbo.token_calls == after_connect + 1


def test_the_rotated_refresh_token_is_stored_before_the_new_access_token_is_used(
    client: QboClient, connected: TokenStore, qbo: Scripted, clock: SandboxTime
) -> None:
    stored_when_used: list[Secret | None] = []
    qbo.on_api = lambda _request: stored_when_used.append(connected.load(REALM).refresh_token)
    old = qbo.refresh
    clock.advance(3600)
    client.company_info()
    assert qbo.refresh != old
    assert stored_when_used == [Secret(qbo.refresh)]
    assert connected.status(REALM).refresh_count == 1
    assert connected.events(REALM)[0]["event"] == "refreshed" and connected.events(REALM)[0]["rotated"] is True


def test_one_refresher_per_realm_and_the_others_reuse_its_token(
    client: QboClient, qbo: Scripted, clock: SandboxTime
) -> None:
    before = qbo.token_calls
    qbo.on_token = lambda _request: time.sleep(0.2)  # a slow token endpoint: everyone else arrives meanwhile
    clock.advance(3600)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def call() -> None:
        start.wait()
        try:
            client.company_info()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert qbo.token_calls == before + 1  # concurrent refreshes would invalidate each other (ref §11.2)


def test_invalid_grant_parks_the_realm_with_a_clear_reason_not_a_crash(
    client: QboClient, connected: TokenStore, qbo: Scripted, clock: SandboxTime
) -> None:
    qbo.sandbox.expire_tokens(REALM, refresh=True)  # revoked at Intuit: the stored refresh token is refused
    clock.advance(3600)
    with pytest.raises(QboCallError) as caught:
        client.company_info()
    outcome = caught.value.outcome
    assert (outcome.dimension, outcome.reason, outcome.retryable) == (
        "authorization",
        "authorization.reconnect_needed",
        False,
    )
    assert "reconnect" in str(caught.value).lower()
    status = connected.status(REALM)
    assert (status.status, status.reason) == ("reconnect_needed", "authorization.reconnect_needed")
    sent = len(qbo.requests)
    with pytest.raises(QboCallError, match="authorization.reconnect_needed"):
        client.company_info()
    assert len(qbo.requests) == sent  # nothing goes out until an admin reconnects


def test_a_401_mid_run_refreshes_once_and_the_call_succeeds(
    client: QboClient, connected: TokenStore, qbo: Scripted
) -> None:
    before = qbo.token_calls
    qbo.sandbox.expire_tokens(REALM)  # Intuit stopped accepting the token before our clock says it expires
    created = client.create("Vendor", {"DisplayName": "Acme"}, request_id="vendor:V1:v1")
    assert created.object["DisplayName"] == "Acme"
    assert qbo.token_calls == before + 1
    sent = [r for r in qbo.api_requests if r.method == "POST"]
    assert [r.url.params["requestid"] for r in sent] == ["vendor:V1:v1", "vendor:V1:v1"]
    assert connected.load(REALM).refresh_token == Secret(qbo.refresh)


def test_a_401_that_survives_a_refresh_is_reported_not_looped(client: QboClient, qbo: Scripted) -> None:
    before = qbo.token_calls
    # The gateway's real 401 (qbo_api): the token is refused again right after a good refresh.
    refused = (CORPUS / "gateway_401_3200_qboapi.json").read_bytes()
    qbo.script(*[httpx.Response(401, content=refused, headers={"content-type": "application/json"})] * 2)
    with pytest.raises(QboCallError) as caught:
        client.company_info()
    assert caught.value.outcome.reason == "authorization.token_expired"
    assert qbo.token_calls == before + 1


def test_a_hard_expired_refresh_token_asks_for_a_reconnect_without_calling_intuit(
    client: QboClient, connected: TokenStore, qbo: Scripted, clock: SandboxTime
) -> None:
    before = qbo.token_calls
    clock.advance(HARD_EXPIRY_SECONDS + 1)  # past the 5-year cap (ref §2, B-rt25)
    with pytest.raises(QboCallError, match="authorization.reconnect_needed"):
        client.company_info()
    assert qbo.token_calls == before
    assert connected.status(REALM).status == "reconnect_needed"


def test_an_unreachable_token_endpoint_is_transport_and_keeps_the_connection(
    client: QboClient, connected: TokenStore, qbo: Scripted, clock: SandboxTime
) -> None:
    def down(request: httpx.Request) -> None:
        raise httpx.ConnectError("connection refused", request=request)

    qbo.on_token = down
    sent = len(qbo.api_requests)
    clock.advance(3600)
    with pytest.raises(QboCallError) as caught:
        client.company_info()
    assert len(qbo.api_requests) == sent
    assert caught.value.outcome.reason == "transport.connection_failed"
    assert connected.status(REALM).status == "connected"


def test_revoke_disconnects_and_forgets_the_tokens(
    oauth: OAuthClient, connected: TokenStore, qbo: Scripted, client: QboClient
) -> None:
    refresh = qbo.refresh
    status = oauth.revoke(REALM, actor="admin@demo.local")
    assert (status.status, status.reason) == ("disconnected", "authorization.not_connected")
    revoke = [r for r in qbo.requests if r.url.path.endswith("/revoke")]
    assert len(revoke) == 1 and refresh in revoke[0].content.decode()
    assert connected.load(REALM).refresh_token is None
    with pytest.raises(QboCallError, match="authorization.not_connected"):
        client.company_info()
