"""Fixtures for the qbo client's tests: a fake clock, settings, a connected realm, and the in-memory QBO."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from qbo_fakes import AUTH_CODE, BASE, REALM, FakeClock, FakeQbo
from sandbox.sandbox_helpers import REALM as SANDBOX_REALM
from sandbox.sandbox_helpers import START as SANDBOX_START
from sandbox.sandbox_helpers import company

from pipelines.config import Settings
from pipelines.store import Store
from qbo.client import QboClient
from qbo.oauth import OAuthClient, authorize_url, new_state
from qbo.sandbox import Sandbox, SandboxClock
from qbo.tokens import TokenStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        db_path=tmp_path / "store.duckdb",
        qbo_env="local",
        qbo_base_url=BASE,
        secret_key=Fernet.generate_key().decode(),
        secret_key_file=tmp_path / "secret.key",
    )


@pytest.fixture
def token_store(store: Store, settings: Settings) -> TokenStore:
    return TokenStore(store, settings)


@pytest.fixture
def fake(clock: FakeClock) -> FakeQbo:
    return FakeQbo(clock)


@pytest.fixture
def http(fake: FakeQbo) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.MockTransport(fake)) as client:
        yield client


@pytest.fixture
def oauth(settings: Settings, token_store: TokenStore, http: httpx.Client, clock: FakeClock) -> OAuthClient:
    return OAuthClient(settings, token_store, http=http, clock=clock)


@pytest.fixture
def connected(oauth: OAuthClient, token_store: TokenStore) -> TokenStore:
    """The realm connected through the real code exchange against the fake token endpoint."""
    oauth.exchange_code(AUTH_CODE, REALM, connected_by="admin@demo.local")
    return token_store


@pytest.fixture
def client(settings: Settings, connected: TokenStore, http: httpx.Client, clock: FakeClock) -> QboClient:
    return QboClient(settings, connected, REALM, http=http, clock=clock, sleep=clock.sleep)


@dataclass
class Box:
    """The sandbox in-process and a client connected to it through the real OAuth round trip."""

    sandbox: Sandbox
    settings: Settings
    tokens: TokenStore
    oauth: OAuthClient
    client: QboClient
    sent: list[httpx.Request] = field(default_factory=list)

    def api_requests(self) -> list[httpx.Request]:
        return [r for r in self.sent if r.url.path.startswith("/v3/")]


@pytest.fixture
def box(tmp_path: Path, store: Store) -> Iterator[Box]:
    sandbox = Sandbox(company(), clock=SandboxClock(start=SANDBOX_START))
    sent: list[httpx.Request] = []
    settings = Settings(
        db_path=tmp_path / "box.duckdb",
        qbo_env="local",
        qbo_base_url="http://sandbox.local",
        secret_key=Fernet.generate_key().decode(),
        secret_key_file=tmp_path / "box-secret.key",
    )
    with httpx.Client(transport=sandbox.transport(), event_hooks={"request": [sent.append]}) as http:
        tokens = TokenStore(store, settings)
        oauth = OAuthClient(settings, tokens, http=http, clock=sandbox.clock.now)
        state = new_state()
        redirect = http.get(authorize_url(settings, state), follow_redirects=False)
        callback = {k: v[0] for k, v in parse_qs(urlsplit(redirect.headers["location"]).query).items()}
        oauth.exchange_code(callback["code"], callback["realmId"], connected_by="admin@demo.local")
        client = QboClient(
            settings, tokens, SANDBOX_REALM, http=http, clock=sandbox.clock.now, sleep=sandbox.clock.advance
        )
        yield Box(sandbox, settings, tokens, oauth, client, sent)
    sandbox.close()
    assert sandbox.errors == [], "the sandbox hit an internal error"
