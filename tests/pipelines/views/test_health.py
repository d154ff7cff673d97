"""Health and Trends read models on a real store (the engine against the sandbox), each number checked another way."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from statistics import median

import polars as pl
import pytest
from fixtures import PERIOD, REALM, iso, month, tiny_snapshot
from world import World

from pipelines.catalogue import title_of
from pipelines.cycle import run_cycle
from pipelines.views import health, read_model, trends
from pipelines.views.period import ALL
from pipelines.views.queue import action_queue

_TABLES = {  # table -> (entity, id column, money column; a journal entry's money is its debits)
    "purchase_orders": ("purchase_order", "po_id", "total"),
    "bills": ("bill", "bill_id", "total"),
    "invoices": ("invoice", "invoice_id", "total"),
    "payments": ("payment", "payment_id", "amount"),
    "bill_payments": ("bill_payment", "bill_payment_id", "amount"),
    "journal_entries": ("journal_entry", "je_id", None),
}


def _snapshot() -> dict:
    """The tiny company with one bill waiting on an item QuickBooks does not have."""
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = "WID-220"
    return snap


def _amounts(snap: dict) -> dict[tuple[str, str], Decimal]:
    """Each transaction's money straight from the snapshot rows."""
    out = {}
    for table, (entity, id_col, money) in _TABLES.items():
        for row in snap[table]:
            if money:
                out[(entity, row[id_col])] = Decimal(row[money])
            else:
                lines = [x for x in snap["journal_lines"] if x["je_id"] == row[id_col] and x["posting_type"] == "debit"]
                out[(entity, row[id_col])] = sum((Decimal(x["amount"]) for x in lines), Decimal("0.00"))
    return out


def _dates(snap: dict) -> dict[tuple[str, str], str]:
    return {(e, row[i]): row["txn_date"] for t, (e, i, _) in _TABLES.items() for row in snap[t]}


@pytest.fixture
def world(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[World]:
    """The same company on either store: the pages read fleet companies from PostgreSQL through the same models."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    w = World(tmp_path, _snapshot(), database_url=url)
    w.cycle()
    yield w
    w.store.close()


def _queue(world: World, period: str = ALL, now: datetime | None = None) -> pl.DataFrame:
    with health.prepared(world.store, REALM):
        return action_queue(world.store, REALM, now=now or world.now, period=period)


def _open_exceptions(world: World) -> list[tuple]:
    return world.store.rows(
        "SELECT dimension, entity, record_id FROM exceptions WHERE realm_id = ? AND status <> 'resolved'", [REALM]
    )


def test_blocked_counts_each_record_once_and_money_once_per_document_chain(world: World) -> None:
    amounts = _amounts(_snapshot())
    queue = _queue(world)
    blocked = health.blocked(queue)
    open_records = {(e, r) for _, e, r in _open_exceptions(world)}
    assert blocked["records"] == len(open_records) == 3  # BILL-1 (item), BP-1 (waits on it), BILL-2 (not posted)
    # BP-1 pays BILL-1 and is blocked by it: its money is the bill's, counted once, under the bill
    assert blocked["dollars"] == amounts[("bill", "BILL-1")] + amounts[("bill", "BILL-2")] == Decimal("35.50")
    dims = blocked["dimensions"]
    assert dims["dimension"].to_list() == list(health.DIMENSIONS)
    assert int(dims["records"].sum()) == blocked["records"] and dims["dollars"].sum() == blocked["dollars"]
    assert dims.filter(pl.col("dimension") == "mapping")["records"].item() == 2  # BP-1 under its cause, the item
    causes = health.causes(queue)
    assert int(causes["records"].sum()) == blocked["records"] and causes["dollars"].sum() == blocked["dollars"]
    assert causes["dollars"].to_list() == sorted(causes["dollars"].to_list(), reverse=True)
    assert not any("_" in c for c in causes["cause"].to_list())  # titles, never reason codes
    assert causes["decides"].null_count() == 0 and causes["owner"].null_count() == 0


def test_week_flow_counts_new_and_freed_and_adds_up(world: World) -> None:
    world.now += timedelta(days=8)  # a week later, the admin maps the item; BILL-1 and then BP-1 sync
    assert world.map("item", "WID-220", "1", reason="same widget").ok
    world.now += timedelta(hours=1)
    world.cycle()
    world.now += timedelta(hours=1)
    world.cycle()
    queue = _queue(world)
    intervals = health.blocked_intervals(world.store, REALM, ALL)
    flow = health.week_flow(intervals, queue, world.now)
    blocked = health.blocked(queue)
    assert blocked["records"] == 1  # only BILL-2 is left
    assert flow["week_ago_records"] == 3 and flow["freed_records"] == 2 and flow["new_records"] == 0
    assert flow["week_ago_records"] + flow["new_records"] - flow["freed_records"] == blocked["records"]
    series = health.blocked_series(intervals, queue, world.now)
    assert series.height == 43 and series["records"][-1] == 1 and series["dollars"][-1] == blocked["dollars"]
    week_ago = series.filter(pl.col("at") <= flow["since"]).tail(1)
    assert week_ago["records"].item() == 3


def test_states_and_funnel_agree_with_the_records_table(world: World) -> None:
    states = dict(
        Counter(
            s
            for s, e in world.store.rows("SELECT state, entity FROM records WHERE removed_at IS NULL")
            if e not in ("item", "account")
        )
    )
    frame = health.records_by_state(world.store, REALM)
    assert frame["state"].to_list() == list(health.STATES)
    assert {r["state"]: r["records"] for r in frame.iter_rows(named=True) if r["records"]} == states
    funnel = health.funnel(world.store, REALM)
    counts = funnel["records"].to_list()
    assert funnel["stage"].to_list() == list(health.FUNNEL)
    assert counts == sorted(counts, reverse=True)
    assert counts[0] == sum(states.values()) and counts[-1] == states["synced"]
    assert counts[3] - counts[4] == 1  # posted -> eligible: BP-1 waits on BILL-1
    assert funnel["dollars"][-1] == sum(
        a for k, a in _amounts(_snapshot()).items() if world.state(f"{k[0]}:{k[1]}") == "synced"
    )


def test_period_close_accounts_for_every_record_dated_in_the_month(world: World) -> None:
    dates = _dates(_snapshot())
    in_month = {k for k, d in dates.items() if d.startswith(PERIOD)}
    view = health.period_close(world.store, REALM, PERIOD)
    summary = view["summary"]
    synced = {k for k in in_month if world.state(f"{k[0]}:{k[1]}") == "synced"}
    assert summary["records"] == len(in_month) == 7
    assert summary["synced"] == len(synced) and summary["open"] == len(in_month) - len(synced)
    assert summary["percent_complete"] == round(100 * len(synced) / len(in_month), 1)
    queue = _queue(world, PERIOD)
    assert set(queue["key"]) == {f"{e}:{r}" for e, r in in_month - synced}  # what holds the open ones: the queue's
    owners = dict(zip(queue["key"], queue["owner"], strict=True))
    assert all(owner and "@" in owner for owner in owners.values())  # one owner each, a person
    assert owners["bill:BILL-2"] == "ap@acme.example"  # finance owns source data: the record's own AWRA owner
    empty = health.period_close(world.store, REALM, f"{month(-10):%Y-%m}")["summary"]
    assert empty["records"] == 0 and empty["percent_complete"] is None


def test_exclusion_counts_as_settled_with_its_reason(world: World) -> None:
    world.store.execute(
        "INSERT INTO exclusions VALUES (?, 'bill', 'BILL-2', 'finance@demo.local', 'duplicate of BILL-1', ?)",
        [REALM, world.now],
    )
    world.now += timedelta(minutes=5)
    world.cycle()
    view = health.period_close(world.store, REALM, PERIOD)
    assert view["by_entity"].filter(pl.col("entity") == "bill")["excluded"].item() == 1
    totals = health.control_totals(world.store, REALM, PERIOD)
    assert "excluded by a person" in totals["reasons"]["explanation"].to_list()


def _qbo_side(world: World, entity: str) -> tuple[int, Decimal]:
    """Count and sum of one QuickBooks entity in the month, read from the sandbox's control API."""
    objs = [
        o
        for o in world.sandbox.entities(REALM, entity)
        if o.get("status") != "Deleted" and str(o.get("TxnDate", "")).startswith(PERIOD)
    ]
    return len(objs), sum((Decimal(str(o.get("TotalAmt", 0))) for o in objs), Decimal("0.00"))


def test_control_totals_find_drift_and_the_records_that_explain_it(world: World) -> None:
    # QuickBooks users act after the sync: a bill typed in by hand, a synced invoice deleted, a payment edited.
    world.sandbox.clock.advance(max(0.0, (world.now - world.sandbox.clock.now()).total_seconds()) + 60)
    ref = dict(world.store.rows("SELECT entity, qbo_id FROM external_refs WHERE entity IN ('invoice', 'payment')"))
    world.sandbox.user_create(REALM, "Bill", {
        "VendorRef": {"value": world.store.scalar("SELECT qbo_id FROM external_refs WHERE record_id = 'VEN-1'")},
        "TxnDate": iso(20), "Line": [{"Amount": 99.5, "DetailType": "AccountBasedExpenseLineDetail",
                                           "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "3"}}}],
    })  # fmt: skip
    world.sandbox.user_delete(REALM, "Invoice", ref["invoice"])
    world.sandbox.user_patch(REALM, "Payment", ref["payment"], {"TotalAmt": 140.0})
    world.now += timedelta(hours=1)
    world.cycle()  # the pull brings QuickBooks' changes into the mirror

    view = health.control_totals(world.store, REALM, PERIOD)
    totals = {r["entity"]: r for r in view["totals"].iter_rows(named=True)}
    amounts, dates = _amounts(_snapshot()), _dates(_snapshot())
    for entity, qbo_entity in (("bill", "Bill"), ("invoice", "Invoice"), ("payment", "Payment")):
        mine = [k for k in dates if k[0] == entity and dates[k].startswith(PERIOD)]
        assert totals[entity]["awra_count"] == len(mine)
        assert totals[entity]["awra_sum"] == sum(amounts[k] for k in mine)
        assert (totals[entity]["qbo_count"], totals[entity]["qbo_sum"]) == _qbo_side(world, qbo_entity)
    # the explanations add up to the drift exactly, entity by entity
    effects = view["reasons"].group_by("entity").agg(pl.col("count_effect").sum(), pl.col("amount_effect").sum())
    for row in effects.iter_rows(named=True):
        assert row["count_effect"] == totals[row["entity"]]["count_drift"]
        assert row["amount_effect"] == totals[row["entity"]]["sum_drift"]
    assert totals["purchase_order"]["count_drift"] == 0 and totals["purchase_order"]["sum_drift"] == 0
    explain = {(r["entity"], r["explanation"]): r for r in view["explain"].iter_rows(named=True)}
    assert explain[("bill", "only in QuickBooks (no AWRA record)")]["amount_effect"] == Decimal("-99.50")
    # a synced record whose QuickBooks object was deleted or changed there has an owned exception: in the queue
    deleted = explain[("invoice", "deleted in QuickBooks, in the queue")]
    assert deleted["key"] == "invoice:INV-1"
    assert deleted["detail"].startswith("Deleted in QuickBooks after the sync (owner finance")  # words, not codes
    changed = explain[("payment", "changed in QuickBooks, in the queue")]
    assert changed["amount_effect"] == Decimal("10.00") and "now totals 140.00" in changed["detail"]
    assert explain[("bill", "not in QuickBooks yet: blocked")]["key"] == "bill:BILL-1"
    investigate = set(view["reasons"].filter("investigate")["explanation"])
    assert investigate == {"only in QuickBooks (no AWRA record)"}
    assert totals["bill"]["to_investigate"] == 1 and totals["bill_payment"]["to_investigate"] == 0


def test_top_fixes_are_the_head_of_the_queue_and_say_what_to_do(world: World) -> None:
    queue = _queue(world)
    top = health.top_fixes(queue)
    open_keys = {f"{e}:{r}" for _, e, r in _open_exceptions(world)}
    assert set(top["key"]) == open_keys and top["key"].to_list() == queue["key"].head(10).to_list()
    assert top["priority"].to_list() == list(range(1, top.height + 1))
    assert top["fix"].str.len_chars().min() > 10 and top["owner"].null_count() == 0
    assert not any("_" in t for t in top["title"].to_list())  # titles, not reason codes
    # a lost connection holds everything, so it comes first (found when the next record is due to go)
    assert world.map("item", "WID-220", "1", reason="same widget").ok
    world.sandbox.expire_tokens(REALM, refresh=True)
    world.now += timedelta(minutes=10)
    with world.client() as client:  # no pull: it would stop at the refused sign-in; the cycle pauses the sync
        run_cycle(world.store, client, world.settings, now=world.now, trigger="schedule", actor=None)
    queue = _queue(world)
    assert health.top_fixes(queue)["entity"][0] == "connection"
    assert health.connection_badge(world.store, REALM, world.now)["tone"] == "bad"
    assert health.blocked(queue)["connection_problem"]


def test_trends_count_first_time_right_retries_and_codes_from_the_attempts(world: World) -> None:
    # the next records go out while QuickBooks drops every connection, then again once it is back
    assert world.map("item", "WID-220", "1", reason="same widget").ok
    world.sandbox.set_faults("connection_reset@write=1", seed=3)
    world.now += timedelta(hours=1)
    world.cycle()
    world.sandbox.set_faults(None)
    world.drain()

    attempts = world.store.rows(
        "SELECT entity, record_id, version, attempt_id, outcome, qbo_code, http_status, reason, dimension, "
        "operation FROM sync_attempts"
    )
    firsts: dict[tuple, tuple] = {}
    for e, r, v, _i, outcome, *_ in sorted(attempts, key=lambda a: a[3]):
        firsts.setdefault((e, r, v), (outcome,))
    ftr = trends.first_time_right(world.store, REALM)
    assert ftr["first_attempts"].sum() == len(firsts)
    assert ftr["right_first_time"].sum() == sum(1 for o in firsts.values() if o[0] == "accepted")
    assert ftr["right_first_time"].sum() < ftr["first_attempts"].sum()  # BILL-1 went out into the reset

    retries = trends.retry_success(world.store, REALM)
    failed = Counter((e, r, v) for e, r, v, _, outcome, *_ in attempts if outcome != "accepted")
    assert retries["retries"].sum() == sum(failed.values())  # each failure was followed by one more attempt
    assert retries["succeeded"].sum() == len(failed)  # and every record got through in the end
    assert set(retries["dimension"]) == {a[8] for a in attempts if a[4] != "accepted"}

    codes = trends.top_error_codes(world.store, REALM)
    labels = Counter(
        f"QuickBooks code {a[5]}" if a[5] else f"HTTP {a[6]}" if a[6] else title_of(a[7])
        for a in attempts
        if a[4] != "accepted"
    )
    assert dict(zip(codes["code"], codes["attempts"], strict=True)) == dict(labels)
    assert codes["attempts"].to_list() == sorted(codes["attempts"].to_list(), reverse=True)

    runs = trends.throughput(world.store, REALM)  # a look-up that finds an unknown outcome in QBO links it
    operations = Counter(a[9] for a in attempts)
    assert runs["sent"].sum() == operations["create"] + operations["update"]  # a replay is not counted as sent
    assert runs["linked"].sum() == operations["lookup"]
    resolve = trends.time_to_resolve(world.store, REALM)["dimension"]
    hours = defaultdict(list)
    for dimension, opened, resolved in world.store.rows(
        "SELECT dimension, opened_at, resolved_at FROM exceptions WHERE status = 'resolved'"
    ):
        hours[dimension].append((resolved - opened).total_seconds() / 3600)
    assert {a[8] for a in attempts if a[4] != "accepted"} <= set(hours)  # the send failures were resolved
    for row in resolve.filter(pl.col("resolved") > 0).iter_rows(named=True):
        assert row["resolved"] == len(hours[row["dimension"]])
        assert row["median_days"] == pytest.approx(median(hours[row["dimension"]]) / 24, abs=0.05)


def test_flow_ends_on_the_queues_numbers_and_new_minus_freed_adds_up(world: World) -> None:
    world.now += timedelta(days=2)
    assert world.map("item", "WID-220", "1", reason="same widget").ok
    world.now += timedelta(hours=1)
    world.cycle()
    queue = _queue(world)
    intervals = health.blocked_intervals(world.store, REALM, ALL)
    blocked = health.blocked(queue)
    for bucket in ("day", "week"):
        frame = trends.flow(intervals, queue, world.now, bucket)
        assert frame.height == (42 if bucket == "day" else 6)
        last = frame.row(-1, named=True)
        assert last["open_records"] == blocked["records"] and last["open_dollars"] == blocked["dollars"]
        assert int(frame["new_records"].sum()) - int(frame["freed_records"].sum()) == blocked["records"]
    window = trends.within(frame, "period", (frame["period"][-1], frame["period"][-1]))
    assert window.height == 1


def test_recurring_offenders_name_the_item_behind_repeated_blocks(world: World) -> None:
    world.now += timedelta(hours=1)
    world.cycle()
    frame = trends.recurring_offenders(world.store, REALM, min_failures=1)
    item = frame.filter((pl.col("kind") == "item") & (pl.col("value") == "WID-220")).row(0, named=True)
    runs_with_it = world.store.scalar(
        "SELECT count(DISTINCT run_id) FROM findings WHERE mapping_kind = 'item' AND mapping_value = 'WID-220'"
    )
    assert item["runs"] == runs_with_it >= 2 and item["records"] == 1 and item["open_now"]
    assert item["reason"] == "mapping.item_missing" and item["dollars"] == Decimal("30.50")
    vendor = frame.filter((pl.col("kind") == "vendor") & (pl.col("value") == "VEN-1")).row(0, named=True)
    assert vendor["records"] == 2 and vendor["dollars"] == Decimal("61.00")  # BILL-1 and BP-1 name VEN-1
    assert vendor["name"] == "Acme Supplies"


def test_buckets_and_periods_refuse_what_they_do_not_know(world: World) -> None:
    with pytest.raises(ValueError, match="bucket"):
        trends.first_time_right(world.store, REALM, "hour")
    with pytest.raises(ValueError, match="YYYY-MM"):
        health.period_bounds("November")
    assert health.period_bounds("2026-12") == (date(2026, 12, 1), date(2027, 1, 1))


def test_prepared_working_tables_give_the_same_numbers(world: World) -> None:
    """The pages compute the facts once per view (temporary tables); every read model must agree with its own SQL."""
    now = world.now

    def models() -> dict:
        return {
            "blocked": health.blocked(_queue(world, PERIOD, now))["dimensions"],
            "states": health.records_by_state(world.store, REALM),
            "funnel": health.funnel(world.store, REALM),
            "close": health.period_close(world.store, REALM, PERIOD),
            "controls": health.control_totals(world.store, REALM, PERIOD),
            # one row per record, in no order of its own (the read model's rows are not in the live query's order)
            "intervals": health.blocked_intervals(world.store, REALM, PERIOD).sort("entity", "record_id"),
            "offenders": trends.recurring_offenders(world.store, REALM, min_failures=1),
        }

    def agree(plain: dict, shared: dict) -> None:
        for name, value in plain.items():
            parts = value.items() if isinstance(value, dict) else [(name, value)]
            for part, frame in parts:
                other = shared[name][part] if isinstance(value, dict) else shared[name]
                assert (frame == other) if not isinstance(frame, pl.DataFrame) else frame.equals(other), (name, part)

    plain = models()
    with health.prepared(world.store, REALM):
        assert health.facts() == read_model._OWN_RECORDS  # the persisted read model, current for this version
        with health.prepared(world.store, REALM):  # nested: the same tables
            shared = models()
        with pytest.raises(RuntimeError, match="another company"):
            with health.prepared(world.store, "another-realm"):
                pass
    assert "rm_records" not in health.facts()  # outside the block: the live queries
    agree(plain, shared)

    # A change to the store makes the read model stale; the next view rebuilds it and still agrees with live SQL.
    built = world.store.scalar("SELECT version FROM rm_state")
    assert world.map("item", "WID-220", "1", reason="the widget we sell").ok
    world.cycle()
    assert not read_model.is_current(world.store, REALM)
    plain = models()
    with health.prepared(world.store, REALM):
        assert health.facts() == read_model._OWN_RECORDS
        shared = models()
    assert world.store.scalar("SELECT version FROM rm_state") != built  # rebuilt for the new content
    agree(plain, shared)
