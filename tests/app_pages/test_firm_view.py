"""The firm view on Health: a company table once the store holds more than one company, and its link's filter on the
action queue (`?company=REALM`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures import REALM, T0, tiny_snapshot, write_snapshot
from served import open_page, serve
from world import ADMIN, World, caller_at, commands_on

from pipelines.ingest import ingest_snapshot
from pipelines.store import Store

OTHER = "4620816365300011"  # a second company, nothing mapped: its records wait on mappings


@pytest.fixture
def one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield from serve(tmp_path, monkeypatch, tiny_snapshot())


@pytest.fixture
def two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    def second_company(world: World) -> None:
        ingest_snapshot(world.store, write_snapshot(tmp_path / "other", tiny_snapshot()), realm_id=OTHER, now=T0)
        assert commands_on(world.store).check(caller_at(ADMIN, T0, OTHER)).ok

    yield from serve(tmp_path, monkeypatch, tiny_snapshot(), after=second_company)


def _company_table(at):
    found = [d for d in at.dataframe if "Owner of the biggest item" in d.value.columns]
    return found[0].value if found else None


def test_one_company_shows_no_company_table(one: World) -> None:
    at = open_page("health.py")
    assert not at.exception
    assert _company_table(at) is None


def test_two_companies_get_a_row_each_with_what_blocks_the_close_and_a_link_to_their_queue(two: World) -> None:
    with Store(two.settings.db_path) as store:  # the month the tiny company's bills fall in
        period = store.scalar("SELECT max(txn_date) FROM cur_bills").strftime("%Y-%m")
    at = open_page("health.py", period=period)
    assert not at.exception
    table = _company_table(at)
    assert table is not None, [d.value.columns for d in at.dataframe]
    assert len(table) == 2
    assert list(table.columns) == [
        "Company", "Connection", "Records blocked", "Dollars blocked", "% complete", "Worst dimension",
        "Owner of the biggest item", "Queue",
    ]  # fmt: skip
    links = set(table["Queue"])
    assert {f"/action_queue?company={REALM}", f"/action_queue?company={OTHER}"} <= links
    other = table[table["Queue"].str.endswith(OTHER)].iloc[0]
    assert other["Records blocked"] > 0 and other["Dollars blocked"] != "$0" and other["% complete"] == 0
    assert other["Worst dimension"] != "—" and other["Owner of the biggest item"] != "—"
    assert other["Connection"] == "not connected"
    assert table.iloc[0]["Company"] == OTHER  # the most dollars blocked first


def _queue_records(at) -> set[str]:
    return {k for d in at.dataframe if "record_id" in d.value.columns for k in d.value["record_id"]}


def test_the_queue_filters_by_the_company_in_its_address(two: World) -> None:
    with Store(two.settings.db_path) as store:
        open_keys = {
            realm: {r for (r,) in store.rows(
                "SELECT record_id FROM exceptions WHERE realm_id = ? AND status <> 'resolved'", [realm]
            )}
            for realm in (REALM, OTHER)
        }  # fmt: skip
    # The sidebar would show the first company in the store's order (OTHER); the address picks each one instead.
    first = open_page("action_queue.py", actor="admin@demo.local", company=REALM, period="all")
    other = open_page("action_queue.py", actor="admin@demo.local", company=OTHER, period="all")
    assert not first.exception and not other.exception
    assert _queue_records(first) == open_keys[REALM]
    assert _queue_records(other) == open_keys[OTHER]
