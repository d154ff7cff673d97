"""Sync runs and Record pages through AppTest, against a sandbox on loopback: roles decide the buttons."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures import tiny_snapshot
from served import open_page, serve
from world import World


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """A synced tiny company (one bill waiting on an unmapped item), with the app pointed at it."""
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"
    yield from serve(tmp_path, monkeypatch, snap)


_page = open_page


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
