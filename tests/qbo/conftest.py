"""Fixtures for the qbo client's tests: a fake clock, settings, a connected realm, and the in-memory QBO."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from qbo_fakes import AUTH_CODE, BASE, REALM, FakeClock, FakeQbo

from pipelines.config import Settings
from pipelines.store import Store
from qbo.client import QboClient
from qbo.oauth import OAuthClient
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
