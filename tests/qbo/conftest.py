"""Fixtures for the qbo client's tests: the sandbox in-process, its clock, settings, a connected realm, a client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from sandbox.sandbox_helpers import company
from scripted import REALM, START, SandboxTime, Scripted

from pipelines.config import Settings
from pipelines.store import Store
from qbo.client import QboClient
from qbo.oauth import OAuthClient, authorize_url, new_state
from qbo.sandbox import Sandbox
from qbo.tokens import TokenStore

BASE = "http://sandbox.local"


@pytest.fixture
def clock() -> SandboxTime:
    return SandboxTime(START)


@pytest.fixture
def sandbox(clock: SandboxTime) -> Iterator[Sandbox]:
    box = Sandbox(company(), clock=clock.clock)
    yield box
    box.close()
    assert box.errors == [], "the sandbox hit an internal error"


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
def qbo(sandbox: Sandbox) -> Scripted:
    return Scripted(sandbox)


@pytest.fixture
def http(qbo: Scripted) -> Iterator[httpx.Client]:
    with httpx.Client(transport=qbo) as client:
        yield client


@pytest.fixture
def oauth(settings: Settings, token_store: TokenStore, http: httpx.Client, clock: SandboxTime) -> OAuthClient:
    return OAuthClient(settings, token_store, http=http, clock=clock)


def connect(settings: Settings, oauth: OAuthClient, http: httpx.Client) -> None:
    """The whole browser round trip against the sandbox: authorize -> redirect with code and realmId -> exchange."""
    state = new_state()
    redirect = http.get(authorize_url(settings, state), follow_redirects=False)
    callback = {k: v[0] for k, v in parse_qs(urlsplit(redirect.headers["location"]).query).items()}
    assert callback["state"] == state and callback["realmId"] == REALM
    oauth.exchange_code(callback["code"], callback["realmId"], connected_by="admin@demo.local")


@pytest.fixture
def connected(settings: Settings, oauth: OAuthClient, token_store: TokenStore, http: httpx.Client) -> TokenStore:
    """The realm connected through the real code exchange against the sandbox's token endpoint."""
    connect(settings, oauth, http)
    return token_store


@pytest.fixture
def client(settings: Settings, connected: TokenStore, http: httpx.Client, clock: SandboxTime) -> QboClient:
    return QboClient(settings, connected, REALM, http=http, clock=clock, sleep=clock.sleep)


@dataclass
class Box:
    """The sandbox, the wire in front of it and a connected client, for tests that drive QBO's state."""

    sandbox: Sandbox
    qbo: Scripted
    tokens: TokenStore
    oauth: OAuthClient
    client: QboClient


@pytest.fixture
def box(sandbox: Sandbox, qbo: Scripted, connected: TokenStore, oauth: OAuthClient, client: QboClient) -> Box:
    return Box(sandbox, qbo, connected, oauth, client)
