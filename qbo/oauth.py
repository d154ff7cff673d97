"""QBO OAuth 2.0: authorize URL, code exchange, refresh with rotation (one refresher per realm), revoke."""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx

from qbo.faults import Outcome, classify, outcome_for
from qbo.tokens import Connection, ConnectionStatus, Secret, TokenSet, TokenStore, TokenUnreadableError

__all__ = [
    "ACCOUNTING_SCOPE",
    "DEFAULT_SCOPES",
    "OAuthClient",
    "OAuthEndpoints",
    "OAuthError",
    "ReconnectNeededError",
    "authorize_url",
    "endpoints",
    "new_state",
    "transport_error_kind",
]

log = logging.getLogger(__name__)

ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
DEFAULT_SCOPES = (ACCOUNTING_SCOPE,)

# Intuit's endpoints, the same for its sandbox and production (ref §2).
_INTUIT_AUTHORIZE = "https://appcenter.intuit.com/connect/oauth2"
_INTUIT_TOKEN = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
_INTUIT_REVOKE = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"

_REALM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class OAuthSettings(Protocol):
    """What the OAuth layer reads from the app's settings; read-only, so a frozen dataclass qualifies."""

    @property
    def qbo_env(self) -> str: ...
    @property
    def qbo_client_id(self) -> str: ...
    @property
    def qbo_client_secret(self) -> str: ...
    @property
    def qbo_redirect_uri(self) -> str: ...
    @property
    def api_base_url(self) -> str: ...


@dataclass(frozen=True)
class OAuthEndpoints:
    authorize: str
    token: str
    revoke: str


def endpoints(settings: OAuthSettings) -> OAuthEndpoints:
    """Intuit's endpoints, or for qbo_env "local" the sandbox's, on the same base URL as its API."""
    if settings.qbo_env == "local":
        base = settings.api_base_url.rstrip("/")
        return OAuthEndpoints(
            f"{base}/connect/oauth2", f"{base}/oauth2/v1/tokens/bearer", f"{base}/oauth2/v1/tokens/revoke"
        )
    return OAuthEndpoints(_INTUIT_AUTHORIZE, _INTUIT_TOKEN, _INTUIT_REVOKE)


def new_state() -> str:
    """An unguessable `state` for one authorize round trip (the callback must echo it)."""
    return secrets.token_urlsafe(24)


def authorize_url(settings: OAuthSettings, state: str, scopes: Sequence[str] = DEFAULT_SCOPES) -> str:
    """Where to send the admin to grant access; the callback brings back code, state and realmId (ref §2)."""
    if not state:
        raise ValueError("authorize_url needs a state (CSRF protection); use new_state()")
    query = urlencode(
        {
            "client_id": settings.qbo_client_id,
            "response_type": "code",
            "scope": " ".join(scopes),
            "redirect_uri": settings.qbo_redirect_uri,
            "state": state,
        }
    )
    return f"{endpoints(settings).authorize}?{query}"


class OAuthError(Exception):
    """A token call failed; `outcome` classifies it. The message never carries token text."""

    def __init__(
        self,
        outcome: Outcome,
        *,
        status: int | None = None,
        code: str | None = None,
        description: str | None = None,
        intuit_tid: str | None = None,
    ) -> None:
        self.outcome = outcome
        self.status = status
        self.code = code
        self.description = description
        self.intuit_tid = intuit_tid
        parts = [outcome.reason]
        if status is not None:
            parts.append(f"HTTP {status}")
        if code:
            parts.append(f"error {code}")
        if intuit_tid:
            parts.append(f"intuit_tid {intuit_tid}")
        super().__init__(f"{outcome.explanation} ({', '.join(parts)})")


class ReconnectNeededError(OAuthError):
    """The realm cannot be used until an admin reconnects QuickBooks (a state, not a crash)."""


@dataclass(frozen=True)
class _TokenAnswer:
    payload: dict[str, Any]
    intuit_tid: str | None


class OAuthClient:
    """Token calls for one app; tokens live in the TokenStore, never in this object."""

    def __init__(
        self,
        settings: OAuthSettings,
        token_store: TokenStore,
        *,
        http: httpx.Client,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._tokens = token_store
        self._http = http
        self._clock = clock
        self._endpoints = endpoints(settings)

    def __repr__(self) -> str:
        return f"OAuthClient(env={self._settings.qbo_env!r}, token_url={self._endpoints.token!r})"

    # connect and disconnect
    def exchange_code(
        self,
        code: str,
        realm_id: str,
        *,
        connected_by: str | None = None,
        scopes: Sequence[str] = DEFAULT_SCOPES,
    ) -> ConnectionStatus:
        """Finish the callback: trade the code for tokens and store them for realm_id (from the callback).

        `scopes` are those the authorize URL asked for; Intuit's answer does not repeat them (ref §2).
        """
        _check_realm(realm_id)
        try:
            answer = self._token_request(
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self._settings.qbo_redirect_uri,
                }
            )
        except OAuthError as exc:
            # A used or expired code, not a broken connection (a user who left the company keeps that reason).
            if exc.outcome.reason == "authorization.reconnect_needed":
                raise OAuthError(
                    outcome_for("authorization.connect_failed"),
                    status=exc.status,
                    code=exc.code,
                    intuit_tid=exc.intuit_tid,
                ) from None
            raise
        tokens = self._parse_tokens(answer)
        if not tokens.scopes:
            tokens = replace(tokens, scopes=tuple(scopes))
        self._tokens.save_connection(
            realm_id, tokens, now=self._clock(), connected_by=connected_by, intuit_tid=answer.intuit_tid
        )
        return self._tokens.status(realm_id)

    def revoke(self, realm_id: str, *, actor: str | None = None) -> ConnectionStatus:
        """Revoke the refresh token at Intuit, then forget the tokens (kept if Intuit was unreachable)."""
        try:
            conn = self._load(realm_id)
            token = conn.refresh_token or conn.access_token
        except ReconnectNeededError:  # tokens this key cannot read cannot be revoked either: forget them
            token = None
        if token is not None:
            headers = {**self._basic_auth(), "Accept": "application/json", "Content-Type": "application/json"}
            try:
                response = self._http.post(
                    self._endpoints.revoke, content=json.dumps({"token": token.reveal()}), headers=headers
                )
            except httpx.TransportError as exc:
                raise OAuthError(classify(None, transport_error=transport_error_kind(exc))) from None
            except httpx.DecodingError:
                raise OAuthError(classify(None, transport_error="malformed")) from None
            # 400 means the token was already dead: the outcome the admin wanted.
            if response.status_code >= 500:
                raise OAuthError(
                    classify(response.status_code),
                    status=response.status_code,
                    intuit_tid=response.headers.get("intuit_tid"),
                )
        self._tokens.mark_disconnected(realm_id, "authorization.not_connected", now=self._clock(), actor=actor)
        return self._tokens.status(realm_id)

    # access tokens
    def access_token(self, realm_id: str) -> Secret:
        """A usable access token; refreshes only when the stored one has (nearly) expired."""
        token = self._usable(self._connected(realm_id))
        if token is not None:
            return token
        with self._tokens.refresh_lock(realm_id):
            # Whoever held the lock before us may have refreshed already: reuse their token (ref §11.2).
            conn = self._connected(realm_id)
            return self._usable(conn) or self._refresh_locked(conn)

    def refresh_rejected(self, realm_id: str, rejected: Secret) -> Secret:
        """QBO answered 401 to `rejected`: refresh once, unless another caller already replaced it."""
        with self._tokens.refresh_lock(realm_id):
            conn = self._connected(realm_id)
            token = self._usable(conn)
            return token if token is not None and token != rejected else self._refresh_locked(conn)

    def refresh(self, realm_id: str) -> Secret:
        """Refresh now (e.g. a scheduled keep-alive within the 100-day rolling window)."""
        with self._tokens.refresh_lock(realm_id):
            return self._refresh_locked(self._connected(realm_id))

    def _refresh_locked(self, conn: Connection) -> Secret:
        realm_id, now = conn.realm_id, self._clock()
        if conn.refresh_lapsed(now):
            self._tokens.mark_reconnect_needed(realm_id, "authorization.reconnect_needed", now=now)
            raise ReconnectNeededError(outcome_for("authorization.reconnect_needed"))
        assert conn.refresh_token is not None  # refresh_lapsed covers None
        try:
            answer = self._token_request({"grant_type": "refresh_token", "refresh_token": conn.refresh_token.reveal()})
        except OAuthError as exc:
            # Every invalid_grant ends the connection; its reason says why (expired, or the user left the company).
            if exc.code == "invalid_grant":
                self._tokens.mark_reconnect_needed(
                    realm_id, exc.outcome.reason, now=self._clock(), intuit_tid=exc.intuit_tid
                )
                raise ReconnectNeededError(
                    exc.outcome, status=exc.status, code=exc.code, intuit_tid=exc.intuit_tid
                ) from None
            raise
        tokens = self._parse_tokens(answer)
        # The newest refresh token is saved before the new access token is handed out: if we crashed in
        # between, the next run would hold a refresh token that Intuit no longer honours (ref §11.1).
        self._tokens.save_refresh(
            realm_id,
            tokens,
            now=self._clock(),
            rotated=tokens.refresh_token != conn.refresh_token,
            intuit_tid=answer.intuit_tid,
        )
        return tokens.access_token

    def _usable(self, conn: Connection) -> Secret | None:
        return conn.access_token if conn.access_valid(self._clock()) else None

    def _connected(self, realm_id: str) -> Connection:
        conn = self._load(realm_id)
        if conn.status.status != "connected":
            raise ReconnectNeededError(outcome_for(conn.status.reason or "authorization.reconnect_needed"))
        return conn

    def _load(self, realm_id: str) -> Connection:
        _check_realm(realm_id)
        try:
            return self._tokens.load(realm_id)
        except TokenUnreadableError:
            raise ReconnectNeededError(outcome_for("authorization.token_unreadable")) from None

    # wire
    def _basic_auth(self) -> dict[str, str]:
        pair = f"{self._settings.qbo_client_id}:{self._settings.qbo_client_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    def _token_request(self, form: Mapping[str, str]) -> _TokenAnswer:
        headers = {
            **self._basic_auth(),
            "Accept": "application/json",
            # Opt in to the 5-year cap in the answer (ref §2, x_refresh_token_hard_expires_in).
            "x-include-refresh-token-hard-expires-in": "true",
        }
        try:
            response = self._http.post(self._endpoints.token, data=dict(form), headers=headers)
        except httpx.TransportError as exc:
            # Retried later with the same refresh token. Should the lost answer have rotated it, Intuit
            # refuses the old one with invalid_grant, and the realm then asks for a reconnect (ref §2).
            raise OAuthError(classify(None, transport_error=transport_error_kind(exc))) from None
        except httpx.DecodingError:  # a body its Content-Encoding cannot undo: an answer, unreadable
            raise OAuthError(classify(None, transport_error="malformed")) from None
        tid = response.headers.get("intuit_tid")
        try:
            payload = response.json()
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            payload = None
        if response.status_code == 200 and isinstance(payload, dict) and "access_token" in payload:
            return _TokenAnswer(payload, tid)
        error = payload.get("error") if isinstance(payload, dict) else None
        description = payload.get("error_description") if isinstance(payload, dict) else None
        # Intuit says why an invalid_grant happened in x_error_reason (user_not_in_realm: the user who connected
        # left the company); error_description may be missing altogether (oauth-jsclient#77).
        why = payload.get("x_error_reason") if isinstance(payload, dict) else None
        if response.status_code == 200:  # a 200 without tokens: nothing usable came back
            outcome = classify(200, transport_error="malformed")
        else:
            outcome = classify(
                response.status_code,
                error,
                message=str(description) if description else None,
                detail=str(why) if why else None,
            )
        log.warning(
            "QuickBooks token call failed: HTTP %s %s (intuit_tid %s)",
            response.status_code,
            error or "-",
            tid or "-",
        )
        raise OAuthError(
            outcome,
            status=response.status_code,
            code=error,
            description=str(description) if description else None,
            intuit_tid=tid,
        )

    def _parse_tokens(self, answer: _TokenAnswer) -> TokenSet:
        try:
            return TokenSet.from_response(answer.payload, self._clock())
        except ValueError:
            raise OAuthError(
                classify(200, transport_error="malformed"), status=200, intuit_tid=answer.intuit_tid
            ) from None


def _check_realm(realm_id: str) -> None:
    # The realm id becomes part of every API path: refuse anything that could change the path.
    if not isinstance(realm_id, str) or not _REALM_ID.match(realm_id):
        raise ValueError("realm id must be 1-64 letters, digits, '-' or '_'")


def transport_error_kind(exc: httpx.TransportError) -> str:
    """Name what broke: before sending (connect_*) or after (timeout, reset)."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return "connect_timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_failed"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "reset"
