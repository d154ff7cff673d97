"""Every page action acts on the company picked in the sidebar, never on the one the settings name.

Before, the page's retry and "sync now" took no company: with two in the store, an admin looking at the second
retried and synced the first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures import REALM, T0, tiny_snapshot, write_snapshot
from served import open_page, serve
from world import ADMIN, World, caller_at, commands_on

from pipelines.ingest import ingest_snapshot
from pipelines.store import Store

OTHER = "4620816365300011"  # a second QuickBooks company in the same store, with nothing mapped yet


@pytest.fixture
def two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    def second_company(world: World) -> None:
        ingest_snapshot(world.store, write_snapshot(tmp_path / "other", tiny_snapshot()), realm_id=OTHER, now=T0)
        assert commands_on(world.store).check(caller_at(ADMIN, T0, OTHER)).ok  # its records wait on mappings

    yield from serve(tmp_path, monkeypatch, tiny_snapshot(), after=second_company)


def _picked(page: str, actor: str, **query: str):
    at = open_page(page, actor=actor, **query)
    at.selectbox(key="realm").set_value(OTHER).run()
    return at


def _realms(db: Path, sql: str) -> list[str]:
    with Store(db) as store:
        return [r[0] for r in store.rows(sql)]


def test_retry_sync_and_exclude_from_the_pages_act_on_the_picked_company(two: World) -> None:
    db = two.settings.db_path
    checks_before = _realms(db, "SELECT realm_id FROM check_runs ORDER BY run_id")

    record = _picked("record.py", "admin@demo.local", key="vendor:VEN-1")  # ready there: retry is enabled
    record.button(key="retry_go").click().run()
    assert not record.exception
    checks = _realms(db, "SELECT realm_id FROM check_runs ORDER BY run_id")
    assert checks[len(checks_before) :] == [OTHER]  # the retry re-checked the picked company, and only it

    runs = _picked("sync_runs.py", "admin@demo.local")
    runs.button(key="sync_now").click().run()
    assert not runs.exception
    assert _realms(db, "SELECT realm_id FROM sync_runs ORDER BY run_id")[-1] == OTHER

    queue = _picked("action_queue.py", "admin@demo.local")
    queue.checkbox(key="q_all").check().run()
    queue.text_input(key="q_exclude_reason").set_value("a test company").run()
    queue.button(key="q_exclude").click().run()
    assert not queue.exception
    assert set(_realms(db, "SELECT realm_id FROM exclusions")) == {OTHER}
    assert set(_realms(db, "SELECT realm_id FROM audit_log WHERE action IN ('exclude', 'sync')")) == {OTHER}
    assert _realms(db, f"SELECT count(*) FROM exclusions WHERE realm_id = '{REALM}'") == [0]
