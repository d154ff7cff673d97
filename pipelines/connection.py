"""The edge where settings become a live QBO client: one httpx.Client, the token store, OAuth connect."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx

from pipelines.clock import Clock, system_clock
from pipelines.config import Settings
from pipelines.fleet.limits import SharedRateLimiter
from pipelines.store import Store
from qbo.client import QboClient
from qbo.oauth import OAuthClient, authorize_url, new_state
from qbo.tokens import ConnectionStatus, TokenStore

__all__ = ["ConnectResult", "connect", "qbo_client"]

# QBO answers within 120 s or not at all (ref §1); a read waiting longer is a transport failure.
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class ConnectResult:
    """Either a finished connection (local sandbox) or the URL an admin must open (real QBO)."""

    status: ConnectionStatus | None
    authorize_url: str | None
    state: str


@contextmanager
def qbo_client(
    settings: Settings,
    store: Store,
    realm_id: str | None = None,
    http: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Clock = system_clock,
) -> Iterator[QboClient]:
    """A client for one realm; the httpx.Client is built here (or injected by tests) and closed after."""
    own = http is None
    http = http or httpx.Client(timeout=_TIMEOUT)
    try:
        realm = realm_id or settings.realm_id
        # Fleet mode: QuickBooks' per-realm limits are counted in the shared store, across every process.
        scale = settings.qbo_time_scale
        per_minute, batch_per_minute, in_flight = settings.qbo_limits
        limiter = (
            SharedRateLimiter(
                store.url,
                realm,
                clock=clock,
                sleep=sleep,
                per_minute=per_minute,
                batch_per_minute=batch_per_minute,
                max_in_flight=in_flight,
                window_seconds=60.0 / scale,
                margin_seconds=1.0 / scale,
                max_wait_seconds=600.0 / scale,
            )
            if store.url
            else None
        )
        yield QboClient(
            settings, TokenStore(store, settings), realm, http=http, sleep=sleep, clock=clock, limiter=limiter
        )
    finally:
        if own:
            http.close()


def connect(
    settings: Settings, store: Store, *, actor: str, http: httpx.Client | None = None, clock: Clock = system_clock
) -> ConnectResult:
    """Run OAuth: against the local sandbox the whole round trip happens here; otherwise return the URL.

    The callback's `state` must be the one sent, or the code is refused (CSRF, ref §2).
    """
    state = new_state()
    url = authorize_url(settings, state)
    if settings.qbo_env != "local":
        return ConnectResult(None, url, state)
    own = http is None
    http = http or httpx.Client(timeout=_TIMEOUT)
    try:
        # The local authorize endpoint approves at once and redirects to the callback with code and realmId.
        answer = http.get(url, follow_redirects=False)
        if answer.status_code not in (302, 303, 307):
            raise RuntimeError(f"the sandbox did not redirect from authorize (HTTP {answer.status_code})")
        callback = parse_qs(urlsplit(answer.headers["location"]).query)
        if callback.get("state", [""])[0] != state:
            raise RuntimeError("the OAuth callback carried another state; refused (possible forgery)")
        oauth = OAuthClient(settings, TokenStore(store, settings), http=http, clock=clock)
        status = oauth.exchange_code(callback["code"][0], callback["realmId"][0], connected_by=actor)
        return ConnectResult(status, None, state)
    finally:
        if own:
            http.close()
