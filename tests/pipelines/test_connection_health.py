"""Connection health against the sandbox: countdowns on its clock, the early reconnect exception, webhook status."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from fixtures import REALM, tiny_company, tiny_snapshot, write_snapshot

from pipelines.config import Settings
from pipelines.connection import connect, qbo_client
from pipelines.connection_health import RECONNECT_SOON, check_reconnect, connection_health, needs_refresh
from pipelines.cycle import run_cycle
from pipelines.exceptions import refresh_exceptions
from pipelines.ingest import ingest_snapshot
from pipelines.pull import pull
from pipelines.serve.webhooks import WebhookDelivery, persist_deliveries
from pipelines.store import Store
from qbo.oauth import OAuthClient, ReconnectNeededError
from qbo.sandbox import Sandbox
from qbo.tokens import TokenStore

DAY = 86400


def warnings_then_queue(world: World, **kwargs) -> list[dict]:
    """What a cycle does with the connection: record its warnings, then bring the exception queue in step."""
    found = check_reconnect(world.store, REALM, **kwargs)
    refresh_exceptions(world.store, REALM, now=kwargs["now"])
    return found


class World:
    """A store connected to the in-process sandbox; the app's clock is the sandbox's, so advancing it ages tokens."""

    def __init__(self, tmp_path: Path) -> None:
        self.sandbox = Sandbox(tiny_company())
        self.settings = Settings(
            db_path=tmp_path / "h.duckdb",
            qbo_base_url="http://sandbox.local",
            secret_key=Fernet.generate_key().decode(),
            secret_key_file=tmp_path / "secret.key",
        )
        self.http = httpx.Client(transport=self.sandbox.transport())
        self.store = Store(self.settings.db_path)
        connect(self.settings, self.store, actor="admin@demo.local", http=self.http)

    def now(self) -> datetime:
        return self.sandbox.clock.now()

    def advance(self, seconds: float) -> None:
        self.sandbox.clock.advance(seconds)

    def refresh(self) -> None:
        oauth = OAuthClient(self.settings, TokenStore(self.store, self.settings), http=self.http, clock=self.now)
        oauth.refresh(REALM)

    def health(self):
        return connection_health(self.store, REALM, now=self.now(), host=self.settings.api_base_url)

    def open_connection_exceptions(self) -> list[tuple]:
        return self.store.rows(
            "SELECT reason, owner_role, occurrences, detail FROM exceptions "
            "WHERE entity = 'connection' AND status <> 'resolved' ORDER BY reason"
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.store.close()


def test_countdowns_follow_the_sandbox_clock(world: World) -> None:
    h = world.health()
    assert h.status == "connected" and h.connected_by == "admin@demo.local" and h.environment == "local"
    assert h.scopes == ("com.intuit.quickbooks.accounting",)
    assert 3500 < h.access_seconds_left <= 3600
    assert 100 < (h.refresh_expires_at - world.now()).total_seconds() / DAY <= 101
    assert 5 * 365 - 1 < (h.refresh_hard_expires_at - world.now()).total_seconds() / DAY <= 5 * 365
    assert h.lapses_at == h.refresh_expires_at and not needs_refresh(h, world.now())

    world.advance(1800)
    assert 1700 < world.health().access_seconds_left <= 1800
    world.advance(1300)  # nine minutes left: refreshed ahead of expiry
    assert needs_refresh(world.health(), world.now())
    world.refresh()
    h = world.health()
    assert h.access_seconds_left > 3500 and h.refresh_count == 1 and h.last_refresh_at is not None


def test_the_reconnect_exception_opens_days_before_the_refresh_token_lapses(world: World) -> None:
    assert warnings_then_queue(world, now=world.now()) == []
    world.advance(88 * DAY)  # unused for 88 days: 13 days of the rolling window left
    assert warnings_then_queue(world, now=world.now(), warn_days=10) == []
    found = warnings_then_queue(world, now=world.now())
    assert [w["reason"] for w in found] == [RECONNECT_SOON]
    ((reason, owner, seen, detail),) = world.open_connection_exceptions()
    assert (reason, owner, seen) == (RECONNECT_SOON, "admin", 1) and "lapses in 13 day(s)" in detail
    assert world.health().warnings[0]["reason"] == RECONNECT_SOON

    warnings_then_queue(world, now=world.now())
    assert world.open_connection_exceptions()[0][2] == 2  # the same exception, seen again

    world.refresh()  # a use restarts the 100 days: the cause is gone and the exception resolves itself
    assert warnings_then_queue(world, now=world.now()) == []
    assert world.open_connection_exceptions() == []
    assert world.store.scalar("SELECT resolved_by FROM exceptions WHERE reason = ?", [RECONNECT_SOON]) == "system"
    assert world.store.scalar("SELECT count(*) FROM audit_log WHERE action = 'auto_resolve'") == 1


def test_the_five_year_cap_warns_even_though_refreshes_keep_working(world: World) -> None:
    for _ in range(18):  # keep the connection alive every 100 days, for 5 years less 25 days
        world.advance(100 * DAY)
        world.refresh()
    world.advance(5 * 365 * DAY - 18 * 100 * DAY - 25 * DAY)
    world.refresh()
    assert warnings_then_queue(world, now=world.now()) == []
    world.advance(12 * DAY)
    world.refresh()
    h = world.health()
    assert h.lapses_at == h.refresh_hard_expires_at
    (found,) = warnings_then_queue(world, now=world.now())
    assert found["reason"] == RECONNECT_SOON and "5-year limit" in found["detail"]


def test_invalid_grant_pauses_the_realm_and_the_exception_opens_at_once(world: World) -> None:
    world.advance(88 * DAY)
    warnings_then_queue(world, now=world.now())
    world.sandbox.expire_tokens(REALM, refresh=True)  # revoked in QuickBooks
    with pytest.raises(ReconnectNeededError):
        world.refresh()
    assert world.health().status == "reconnect_needed"
    refresh_exceptions(world.store, REALM, now=world.now())
    warnings_then_queue(world, now=world.now())
    assert [r[0] for r in world.open_connection_exceptions()] == ["authorization.reconnect_needed"]


def test_a_refused_call_opens_the_exception_at_once(world: World, tmp_path: Path) -> None:
    ingest_snapshot(world.store, write_snapshot(tmp_path / "awra", tiny_snapshot()), realm_id=REALM, now=world.now())
    with qbo_client(world.settings, world.store, http=world.http, clock=world.now) as client:
        pull(world.store, client, now=world.now())
        world.sandbox.set_faults("auth_401=1.0")  # every API call: 401, even after a refresh
        run_cycle(world.store, client, world.settings, now=world.now(), trigger="manual", actor="admin@demo.local")
    world.sandbox.set_faults(None)
    found = warnings_then_queue(world, now=world.now())
    assert [w["reason"] for w in found] == ["authorization.token_expired"]
    assert world.open_connection_exceptions()[0][:2] == ("authorization.token_expired", "admin")


def test_webhook_status_counts_events_and_signature_failures(world: World) -> None:
    at = datetime.now(UTC)
    persist_deliveries(
        world.store,
        [
            WebhookDelivery(at, "valid", "cloudevents", {REALM: {"Account": ["3"]}}),
            WebhookDelivery(at + timedelta(seconds=1), "invalid"),
            WebhookDelivery(at + timedelta(seconds=2), "missing"),
        ],
    )
    hook = world.health().webhook
    assert hook["events"] == 1 and hook["last_event"] == {"Account": ["3"]} and hook["last_format"] == "cloudevents"
    assert hook["signature_failures"] == 2 and hook["unprocessed"] == 1
