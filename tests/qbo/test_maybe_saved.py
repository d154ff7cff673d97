"""A write QBO may have saved despite a transient fault is looked up before any resend, and lands exactly once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from fixtures import REALM, T0, tiny_company, tiny_snapshot, write_snapshot

from pipelines.config import Settings
from pipelines.connection import connect, qbo_client
from pipelines.cycle import run_cycle
from pipelines.ingest import ingest_snapshot
from pipelines.pull import pull
from pipelines.store import Store
from qbo.sandbox import Sandbox


class Engine:
    """The engine on a store, against the in-process sandbox, with its clock in the test's hand."""

    def __init__(self, tmp_path: Path) -> None:
        self.sandbox = Sandbox(tiny_company())
        self.settings = Settings(
            db_path=tmp_path / "sync.duckdb",
            qbo_base_url="http://sandbox.local",
            secret_key=Fernet.generate_key().decode(),
            secret_key_file=tmp_path / "secret.key",
            retry_schedule=(60, 120, 240),
        )
        self.http = httpx.Client(transport=self.sandbox.transport())
        self.store = Store(self.settings.db_path)
        self.now = T0
        ingest_snapshot(self.store, write_snapshot(tmp_path / "awra", tiny_snapshot()), realm_id=REALM, now=self.now)
        connect(self.settings, self.store, actor="admin@demo.local", http=self.http)

    def cycle(self) -> None:
        with qbo_client(
            self.settings, self.store, http=self.http, sleep=self.sandbox.clock.advance, clock=self.sandbox.clock.now
        ) as client:
            pull(self.store, client, now=self.now)
            run_cycle(self.store, client, self.settings, now=self.now, trigger="manual", actor="admin@demo.local")

    def later(self, minutes: int = 10) -> None:
        self.now += timedelta(minutes=minutes)
        self.sandbox.clock.advance(minutes * 60)

    def markers(self, entity: str) -> Counter:
        notes = [
            str(o.get("Notes") or o.get("PrivateNote") or "")
            for o in self.sandbox.entities(REALM, entity)
            if o.get("status") != "Deleted"
        ]
        return Counter(n.split(":")[2] for n in notes if n.startswith("awra:"))

    def rows(self, sql: str) -> list[tuple]:
        return self.store.rows(sql)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = Engine(tmp_path)
    yield e
    e.store.close()
    assert e.sandbox.errors == []


def test_a_write_saved_despite_the_try_again_6000_is_found_by_lookup_and_never_created_twice(engine: Engine) -> None:
    engine.sandbox.set_faults("try_again_6000@write=1")
    engine.cycle()
    # Every write (the vendors' batch included) was saved and answered with the 6000: the records wait for a
    # lookup at their scheduled retry, nothing was resent.
    assert engine.markers("Vendor") == {"VEN-1": 1, "VEN-2": 1}
    states = dict(engine.rows("SELECT record_id, state FROM records WHERE entity = 'vendor'"))
    assert states == {"VEN-1": "retry_scheduled", "VEN-2": "retry_scheduled"}
    reasons = {r[0] for r in engine.rows("SELECT reason FROM sync_attempts")}
    assert reasons == {"transport.try_again"}
    engine.sandbox.set_faults(None)
    engine.later()
    engine.cycle()
    engine.later()
    engine.cycle()
    # Found by their markers (the pull's link or the engine's lookup) and linked: none was created a second time.
    assert engine.markers("Vendor") == {"VEN-1": 1, "VEN-2": 1} and engine.markers("Customer") == {"CUS-1": 1}
    assert engine.markers("Bill") == {"BILL-1": 1} and engine.markers("JournalEntry") == {"JE-1": 1}
    assert engine.rows("SELECT count(*) FROM records WHERE state NOT IN ('synced', 'not_ready')") == [(0,)]


def test_a_5xx_to_a_write_is_looked_up_then_resubmitted_once_and_lands_once(engine: Engine) -> None:
    engine.sandbox.set_faults("http_500@write=1")
    engine.cycle()
    log = list(engine.sandbox.request_log)
    assert engine.markers("Vendor") == {}
    assert {r[0] for r in engine.rows("SELECT reason FROM sync_attempts")} == {"transport.server_error"}
    # A write that failed is looked up (a query) before it is resubmitted, never resent straight away, and is
    # resubmitted once: a lone create is sent twice in all, a batch member once on its own.
    writes = [e for e in log if e["operation"] in ("create", "batch")]
    assert writes and all(e["note"] == "fault:http_500" for e in writes)
    assert not any(
        a["operation"] == b["operation"] == "create" and a["requestid"] == b["requestid"] for a, b in pairwise(log)
    )
    assert max(Counter(e["requestid"] for e in writes).values()) == 2
    engine.sandbox.set_faults(None)
    for _ in range(4):
        engine.later()
        engine.cycle()
    assert engine.markers("Vendor") == {"VEN-1": 1, "VEN-2": 1}
    assert engine.rows("SELECT count(*) FROM records WHERE state NOT IN ('synced', 'not_ready')") == [(0,)]
