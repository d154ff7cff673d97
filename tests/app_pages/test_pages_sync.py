"""Sync runs and Record pages through AppTest, against a sandbox on loopback: roles decide the buttons."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from fixtures import tiny_snapshot
from served import open_page, serve
from world import World

from pipelines.store import Store


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
    assert int(runs["Accepted"].iloc[0]) == 7  # all but BILL-1 (no item) and BP-1 (waits on it)
    attempts = at.dataframe[1].value
    assert set(attempts["Outcome"]) == {"accepted"} and (attempts["QuickBooks request id"] != "").all()
    assert len(at.button) == 0  # a viewer cannot start a sync


@pytest.fixture
def quiet_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The same company after two more scheduled cycles that found nothing new to send."""
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"

    def two_quiet_cycles(world: World) -> None:
        for _ in range(2):
            world.advance(minutes=5)
            world.cycle()

    yield from serve(tmp_path, monkeypatch, snap, after=two_quiet_cycles)


def test_runs_that_sent_nothing_are_left_out_until_asked_for(quiet_later: World) -> None:
    at = _page("sync_runs.py")
    assert not at.exception
    runs = at.dataframe[0].value
    assert list(runs["Planned"]) == [7] and int(runs["Accepted"].iloc[0]) == 7  # the run that sent, alone
    assert "2 runs found nothing to send" in _captions(at)
    assert at.selectbox(key="sync_run_pick").value == int(runs["Run"].iloc[0])  # its attempts open first
    at.toggle(key="sync_quiet").set_value(True).run()
    runs = at.dataframe[0].value
    assert list(runs["Planned"]) == [0, 0, 7]  # newest first, the quiet ones back in
    assert "found nothing to send" not in _captions(at)


def _captions(at) -> str:
    return " | ".join(c.value for c in at.caption)


def test_record_page_shows_the_chain_and_a_viewer_sees_every_action_disabled_with_the_reason(served: World) -> None:
    at = _page("record.py", key="bill:BILL-1")
    assert not at.exception
    assert at.metric[0].value == "blocked"
    assert "Item SKU not mapped to QuickBooks" in at.error[0].value  # the catalogue's title, not the code
    assert "mapping.item_missing" not in at.error[0].value
    assert {b.key: b.disabled for b in at.button} == {
        "rec_assign": True, "rec_resolve": True, "rec_exclude": True, "retry_go": True,
    }  # fmt: skip
    captions = _captions(at)
    assert "Assign needs the finance or admin role; you are signed in as a viewer" in captions
    assert "Retry is off: “Item SKU not mapped to QuickBooks” holds it" in captions
    assert "Only admin (mappings) can fix that" in captions


def test_retry_is_disabled_where_the_engine_would_refuse_it_and_says_who_must_fix_it(served: World) -> None:
    at = _page("record.py", actor="admin@demo.local", key="bill:BILL-1")
    assert at.button(key="retry_go").disabled
    assert at.button(key="rec_recheck")  # fixable in QuickBooks or on Mappings: read QuickBooks again, re-check
    assert not at.button(key="rec_assign").disabled

    awra = _page("record.py", actor="admin@demo.local", key="bill:BILL-2")
    assert awra.metric[0].value == "not ready"
    assert awra.button(key="retry_go").disabled
    assert "Only approver in AWRA (ap@acme.example) can fix that, in AWRA" in _captions(awra)
    assert not [b for b in awra.button if b.key == "rec_recheck"]  # nothing to read again in QuickBooks

    synced = _page("record.py", actor="admin@demo.local", key="vendor:VEN-1")
    assert synced.metric[0].value == "synced"
    assert synced.button(key="retry_go").disabled and synced.button(key="rec_exclude").disabled
    assert "It is already in QuickBooks: nothing to retry." in _captions(synced)


def test_finance_assigns_resolves_and_excludes_from_the_record_page(served: World) -> None:
    at = _page("record.py", actor="finance@demo.local", key="bill:BILL-2")
    at.selectbox(key="rec_assign_to").select("finance@demo.local").run()
    at.button(key="rec_assign").click().run()
    assert not at.exception
    assert "assigned to finance@demo.local" in at.success[0].value
    owner = at.metric[2].value.replace("\u200b", "").replace("\\", "")
    assert owner == "finance@demo.local"  # the owner shown is the person it was given to

    assert at.button(key="rec_resolve").disabled  # no reason yet
    at.text_input(key="rec_reason").input("approved by AP on the phone").run()
    at.button(key="rec_resolve").click().run()
    assert "resolved" in at.success[0].value

    at.text_input(key="rec_exclude_reason").input("a test bill, never to be sent").run()
    at.button(key="rec_exclude").click().run()
    assert "excluded from sync" in at.success[0].value
    assert at.metric[0].value == "excluded"
    with Store(served.settings.db_path) as store:
        actions = store.rows("SELECT actor, action, target FROM audit_log WHERE actor <> 'system' ORDER BY audit_id")
    assert [a[1] for a in actions][:1] == ["assign"] and all(a[0] == "finance@demo.local" for a in actions)
    assert ("finance@demo.local", "exclude", "bill:BILL-2") in actions


def test_the_search_finds_a_record_by_document_number_or_lists_the_matches(served: World) -> None:
    at = _page("record.py", actor="admin@demo.local")
    at.text_input(key="record_find").input("INV-9").run()  # BILL-1's document number
    assert not at.exception
    assert at.query_params["key"] == ["bill:BILL-1"] or at.query_params["key"] == "bill:BILL-1"
    assert at.metric[0].value == "blocked"

    at.text_input(key="record_find").input("acme").run()  # the vendor: its bill, PO, payment and itself
    links = [p.proto for p in at.get("page_link")]
    assert {parse_qs(p.query_string)["key"][0] for p in links} >= {"bill:BILL-1", "vendor:VEN-1"}
    assert not at.metric  # a list to pick from, not a record


def test_an_unknown_key_says_what_a_key_looks_like(served: World) -> None:
    at = _page("record.py", key="bill:NOPE")
    assert "No record with this key" in at.warning[0].value and "bill:BILL-000123" in at.warning[0].value
