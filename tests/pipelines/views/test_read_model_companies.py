"""Several companies in one store (the fleet's PostgreSQL, or a DuckDB file watching a few): the read-model tables hold
each company's rows side by side, a refresh of one leaves the others' rows, labels and change log as they were, and
every page's figures equal those read without the read model.

The second company is the tiny company again, not connected: the same record ids (BILL-1 in both), other states, so
a statement not narrowed to its company shows as wrong rows or figures.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from fixtures import PERIOD, REALM, tiny_snapshot, write_snapshot
from polars.testing import assert_frame_equal
from world import World

from pipelines import changes
from pipelines.ingest import ingest_snapshot
from pipelines.store import Store
from pipelines.views import health, queue, read_model, trends

OTHER = "4620816365300011"  # the second company: nothing mapped, its records wait on mappings
_TABLES = read_model._TABLES


@pytest.fixture
def world(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[World]:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    w = World(tmp_path, database_url=url)
    w.cycle()
    ingest_snapshot(w.store, write_snapshot(tmp_path / "other", tiny_snapshot()), realm_id=OTHER, now=w.now)
    assert w.commands.check(w.caller(realm_id=OTHER)).ok
    yield w
    w.close()


def _figures(store: Store, realm_id: str) -> dict:
    """What the Health and Trends pages show of a company that the read-model tables stand in for."""
    return {
        "states": health.records_by_state(store, realm_id),
        "funnel": health.funnel(store, realm_id),
        "close": health.period_close(store, realm_id, PERIOD),
        "controls": health.control_totals(store, realm_id, PERIOD),
        "intervals": health.blocked_intervals(store, realm_id, PERIOD).sort("entity", "record_id"),
        "offenders": trends.recurring_offenders(store, realm_id, min_failures=1),
    }


def _assert_pages_read_as_live(store: Store, realm_id: str) -> None:
    """The company's figures from its rows of the tables equal those of the live queries, and come from the tables."""
    live = _figures(store, realm_id)
    with health.prepared(store, realm_id):
        assert read_model.prepared_realm() == realm_id, "the tables are current: the page reads them"
        held = _figures(store, realm_id)
    for name, value in live.items():
        for part, frame in value.items() if isinstance(value, dict) else [(name, value)]:
            other = held[name][part] if isinstance(value, dict) else held[name]
            same = frame.equals(other) if isinstance(frame, pl.DataFrame) else frame == other
            assert same, (realm_id, name, part, frame, other)


def _rows(store: Store, name: str, realm_id: str) -> pl.DataFrame:
    frame = store.frame(f"SELECT * FROM {name} WHERE realm_id = ?", [realm_id])
    return frame.sort(frame.columns, nulls_last=True)


def _live_rows(store: Store, name: str, realm_id: str) -> pl.DataFrame:
    frame = store.frame(f"SELECT * FROM ({read_model._TABLES[name](read_model.facts())}) q", {"realm": realm_id})
    return frame.sort(frame.columns, nulls_last=True)


def _assert_rows_as_built(store: Store, realm_id: str) -> None:
    """Each table's rows of the company are exactly those a build from the live queries gives."""
    for name in _TABLES:
        try:
            assert_frame_equal(_rows(store, name, realm_id), _live_rows(store, name, realm_id), check_exact=True)
        except AssertionError as exc:
            raise AssertionError(f"{name} of {realm_id}") from exc


def _label(store: Store, realm_id: str) -> tuple:
    return store.rows("SELECT version, reinserted, change_mark FROM rm_state WHERE realm_id = ?", [realm_id])[0]


def _logged(store: Store, realm_id: str) -> list[tuple]:
    return store.rows("SELECT seq, entity, record_id FROM record_changes WHERE realm_id = ? ORDER BY seq", [realm_id])


def _exclude(world: World, realm_id: str, key: str) -> None:
    done = world.commands.exclude(world.caller(realm_id=realm_id), [key], reason="handled outside QuickBooks")
    assert done.ok, done


def test_two_companies_refreshed_in_turn_keep_their_rows_and_the_second_refresh_is_an_update(world: World) -> None:
    store = world.store
    assert read_model.refresh_read_model(store, REALM)
    assert read_model.refresh_read_model(store, OTHER)
    assert read_model.labelled_realms(store) == sorted([REALM, OTHER])
    assert read_model.is_current(store, REALM), "building the other company's rows leaves this one's current"
    for realm in (REALM, OTHER):
        _assert_rows_as_built(store, realm)
        _assert_pages_read_as_live(store, realm)
    other_rows = {name: _rows(store, name, OTHER) for name in _TABLES}
    other_label = _label(store, OTHER)

    world.advance(minutes=1)
    _exclude(world, REALM, "bill:BILL-2")  # BILL-2 is a record of both companies: only this one's is excluded
    assert not read_model.is_current(store, REALM)
    assert read_model.is_current(store, OTHER), "a write to one company leaves the other's rows current"
    assert read_model.refresh_read_model(store, REALM)
    assert _label(store, REALM)[1] > 0, "the rows of the records changed re-inserted in place, not rebuilt whole"
    assert read_model.is_current(store, REALM) and read_model.is_current(store, OTHER)
    assert _label(store, OTHER) == other_label
    for name in _TABLES:
        assert_frame_equal(_rows(store, name, OTHER), other_rows[name], check_exact=True)
    for realm in (REALM, OTHER):
        _assert_rows_as_built(store, realm)
        _assert_pages_read_as_live(store, realm)
    excluded = store.rows("SELECT realm_id FROM rm_records WHERE record_id = 'BILL-2' AND state = 'excluded'")
    assert excluded == [(REALM,)]


def _both_built_then_each_changed(world: World) -> Store:
    """Both companies' rows built, then a record of each excluded (the same ids exist in both companies)."""
    store = world.store
    assert read_model.refresh_read_model(store, REALM)
    assert read_model.refresh_read_model(store, OTHER)
    world.advance(minutes=1)
    _exclude(world, OTHER, "bill:BILL-1")
    _exclude(world, REALM, "bill:BILL-2")
    return store


def test_a_companys_change_log_waits_for_its_own_refresh(world: World) -> None:
    store = _both_built_then_each_changed(world)
    noted = _logged(store, OTHER)
    assert noted and _logged(store, REALM)

    assert read_model.refresh_read_model(store, REALM)
    assert _logged(store, REALM) == [], "the company's own notes are consumed"
    assert _logged(store, OTHER) == noted, "the other company's notes stay for its refresh"
    assert not read_model.is_current(store, OTHER)
    held = store.scalar("SELECT state FROM rm_records WHERE realm_id = ? AND record_id = 'BILL-1'", [OTHER])
    assert held != "excluded", "not yet: its rows are as they were"

    reinserted = _label(store, OTHER)[1]
    assert read_model.refresh_read_model(store, OTHER)
    assert _label(store, OTHER)[1] > reinserted, "updated from its log, in place"
    assert _logged(store, OTHER) == []
    for realm in (REALM, OTHER):
        _assert_rows_as_built(store, realm)
        _assert_pages_read_as_live(store, realm)


def test_a_log_emptied_unread_leaves_every_company_exact(world: World) -> None:
    store = _both_built_then_each_changed(world)
    assert changes.trim_unread(store, limit=0)
    assert store.rows("SELECT change_mark FROM rm_state") == [(None,), (None,)]  # each compares every input next
    for realm in (REALM, OTHER):
        assert read_model.refresh_read_model(store, realm)
        assert _label(store, realm)[2] is not None, "the log is read again"
        _assert_rows_as_built(store, realm)
        _assert_pages_read_as_live(store, realm)


@pytest.mark.parametrize("older", ["a label without its counts", "a label of other queries"])
def test_tables_an_older_release_built_for_one_company_are_rebuilt_once(world: World, older: str) -> None:
    """An older release held one company and replaced the tables for another: its tables are dropped, never read."""
    store = world.store
    assert read_model.refresh_read_model(store, REALM)
    store.execute("UPDATE rm_state SET version = ?", [json.dumps(["0123456789abcdef", "older"])])  # its queries
    if older == "a label without its counts":
        store.execute("ALTER TABLE rm_state DROP COLUMN change_mark")
        store.execute("ALTER TABLE rm_state DROP COLUMN reinserted")
    assert not read_model.is_current(store, REALM)
    assert read_model.refresh_read_model(store, OTHER)
    assert read_model.labelled_realms(store) == [OTHER], "the older tables are gone, the older company's rows too"
    assert store.rows("SELECT DISTINCT realm_id FROM rm_records") == [(OTHER,)]
    assert read_model.refresh_read_model(store, REALM)
    for realm in (REALM, OTHER):
        assert read_model.is_current(store, realm)
        _assert_rows_as_built(store, realm)
        _assert_pages_read_as_live(store, realm)


def test_two_processes_refreshing_two_companies_at_once_lose_nothing(
    world: World, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL two app servers may refresh two companies at the same moment: the second waits for the first,
    and each consumes its own company's notes alone."""
    if backend != "postgresql":
        pytest.skip("one process owns a DuckDB file; its threads' writes take turns")
    store = _both_built_then_each_changed(world)
    first_inside = threading.Event()
    update = read_model._update_records

    def slow(s: Store, realm_id: str):  # the first refresh holds its transaction open while the second starts
        if realm_id == REALM:
            first_inside.set()
            time.sleep(1.0)
        return update(s, realm_id)

    monkeypatch.setattr(read_model, "_update_records", slow)
    done: dict[str, bool] = {}
    other_store = Store(store.url)  # another process's connection

    finished: list[str] = []

    def refresh(s: Store, realm_id: str) -> None:
        done[realm_id] = read_model.refresh_read_model(s, realm_id)
        finished.append(realm_id)

    first = threading.Thread(target=refresh, args=(store, REALM))
    second = threading.Thread(target=refresh, args=(other_store, OTHER))
    try:
        first.start()
        assert first_inside.wait(30)
        second.start()
        first.join(60)
        second.join(60)
    finally:
        other_store.close()
    assert done == {REALM: True, OTHER: True}
    assert finished == [REALM, OTHER], "the second refresh waited for the first to commit"
    assert store.scalar("SELECT count(*) FROM record_changes") == 0
    for realm in (REALM, OTHER):
        assert read_model.is_current(store, realm)
        assert _label(store, realm)[1] > 0, "each updated in place"
        _assert_rows_as_built(store, realm)


def _queue(store: Store, realm_id: str, now) -> pl.DataFrame:
    return queue.action_queue(store, realm_id, now=now)


def test_the_stored_action_queue_holds_each_company_and_a_write_to_one_leaves_the_others(world: World) -> None:
    """The Health page's Top ten and the Action queue read the stored queue: two companies shown in turn keep their
    own rows (no rebuild each time one is shown), each the same queue as computed live."""
    store, now = world.store, world.now
    live = {realm: _queue(store, realm, now) for realm in (REALM, OTHER)}
    assert all(frame.height for frame in live.values())
    for realm in (REALM, OTHER):
        assert queue.refresh_queue_model(store, realm)
    assert queue.queue_model_current(store, REALM) and queue.queue_model_current(store, OTHER)
    for realm in (REALM, OTHER):
        # PostgreSQL's stored counts come back as 64-bit, the live ones as 32-bit: the values are what a person sees
        assert_frame_equal(_queue(store, realm, now), live[realm], check_exact=True, check_dtypes=False)
    other_rows = _rows(store, queue.QUEUE_MODEL, OTHER)

    world.advance(minutes=1)
    _exclude(world, REALM, "bill:BILL-2")
    assert not queue.queue_model_current(store, REALM)
    assert queue.queue_model_current(store, OTHER), "a write to one company leaves the other's stored queue current"
    assert queue.refresh_queue_model(store, REALM)
    assert_frame_equal(_rows(store, queue.QUEUE_MODEL, OTHER), other_rows, check_exact=True)
    assert "BILL-2" not in _queue(store, REALM, world.now)["record_id"].to_list()
    assert "BILL-2" in _queue(store, OTHER, world.now)["record_id"].to_list()


def test_a_stored_queue_of_an_older_release_is_dropped_once_and_built_per_company(world: World) -> None:
    store = world.store
    store.execute("CREATE TABLE rm_queue AS SELECT 1 AS old_column, ? AS realm_id", [REALM])
    store.execute("CREATE TABLE rm_queue_state AS SELECT ? AS realm_id, '[\"0ld\"]' AS version", [REALM])
    live = _queue(store, REALM, world.now)
    assert queue.refresh_queue_model(store, REALM) and queue.refresh_queue_model(store, OTHER)
    assert "old_column" not in store.frame("SELECT * FROM rm_queue LIMIT 0").columns
    assert_frame_equal(_queue(store, REALM, world.now), live, check_exact=True, check_dtypes=False)
    assert sorted(r for (r,) in store.rows("SELECT realm_id FROM rm_queue_state")) == sorted([REALM, OTHER])
