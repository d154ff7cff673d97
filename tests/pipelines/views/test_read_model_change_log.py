"""Each writer notes the records it changes in the change log, and the read model sees the change through it alone.

Every case starts from read-model tables just rebuilt whole (which consumes the log), makes one writer's change, and
refreshes: the refresh reads only the records the log names, so a writer that changed a row without noting its
record leaves the table unlike a full rebuild, and the case fails.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from fixtures import REALM, tiny_snapshot
from polars.testing import assert_frame_equal
from world import FINANCE, World

from pipelines import changes
from pipelines.duplicates import adopt_marked
from pipelines.exceptions import escalate
from pipelines.keys import RecordKey
from pipelines.readiness import run_check
from pipelines.sync import requeue
from pipelines.views import read_model

_IN_PLACE = read_model._IN_PLACE  # the tables a refresh from the log updates row by row


def _table(world: World, name: str, live: bool = False) -> pl.DataFrame:
    sql = f"SELECT * FROM ({read_model._TABLES[name](read_model.facts())}) q" if live else f"SELECT * FROM {name}"
    frame = world.store.frame(sql, {"realm": REALM} if live else None)
    return frame.sort(frame.columns, nulls_last=True)


def _keys(frame: pl.DataFrame) -> set[str]:
    return {f"{e}:{r}" for e, r in frame.select("entity", "record_id").iter_rows()}


def _rebuilt_whole(world: World) -> None:
    """The tables rebuilt whole (every record read), which consumes the log: what follows is one change alone."""
    world.store.execute("DROP TABLE IF EXISTS rm_state")
    assert read_model.refresh_read_model(world.store, REALM)
    assert world.store.scalar("SELECT count(*) FROM record_changes") == 0
    assert world.store.scalar("SELECT change_mark FROM rm_state") is not None  # the next refresh reads the log


def _check(world: World) -> None:
    run_check(world.store, REALM, now=world.now)


def _snapshot() -> dict:
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"  # BILL-1 waits on an item QuickBooks lacks
    return snap


def _exception(world: World, record_id: str) -> int:
    return int(
        world.store.scalar(
            "SELECT min(exception_id) FROM exceptions WHERE record_id = ? AND status <> 'resolved'", [record_id]
        )
    )


# -- each case: (what is set up before the tables are rebuilt, the one writer's change) --------------------------------
def _new_version(world: World) -> None:
    snap = _snapshot()
    snap["invoices"][0]["total"] = "1234.56"
    world.ingest(snap)


def _bill_to_another_vendor(world: World) -> None:
    snap = _snapshot()
    assert snap["bills"][0]["vendor_id"] == "VEN-1"
    snap["bills"][0]["vendor_id"] = "VEN-2"  # BILL-1 and its open exception move: both vendors' counts change
    world.ingest(snap)


def _check_moves_a_state(world: World) -> None:
    _check(world)  # INV-1, synced, is excluded (set below): the check moves its state alone


def _exclusion_behind_the_check(world: World) -> None:
    world.store.execute(
        "INSERT INTO exclusions VALUES (?, 'invoice', 'INV-1', 'someone@demo.local', 'handled by hand', ?)",
        [REALM, world.now],
    )


def _findings_rewritten(world: World) -> None:
    world.store.execute(
        """UPDATE findings SET check_name = 'complete'
           WHERE run_id = (SELECT max(run_id) FROM check_runs) AND record_id = 'BILL-1'"""
    )


def _pending_again(world: World) -> None:
    snap = _snapshot()
    snap["bills"][0]["approval_status"] = "pending"
    world.ingest(snap)
    _check(world)


def _state_excluded(world: World) -> None:
    world.store.execute("UPDATE records SET state = 'excluded' WHERE record_id = 'BILL-2'")


def _detail_changed(world: World) -> None:
    world.store.execute("UPDATE exceptions SET detail = 'older words' WHERE record_id = 'BILL-1'")


def _owner_gone(world: World) -> None:
    world.store.execute("UPDATE exceptions SET owner = NULL WHERE record_id = 'BILL-1'")


def _exceptions_closed(world: World) -> None:
    world.store.execute("UPDATE exceptions SET status = 'resolved' WHERE record_id = 'BILL-2'")


def _new_invoice(world: World) -> None:
    snap = _snapshot()
    invoice = copy.deepcopy(snap["invoices"][0])
    lines = [copy.deepcopy(x) for x in snap["invoice_lines"] if x["invoice_id"] == invoice["invoice_id"]]
    invoice.update(invoice_id="INV-2", invoice_number="2002")
    for line in lines:
        line["invoice_id"] = "INV-2"
    snap["invoices"].append(invoice)
    snap["invoice_lines"].extend(lines)
    world.ingest(snap)
    _check(world)
    assert world.state("invoice:INV-2") == "ready"


def _nothing(world: World) -> None:
    pass


def _requeued(world: World) -> None:
    """What a retry does before it sends (the send, a writer of its own, is left out)."""
    with world.store.transaction() as tx:
        requeue(tx, REALM, [RecordKey("bill", "BILL-1")])


_DROPPED: dict[str, str] = {}


def _link_dropped(record_id: str) -> Callable[[World], None]:
    def drop(world: World) -> None:
        _DROPPED[record_id] = world.store.scalar("SELECT qbo_id FROM external_refs WHERE record_id = ?", [record_id])
        world.store.execute("DELETE FROM external_refs WHERE record_id = ?", [record_id])

    return drop


_CASES: dict[str, tuple[Callable[[World], None], Callable[[World], object]]] = {
    "ingest: a new version": (_nothing, _new_version),
    "ingest: a bill moves to another vendor": (_nothing, _bill_to_another_vendor),
    "check: a state": (_exclusion_behind_the_check, _check_moves_a_state),
    "check: the first failed check": (_findings_rewritten, _check),
    "exceptions: opened": (_pending_again, lambda w: w.refresh()),
    "exceptions: resolved on their own": (_state_excluded, lambda w: w.refresh()),
    "exceptions: seen again with new words": (_detail_changed, lambda w: w.refresh()),
    "exceptions: staffed": (_owner_gone, lambda w: w.refresh()),
    "escalate": (lambda w: w.advance(days=5), lambda w: escalate(w.store, REALM, now=w.now)),
    "assign": (
        _nothing,
        lambda w: w.commands.assign(w.caller(), [_exception(w, "BILL-2")], to=FINANCE.email),
    ),
    "resolve": (
        _nothing,
        lambda w: w.commands.resolve(w.caller(), [_exception(w, "BILL-1")], code="fixed_in_qbo", reason="done"),
    ),
    "exclude": (
        _exceptions_closed,
        lambda w: w.commands.exclude(w.caller(), ["bill:BILL-2"], reason="handled outside QuickBooks"),
    ),
    "sync": (_new_invoice, lambda w: w.commands.sync(w.caller(), only=["invoice:INV-2"])),
    "link by a person": (
        _link_dropped("VEN-2"),
        lambda w: w.commands.link(w.caller(), "vendor:VEN-2", _DROPPED["VEN-2"], reason="the same vendor"),
    ),
    "retry: requeued": (_nothing, _requeued),
    "link by the marker": (_link_dropped("INV-1"), lambda w: adopt_marked(w.store, REALM, now=w.now)),
}


@pytest.mark.parametrize("case", list(_CASES))
def test_each_writers_change_is_seen_through_the_log(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    world = World(tmp_path, database_url=url)
    try:
        world.ingest(_snapshot())
        world.cycle()
        before_rebuild, change = _CASES[case]
        before_rebuild(world)
        _rebuilt_whole(world)
        before = {name: _table(world, name) for name in _IN_PLACE}
        world.advance(minutes=1)  # a later ingest run: records the first one stamped are not its own
        result = change(world)
        assert getattr(result, "ok", True), result
        noted = _keys(world.store.frame("SELECT entity, record_id FROM record_changes WHERE realm_id = ?", [REALM]))
        monkeypatch.setattr(read_model, "FULL_SHARE", 1.0)  # a tiny company: any share changed stays in place
        updates: list[int | None] = []
        update = read_model._update_records
        monkeypatch.setattr(read_model, "_update_records", lambda s, r: updates.append(update(s, r)) or updates[-1])
        # the change may leave the version key alone (a detail, an owner): say the tables are stale
        world.store.execute("UPDATE rm_state SET version = ?", [json.dumps([read_model.SHAPE, "stale"])])
        assert read_model.refresh_read_model(world.store, REALM)
        assert updates and updates[-1] is not None, "updated in place, from the log"
        changed: set[str] = set()
        for name in _IN_PLACE:
            after = _table(world, name)
            assert_frame_equal(after, _table(world, name, live=True), check_exact=True)
            changed |= _keys(pl.concat([before[name], after]).unique(keep="none"))
        assert changed, "the writer changed a row the read model holds"
        assert changed <= noted, f"changed but not noted: {changed - noted}"
        assert world.store.scalar("SELECT count(*) FROM record_changes") == 0, "the refresh consumed the log"
    finally:
        world.close()


def test_a_refresh_consumes_its_own_companys_log_and_leaves_anothers(tmp_path: Path) -> None:
    """Rows of another company stay for that company's refresh: its rows of the tables need them."""
    world = World(tmp_path)
    try:
        world.ingest(_snapshot())
        world.cycle()
        _rebuilt_whole(world)
        world.store.execute("INSERT INTO record_changes (realm_id, entity, record_id) VALUES ('other', 'bill', 'B')")
        world.store.execute("INSERT INTO record_changes (realm_id, entity, record_id) VALUES (?, 'bill', 'BILL-1')",
                            [REALM])  # fmt: skip
        mark = world.store.scalar("SELECT max(seq) FROM record_changes WHERE realm_id = ?", [REALM])
        world.store.execute("UPDATE rm_state SET version = ?", [json.dumps([read_model.SHAPE, "stale"])])
        assert read_model.refresh_read_model(world.store, REALM)
        assert world.store.rows("SELECT realm_id, entity, record_id FROM record_changes") == [("other", "bill", "B")]
        assert world.store.scalar("SELECT change_mark FROM rm_state") == mark
    finally:
        world.close()


def test_a_sync_answer_after_a_refresh_that_saw_the_record_queued_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page may refresh while a sync waits on QuickBooks: it consumes the note of the record queued, so the answer
    written after it needs its own note."""
    world = World(tmp_path)
    try:
        world.ingest(_snapshot())
        world.cycle()
        world.advance(minutes=1)
        _new_invoice(world)
        _rebuilt_whole(world)
        seen_queued: list[str] = []

        def refresh_meanwhile(name: str) -> None:
            if name == "sync.after_send":
                world.store.execute("UPDATE rm_state SET version = ?", [json.dumps([read_model.SHAPE, "stale"])])
                assert read_model.refresh_read_model(world.store, REALM)
                seen_queued.append(world.store.scalar("SELECT state FROM rm_records WHERE record_id = 'INV-2'"))

        monkeypatch.setattr("pipelines.sync.crash_point", refresh_meanwhile)
        monkeypatch.setattr(read_model, "FULL_SHARE", 1.0)
        assert world.commands.sync(world.caller(), only=["invoice:INV-2"]).ok
        assert seen_queued == ["queued"]
        world.store.execute("UPDATE rm_state SET version = ?", [json.dumps([read_model.SHAPE, "stale"])])
        assert read_model.refresh_read_model(world.store, REALM)
        for name in _IN_PLACE:
            assert_frame_equal(_table(world, name), _table(world, name, live=True), check_exact=True)
        assert world.store.scalar("SELECT state FROM rm_records WHERE record_id = 'INV-2'") == "synced"
    finally:
        world.close()


def test_a_log_no_refresh_reads_is_emptied_and_the_next_refresh_compares_every_input(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    world = World(tmp_path, database_url=request.getfixturevalue("pg_url") if backend == "postgresql" else None)
    try:
        world.ingest(_snapshot())
        world.cycle()
        _rebuilt_whole(world)
        world.advance(minutes=1)
        _new_version(world)  # noted: then the log is emptied, note and all
        assert not changes.trim_unread(world.store)  # far below the default limit
        assert changes.trim_unread(world.store, limit=0)
        assert world.store.scalar("SELECT count(*) FROM record_changes") == 0
        assert world.store.scalar("SELECT change_mark FROM rm_state") is None
        world.store.execute("UPDATE rm_state SET version = ?", [json.dumps([read_model.SHAPE, "stale"])])
        assert read_model.refresh_read_model(world.store, REALM)
        for name in read_model._TABLES:
            assert_frame_equal(_table(world, name), _table(world, name, live=True), check_exact=True)
        assert world.store.scalar("SELECT change_mark FROM rm_state") is not None  # the log is read again
    finally:
        world.close()
