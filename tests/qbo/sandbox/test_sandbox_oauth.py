"""OAuth (ref §2): authorize auto-approves; tokens rotate, expire and are revoked; scope and realm checks."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pipelines.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from qbo.sandbox import Sandbox

from .sandbox_helpers import REALM, body

REDIRECT = "http://localhost:8501/oauth/callback"
AUTH = (DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
SCOPE = "com.intuit.quickbooks.accounting openid"


def _authorize(http: httpx.Client, **extra: str) -> dict[str, list[str]]:
    params = {
        "client_id": DEMO_CLIENT_ID,
        "response_type": "code",
        "scope": SCOPE,
        "redirect_uri": REDIRECT,
        "state": "st-1",
        **extra,
    }
    reply = http.get("/connect/oauth2", params=params)
    assert reply.status_code == 302
    location = reply.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return parse_qs(urlsplit(location).query)


def _exchange(http: httpx.Client, code: str, **headers: str) -> httpx.Response:
    return http.post(
        "/oauth2/v1/tokens/bearer",
        auth=AUTH,
        headers=headers,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
    )


def _refresh(http: httpx.Client, token: str) -> httpx.Response:
    return http.post(
        "/oauth2/v1/tokens/bearer", auth=AUTH, data={"grant_type": "refresh_token", "refresh_token": token}
    )


def _api(http: httpx.Client, access: str, realm: str = REALM) -> httpx.Response:
    return http.get(f"/v3/company/{realm}/vendor/1", headers={"authorization": f"Bearer {access}"})


def _connect(http: httpx.Client) -> dict[str, object]:
    code = _authorize(http)["code"][0]
    return body(_exchange(http, code))


def test_authorize_auto_approves_and_the_code_buys_tokens(control: httpx.Client) -> None:
    callback = _authorize(control)
    assert callback["state"] == ["st-1"] and callback["realmId"] == [REALM]
    reply = _exchange(control, callback["code"][0], **{"x-include-refresh-token-hard-expires-in": "true"})
    assert reply.status_code == 200
    tokens = body(reply)
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 3600
    assert tokens["x_refresh_token_expires_in"] == 8726400
    assert tokens["x_refresh_token_hard_expires_in"] == 5 * 365 * 86400
    assert tokens["refresh_token"].startswith("RT1-")
    assert "id_token" in tokens
    assert _api(control, tokens["access_token"]).status_code == 200
    assert _exchange(control, callback["code"][0]).status_code == 400  # a code works once


def test_the_hard_expiry_is_opt_in(control: httpx.Client) -> None:
    assert "x_refresh_token_hard_expires_in" not in _connect(control)


def test_authorize_for_another_realm(sandbox: Sandbox, control: httpx.Client) -> None:
    assert _authorize(control, realm="4242")["realmId"] == ["4242"]
    assert "4242" in sandbox.realm_ids


@pytest.mark.parametrize(
    ("params", "error"),
    [({"response_type": "token"}, "unsupported_response_type"), ({"scope": ""}, "invalid_scope")],
)
def test_authorize_errors_go_back_to_the_redirect(control: httpx.Client, params: dict[str, str], error: str) -> None:
    assert _authorize(control, **params)["error"] == [error]


def test_refresh_rotates_and_the_old_token_is_invalid_grant(control: httpx.Client) -> None:
    first = _connect(control)
    second = body(_refresh(control, str(first["refresh_token"])))
    assert second["refresh_token"] != first["refresh_token"]
    old = _refresh(control, str(first["refresh_token"]))
    assert old.status_code == 400
    # A refresh token Intuit no longer knows: a bare invalid_grant, no description (oauth-jsclient#77).
    assert body(old) == {"error": "invalid_grant"}
    assert _refresh(control, str(second["refresh_token"])).status_code == 200
    # Access tokens issued earlier stay good until they expire.
    assert _api(control, str(first["access_token"])).status_code == 200


def test_refresh_tokens_can_rotate_daily_like_qbo() -> None:
    sandbox = Sandbox(refresh_rotate_after_seconds=24 * 3600)
    with httpx.Client(transport=sandbox.transport(), base_url="http://sandbox.local") as http:
        first = _connect(http)
        assert body(_refresh(http, str(first["refresh_token"])))["refresh_token"] == first["refresh_token"]
        sandbox.clock.advance(24 * 3600)
        assert body(_refresh(http, str(first["refresh_token"])))["refresh_token"] != first["refresh_token"]


def test_an_access_token_expires_after_an_hour_with_the_lowercase_3200(sandbox: Sandbox, control: httpx.Client) -> None:
    tokens = _connect(control)
    sandbox.clock.advance(3599)
    assert _api(control, str(tokens["access_token"])).status_code == 200
    sandbox.clock.advance(1)
    reply = _api(control, str(tokens["access_token"]))
    assert reply.status_code == 401
    error = body(reply)["fault"]["error"][0]
    assert error["code"] == "3200" and error["detail"] == "Token expired"
    assert error["message"] == "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    assert body(reply)["fault"]["type"] == "AUTHENTICATION"
    assert isinstance(body(reply)["time"], int)
    fresh = body(_refresh(control, str(tokens["refresh_token"])))
    assert _api(control, str(fresh["access_token"])).status_code == 200


def test_revoke_ends_the_grant(control: httpx.Client) -> None:
    tokens = _connect(control)
    reply = control.post("/oauth2/v1/tokens/revoke", auth=AUTH, json={"token": tokens["refresh_token"]})
    assert reply.status_code == 200
    assert body(_refresh(control, str(tokens["refresh_token"])))["error"] == "invalid_grant"
    assert body(_api(control, str(tokens["access_token"])))["fault"]["error"][0]["detail"] == "Token revoked"


def test_the_control_api_expires_and_revokes(sandbox: Sandbox, control: httpx.Client) -> None:
    tokens = _connect(control)
    control.post(f"/_sandbox/{REALM}/tokens/expire")
    assert _api(control, str(tokens["access_token"])).status_code == 401
    renewed = body(_refresh(control, str(tokens["refresh_token"])))
    control.post(f"/_sandbox/{REALM}/tokens/expire", json={"refresh": True})
    assert _refresh(control, str(renewed["refresh_token"])).status_code == 400


@pytest.mark.parametrize(
    ("auth", "data", "status", "error"),
    [
        (
            (DEMO_CLIENT_ID, "wrong"),
            {"grant_type": "refresh_token", "refresh_token": "x"},
            401,
            "invalid_client",
        ),
        (AUTH, {"grant_type": "password"}, 400, "unsupported_grant_type"),
        (AUTH, {"grant_type": "refresh_token", "refresh_token": "RT1-unknown"}, 400, "invalid_grant"),
        (
            AUTH,
            {"grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT},
            400,
            "invalid_grant",
        ),
    ],
)
def test_token_endpoint_errors(
    control: httpx.Client, auth: tuple[str, str], data: dict[str, str], status: int, error: str
) -> None:
    reply = control.post("/oauth2/v1/tokens/bearer", auth=auth, data=data)
    assert reply.status_code == status and body(reply)["error"] == error


def test_client_secret_post_is_accepted(control: httpx.Client) -> None:
    code = _authorize(control)["code"][0]
    reply = control.post(
        "/oauth2/v1/tokens/bearer",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
        },
    )
    assert reply.status_code == 200


@pytest.mark.parametrize(
    ("header", "status", "code", "detail"),
    [
        (None, 401, "3200", "Malformed bearer token: too short or too long"),
        ("Bearer not-a-token", 401, "3200", "Token invalid"),
        ("Basic abc", 401, "3200", "Malformed bearer token: too short or too long"),
    ],
)
def test_bad_bearer_tokens(control: httpx.Client, header: str | None, status: int, code: str, detail: str) -> None:
    headers = {"authorization": header} if header else {}
    reply = control.get(f"/v3/company/{REALM}/vendor/1", headers=headers)
    assert reply.status_code == status
    error = body(reply)["fault"]["error"][0]
    assert (error["code"], error["detail"]) == (code, detail)


def test_a_token_without_the_accounting_scope_or_for_another_realm_is_403_3100(sandbox: Sandbox) -> None:
    with httpx.Client(transport=sandbox.transport(), base_url="http://sandbox.local") as http:
        openid_only = sandbox.issue_tokens(REALM, "openid email")
        reply = _api(http, openid_only["access_token"])
        assert reply.status_code == 403
        error = body(reply)["fault"]["error"][0]
        assert error["code"] == "3100"
        assert error["message"] == "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403"
        other = sandbox.issue_tokens("777")
        assert _api(http, other["access_token"]).status_code == 403
