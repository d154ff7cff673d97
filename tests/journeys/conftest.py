"""The journeys run against what `make run` serves: the demo company with its simulated weeks of history (the real
engine, dated relative to the clock), a loopback sandbox holding the company the history left, one `synchealth serve`.

Built once per session (the history takes a while); each journey opens its own browser. The server's first cycle is
awaited, so that every page a journey reads describes the same state of the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser import ROOT, first_cycle_done, require_chromium, served

from pipelines.clock import system_clock
from pipelines.config import Settings
from pipelines.demo.history import write_history_demo
from pipelines.store import Store
from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread

REALM = Settings().realm_id


@dataclass(frozen=True)
class Refused:
    """The bill QuickBooks refused in the history's last cycle (its vendor made inactive just before the send)."""

    key: str
    number: str
    party: str
    amount: str  # as the pages write it: $7,420.86
    vendor_qbo_id: str


@dataclass(frozen=True)
class DemoApp:
    url: str
    db: Path
    env: dict[str, str]
    sandbox_url: str
    refused: Refused
    realm: str = REALM


def _cli(env: dict[str, str], *args: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SYNCHEALTH_")}
    subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--actor", "admin@demo.local", *args],
        cwd=ROOT,
        env={**clean, **env},
        check=True,
        capture_output=True,
    )


def _refused(db: Path, refused: list[str]) -> Refused:
    """The history's refused bill, read from the store it left (before the server holds it)."""
    assert len(refused) == 1, refused  # the history makes exactly one vendor inactive before a send
    key = refused[0].split(" ")[0]
    with Store(db) as store:
        ((number, party, amount, code),) = store.rows(
            """SELECT b.bill_number, v.name, b.total, a.qbo_code FROM cur_bills b
               JOIN cur_vendors v ON v.realm_id = b.realm_id AND v.vendor_id = b.vendor_id
               JOIN sync_attempts a ON a.realm_id = b.realm_id AND a.entity = 'bill' AND a.record_id = b.bill_id
               WHERE b.bill_id = ? AND a.outcome = 'rejected'""",
            [key.partition(":")[2]],
        )
    assert code == "2500"  # QuickBooks's invalid-reference code, as it answers an inactive vendor
    vendor_id = refused[0].rsplit("Vendor ", 1)[1].split(" ")[0]
    return Refused(key, number, party, f"${amount:,.2f}", vendor_id)


@pytest.fixture(scope="session")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoApp]:
    require_chromium()
    root = tmp_path_factory.mktemp("journeys")
    settings = Settings(db_path=root / "synchealth.duckdb")
    history = write_history_demo(root / "demo", settings, now=system_clock(), scale=3000, per_week=2)
    refused = _refused(settings.db_path, history.refused_by_qbo)
    with start_in_thread(Sandbox(root / "demo" / "qbo-company.json")) as running:
        env = {
            "SYNCHEALTH_DB": str(settings.db_path),
            "SYNCHEALTH_REALM_ID": REALM,
            "SYNCHEALTH_QBO_BASE_URL": running.base_url,
        }
        _cli(env, "connect")  # the demo's first connect, as `make run` does; the server's first cycle pulls and syncs
        with served(env, root / "serve.log") as url:
            first_cycle_done(url, settings.db_path)
            yield DemoApp(url=url, db=settings.db_path, env=env, sandbox_url=running.base_url, refused=refused)
