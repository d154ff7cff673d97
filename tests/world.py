"""The one test world: a store with the tiny company's records, the sandbox behind it, and the commands over both.

Every test that needs a store with records builds it here. People act through `world.commands` with
`world.caller(ADMIN)` (or another identity), exactly as the CLI and the pages do; the engine's clock is
`world.now`, which tests move by hand, and the QuickBooks client runs on the sandbox's clock.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from fixtures import REALM, T0, tiny_company, tiny_snapshot, write_snapshot

from pipelines.commands import Caller, Commands, Result
from pipelines.config import Settings
from pipelines.connection import connect, qbo_client
from pipelines.cycle import CycleResult, run_cycle
from pipelines.exceptions import refresh_exceptions
from pipelines.identity import Identity
from pipelines.ingest import ingest_snapshot
from pipelines.pull import pull
from pipelines.routing import load_routing
from pipelines.store import Store
from qbo.sandbox import Sandbox

__all__ = [
    "ADMIN",
    "ELIGIBLE",
    "FINANCE",
    "SANDBOX_URL",
    "VIEWER",
    "World",
    "caller_at",
    "commands_on",
    "exactly_once",
]

ADMIN = Identity("admin@demo.local", "admin")
FINANCE = Identity("finance@demo.local", "finance")
VIEWER = Identity("viewer@demo.local", "viewer")
SANDBOX_URL = "http://sandbox.local"  # the in-process transport; any other URL is a sandbox served over loopback
# Every eligible record of the tiny snapshot (BILL-2 is pending and unposted, so it never goes).
ELIGIBLE = {
    "Vendor": {"VEN-1", "VEN-2"},
    "Customer": {"CUS-1"},
    "PurchaseOrder": {"PO-1"},
    "Bill": {"BILL-1"},
    "Invoice": {"INV-1"},
    "Payment": {"PAY-1"},
    "BillPayment": {"BP-1"},
    "JournalEntry": {"JE-1"},
}


class World:
    """A store, a sandbox and a connected client, with the engine's clock in the test's hand."""

    def __init__(
        self,
        tmp_path: Path,
        snapshot: dict | None = None,
        company: dict | None = None,
        base_url: str = SANDBOX_URL,
        sandbox: Sandbox | None = None,
        *,
        connected: bool = True,
        ingested: bool = True,
        retry_schedule: tuple[int, ...] = (60, 120, 240),
        routing_file: Path | None = None,
        database_url: str | None = None,
    ) -> None:
        self.tmp = tmp_path
        self.sandbox = sandbox or Sandbox(company or tiny_company())
        self.settings = Settings(
            db_path=tmp_path / "sync.duckdb",
            qbo_base_url=base_url,
            secret_key=Fernet.generate_key().decode(),
            secret_key_file=tmp_path / "secret.key",
            retry_schedule=retry_schedule,
            database_url=database_url,
            **({"routing_file": routing_file} if routing_file else {}),
        )
        self.http = httpx.Client(transport=self.sandbox.transport()) if base_url == SANDBOX_URL else None
        self.store = Store(self.settings.store_target)
        self.now = T0
        self.snapshots = 0
        if ingested:
            self.ingest(snapshot or tiny_snapshot())
        # People and the scheduler act through these, as the CLI and the pages do; a QuickBooks throttle wait
        # moves the sandbox clock instead of sleeping, so the tests stay fast and exact.
        self.commands = Commands(self.store, self.settings, client_factory=lambda realm, _clock: self.client(realm))
        if connected:
            connect(self.settings, self.store, actor=ADMIN.email, http=self.http or httpx.Client())

    # -- time and people ---------------------------------------------------------------------------------
    def caller(self, identity: Identity = ADMIN, realm_id: str = REALM) -> Caller:
        return Caller(identity, realm_id, lambda: self.now)

    def advance(self, **delta: float) -> None:
        """Move the engine's clock and the sandbox's together."""
        step = timedelta(**delta)
        self.now += step
        self.sandbox.clock.advance(step.total_seconds())

    # -- data in -----------------------------------------------------------------------------------------
    def ingest(self, snapshot: dict, fmt: str = "csv") -> Any:
        self.snapshots += 1
        folder = write_snapshot(self.tmp / f"awra-{self.snapshots}", snapshot, fmt)
        return ingest_snapshot(self.store, folder, realm_id=REALM, now=self.now)

    def client(self, realm_id: str = REALM):
        return qbo_client(
            self.settings,
            self.store,
            realm_id,
            http=self.http,
            sleep=lambda s: self.sandbox.clock.advance(s),
            clock=self.sandbox.clock.now,
        )

    def pull(self) -> Any:
        with self.client() as client:
            return pull(self.store, client, now=self.now)

    def cycle(self, only=None) -> CycleResult:
        """What the scheduler does: pull, check, sync, the exception queue."""
        with self.client() as client:
            pull(self.store, client, now=self.now)
            return run_cycle(
                self.store, client, self.settings, now=self.now, trigger="manual", actor=ADMIN.email, only=only
            )

    def refresh(self) -> dict[str, int]:
        return refresh_exceptions(self.store, REALM, now=self.now, routing=load_routing(self.settings.routing_file))

    def drain(self, rounds: int = 12) -> None:
        """Run cycles, moving the clock past every scheduled retry, until nothing is left to do."""
        for _ in range(rounds):
            self.cycle()
            self.advance(minutes=10)
            left = self.store.scalar(
                "SELECT count(*) FROM records WHERE state IN ('ready', 'queued', 'retry_scheduled', 'ambiguous')"
            )
            if not left:
                return

    # -- people's commands (through the one way in) -------------------------------------------------------
    def retry(self, *keys: str, identity: Identity = ADMIN, override: str | None = None) -> Result:
        return self.commands.retry(self.caller(identity), list(keys), override_reason=override)

    def map(self, kind: str, value: str, qbo_id: str, identity: Identity = ADMIN, reason: str | None = None) -> Result:
        return self.commands.map(self.caller(identity), kind, value, qbo_id, reason=reason)

    # -- what happened -----------------------------------------------------------------------------------
    def state(self, key: str) -> str:
        entity, record_id = key.split(":")
        return self.store.scalar("SELECT state FROM records WHERE entity = ? AND record_id = ?", [entity, record_id])

    def exception_id(self, record_id: str, reason: str) -> int:
        return int(
            self.store.scalar(
                "SELECT exception_id FROM exceptions WHERE record_id = ? AND reason = ? ORDER BY exception_id DESC "
                "LIMIT 1",
                [record_id, reason],
            )
        )

    def in_qbo(self) -> dict[str, Counter]:
        """Per entity: how many QBO objects carry each AWRA record's marker (counted by the control API)."""
        out = {}
        for entity in ELIGIBLE:
            notes = [
                o.get("Notes") or o.get("PrivateNote") or ""
                for o in self.sandbox.entities(REALM, entity)
                if o.get("status") != "Deleted"
            ]
            out[entity] = Counter(n.split(":")[2] for n in notes if n.startswith("awra:"))
        return out

    def reads_since(self, mark: int) -> list[tuple[str, str]]:
        """The API requests the sandbox served after `mark` (an index into its request log)."""
        return [(e["method"], e["path"]) for e in list(self.sandbox.request_log)[mark:]]

    def close(self) -> None:
        self.store.close()


def exactly_once(world: World) -> None:
    """Every eligible record is in QuickBooks exactly once (by its source marker)."""
    found = world.in_qbo()
    for entity, ids in ELIGIBLE.items():
        assert dict(found[entity]) == dict.fromkeys(ids, 1), (entity, found[entity])


def commands_on(store: Store) -> Commands:
    """Commands over a store built without a World (no QuickBooks client: for what needs none)."""
    return Commands(store, Settings(db_path=store.path))


def caller_at(identity: Identity, now, realm_id: str = REALM) -> Caller:
    """Someone acting at a fixed moment."""
    return Caller(identity, realm_id, lambda: now)
