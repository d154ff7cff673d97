"""Sync runs and Record pages through AppTest, against a sandbox on loopback: roles decide the buttons."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures import REALM, tiny_company, tiny_snapshot
from streamlit.testing.v1 import AppTest
from test_sync import World

from pipelines.page_data import get_settings, get_store
from qbo.sandbox import Sandbox
from qbo.sandbox.server import start_in_thread

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A synced tiny company (one bill waiting on an unmapped item), with the app pointed at it."""
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"
    with start_in_thread(Sandbox(tiny_company())) as running:
        world = World(tmp_path, snap, base_url=running.base_url, sandbox=running.sandbox)
        world.cycle()
        world.store.close()
        for name, value in {
            "SYNCHEALTH_DB": str(world.settings.db_path),
            "SYNCHEALTH_REALM_ID": REALM,
            "SYNCHEALTH_QBO_BASE_URL": running.base_url,
            "SYNCHEALTH_SECRET_KEY": world.settings.secret_key,
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(ROOT)
        get_settings.clear()
        get_store.clear()
        yield world
        get_store.clear()
        get_settings.clear()


def _page(page: str, actor: str = "viewer@demo.local", **query: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["actor"] = actor
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(f"app_pages/{page}").run()
    return at


def test_sync_runs_page_lists_runs_and_their_attempts(served: World) -> None:
    at = _page("sync_runs.py")
    assert not at.exception
    runs = at.dataframe[0].value
    assert int(runs["accepted"].iloc[0]) == 7  # all but BILL-1 (no item) and BP-1 (waits on it)
    attempts = at.dataframe[1].value
    assert set(attempts["outcome"]) == {"accepted"} and attempts["intuit_tid"].notna().all()
    assert len(at.button) == 0  # a viewer cannot start a sync


def test_record_page_shows_the_chain_and_hides_retry_from_a_viewer(served: World) -> None:
    at = _page("record.py", key="bill:BILL-1")
    assert not at.exception
    assert at.metric[0].value == "blocked"
    assert "mapping.item_missing" in at.error[0].value
    assert any("Retry needs the admin role" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == "retry_go"]


def test_an_admin_retry_on_the_record_page_is_refused_until_the_cause_changes(served: World) -> None:
    at = _page("record.py", actor="admin@demo.local", key="bill:BILL-1")
    at.button(key="retry_go").click().run()
    assert not at.exception
    assert "still line 1: item SKU WID-220 has no QuickBooks item" in at.warning[0].value

    synced = _page("record.py", actor="admin@demo.local", key="bill:BILL-2")
    assert synced.metric[0].value == "not ready"


def test_an_unknown_key_says_what_a_key_looks_like(served: World) -> None:
    at = _page("record.py", key="bill:NOPE")
    assert "No record with this key" in at.warning[0].value and "bill:BILL-000123" in at.warning[0].value
