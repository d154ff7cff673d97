"""The token store: encrypted at rest, key file owner-only, tokens never in the file, logs, repr or status."""

from __future__ import annotations

import logging
import os
import pickle
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from conftest import connect
from scripted import REALM, START, SandboxTime, Scripted

from pipelines.config import Settings
from pipelines.store import Store
from qbo.client import QboClient
from qbo.oauth import OAuthClient, ReconnectNeededError
from qbo.sandbox.oauth import HARD_EXPIRY_SECONDS, REFRESH_TOKEN_SECONDS
from qbo.tokens import Secret, TokenKeyError, TokenSet, TokenStore, TokenUnreadableError


def _file_bytes(db: Path) -> bytes:
    wal = db.with_name(db.name + ".wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_tokens_never_reach_the_database_file_or_the_logs(
    tmp_path: Path, settings: Settings, qbo: Scripted, clock: SandboxTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "tokens.duckdb"
    seen: list[str] = []
    with Store(db) as store, httpx.Client(transport=qbo) as http:
        tokens = TokenStore(store, settings)
        connect(settings, OAuthClient(settings, tokens, http=http, clock=clock), http)
        seen += [qbo.access, qbo.refresh]
        clock.advance(3700)  # the access token expires: one refresh rotates both tokens
        QboClient(settings, tokens, REALM, http=http, clock=clock, sleep=clock.sleep).company_info()
        seen += [qbo.access, qbo.refresh]
        assert tokens.load(REALM).refresh_token == Secret(qbo.refresh)  # stored, and readable with the key
        store.execute("CHECKPOINT")
    content = _file_bytes(db)
    assert len(set(seen)) == 4
    for token in seen:
        assert token.encode() not in content
        assert token not in caplog.text
    # The same grep finds a token that is stored in the clear, so the check above can fail.
    control = tmp_path / "control.duckdb"
    with Store(control) as plain:
        plain.execute("CREATE TABLE t (v VARCHAR)")
        plain.execute("INSERT INTO t VALUES (?)", [seen[-1]])
        plain.execute("CHECKPOINT")
    assert seen[-1].encode() in _file_bytes(control)


def test_a_secret_never_shows_itself() -> None:
    secret = Secret("RT1-very-secret-value")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert "very-secret" not in text
    tokens = TokenSet(secret, secret, access_expires_at=START)
    assert "very-secret" not in repr(tokens)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert secret.reveal() == "RT1-very-secret-value"


def test_the_demo_key_file_is_created_owner_only_and_reused(tmp_path: Path, store: Store) -> None:
    key_file = tmp_path / "data" / "secret.key"
    demo = Settings(secret_key=None, secret_key_file=key_file)
    first = TokenStore(store, demo)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    tokens = TokenSet(Secret("AT-a"), Secret("RT-a"), START + timedelta(hours=1))
    first.save_connection(REALM, tokens, now=START)
    again = TokenStore(store, demo)  # a restart: the same key, so the same tokens
    assert again.load(REALM).refresh_token == Secret("RT-a")
    assert again.status(REALM).status == "connected"


def test_a_key_file_others_can_read_is_refused_with_the_fix(tmp_path: Path, store: Store) -> None:
    key_file = tmp_path / "secret.key"
    TokenStore(store, Settings(secret_key=None, secret_key_file=key_file))
    os.chmod(key_file, 0o644)
    with pytest.raises(TokenKeyError, match=r"chmod 600"):
        TokenStore(store, Settings(secret_key=None, secret_key_file=key_file))


def test_settings_with_neither_a_key_nor_a_key_file_are_refused(store: Store) -> None:
    with pytest.raises(TokenKeyError, match=r"SYNCHEALTH_SECRET_KEY"):
        TokenStore(store, SimpleNamespace(secret_key=None, secret_key_file=None))


def test_a_changed_key_parks_the_connection_and_the_old_key_brings_it_back(store: Store) -> None:
    passphrase = Settings(secret_key="correct horse battery staple")
    TokenStore(store, passphrase).save_connection(
        REALM, TokenSet(Secret("AT-b"), Secret("RT-b"), START + timedelta(hours=1)), now=START
    )
    other = TokenStore(store, replace(passphrase, secret_key="a different passphrase"))
    status = other.status(REALM)
    assert (status.status, status.reason) == ("reconnect_needed", "authorization.token_unreadable")
    assert "SYNCHEALTH_SECRET_KEY" in (status.fix or "")
    with pytest.raises(TokenUnreadableError) as caught:
        other.load(REALM)
    assert "RT-b" not in str(caught.value)
    assert TokenStore(store, passphrase).status(REALM).status == "connected"


def test_the_connection_status_shows_lifetimes_and_history_but_no_token(
    connected: TokenStore, qbo: Scripted, clock: SandboxTime
) -> None:
    status = connected.status(REALM)
    shown = status.to_dict()
    assert shown["status"] == "connected" and shown["connected_by"] == "admin@demo.local"
    assert shown["scopes"] == ["com.intuit.quickbooks.accounting"]
    assert status.access_expires_at == clock.now + timedelta(seconds=3600)
    assert status.refresh_expires_at == clock.now + timedelta(seconds=REFRESH_TOKEN_SECONDS)
    # Asked for with x-include-refresh-token-hard-expires-in and kept (ref §2).
    assert status.refresh_hard_expires_at == clock.now + timedelta(seconds=HARD_EXPIRY_SECONDS)
    assert qbo.access not in str(shown) and qbo.refresh not in str(shown) and qbo.refresh not in repr(status)
    assert [e["event"] for e in connected.events(REALM)] == ["connected"]


def test_reconnect_needed_forgets_the_dead_tokens(connected: TokenStore, clock: SandboxTime) -> None:
    connected.mark_reconnect_needed(REALM, "authorization.reconnect_needed", now=clock.now)
    conn = connected.load(REALM)
    assert conn.access_token is None and conn.refresh_token is None
    assert conn.status.status == "reconnect_needed"
    assert "reconnects QuickBooks" in (conn.status.fix or "")


def test_an_unknown_realm_is_not_connected(token_store: TokenStore) -> None:
    status = token_store.status("123")
    assert (status.status, status.reason) == ("disconnected", "authorization.not_connected")


def test_oauth_refuses_to_work_on_a_parked_realm(
    connected: TokenStore, oauth: OAuthClient, qbo: Scripted, clock: SandboxTime
) -> None:
    connected.mark_reconnect_needed(REALM, "authorization.reconnect_needed", now=clock.now)
    calls = qbo.token_calls
    with pytest.raises(ReconnectNeededError, match="reconnect"):
        oauth.access_token(REALM)
    assert qbo.token_calls == calls
