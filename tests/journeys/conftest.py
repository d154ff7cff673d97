"""The journeys run against what `make run` serves: the demo company with its simulated weeks of history (the real
engine, dated relative to the clock), a loopback sandbox holding the company the history left, one `synchealth serve`.

Built once per session (the history takes a while); each journey opens its own browser. The server's first cycle is
awaited, so that every page a journey reads describes the same state of the store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from browser import ROOT, require_chromium, served

from pipelines.clock import system_clock
from pipelines.config import Settings
from pipelines.demo.history import write_history_demo
from pipelines.serve.remote import read_server_file
from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread

REALM = Settings().realm_id


@dataclass(frozen=True)
class DemoApp:
    url: str
    db: Path
    env: dict[str, str]
    sandbox_url: str
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


def _first_cycle_done(url: str, db: Path, seconds: float = 180) -> None:
    """Wait until the server's first cycle has finished (its scheduler reports it through /healthz)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        info = read_server_file(db)
        if info:
            body = httpx.get(f"{url}/healthz", headers={"authorization": f"Bearer {info['token']}"}, timeout=10).json()
            scheduler = body.get("scheduler", {})
            if scheduler.get("cycles", 0) + scheduler.get("failed_cycles", 0) >= 1 and not scheduler.get("current"):
                return
        time.sleep(0.5)
    raise AssertionError(f"the server's first cycle did not finish within {seconds:.0f} s")


@pytest.fixture(scope="session")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoApp]:
    require_chromium()
    root = tmp_path_factory.mktemp("journeys")
    settings = Settings(db_path=root / "synchealth.duckdb")
    write_history_demo(root / "demo", settings, now=system_clock(), scale=3000, per_week=2)
    with start_in_thread(Sandbox(root / "demo" / "qbo-company.json")) as running:
        env = {
            "SYNCHEALTH_DB": str(settings.db_path),
            "SYNCHEALTH_REALM_ID": REALM,
            "SYNCHEALTH_QBO_BASE_URL": running.base_url,
        }
        _cli(env, "connect")  # the demo's first connect, as `make run` does; the server's first cycle pulls and syncs
        with served(env, root / "serve.log") as url:
            _first_cycle_done(url, settings.db_path)
            yield DemoApp(url=url, db=settings.db_path, env=env, sandbox_url=running.base_url)
