"""Each reference value's failures over every check run are kept folded as the checks store them, and only the last
check runs keep their findings: a company checked every few minutes for years does not pile up every open finding
once per cycle, and the Trends page's recurring offenders still count every run."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from fixtures import REALM, tiny_snapshot
from polars.testing import assert_frame_equal
from world import World

import pipelines.readiness as readiness
from pipelines.readiness import run_check
from pipelines.views import trends

# What finding_history must hold: the fold of every run's findings, as the read model counted them before.
_EVERY_RUN = """
  SELECT f.mapping_kind AS kind, f.mapping_value AS value, f.entity, f.record_id, max(f.amount) AS amount,
         count(DISTINCT f.run_id) AS runs, max(c.started_at) AS last_seen, max(f.run_id) AS last_run,
         min(f.reason) AS reason
  FROM findings f JOIN check_runs c ON c.run_id = f.run_id
  WHERE f.realm_id = ? AND f.mapping_kind IS NOT NULL GROUP BY ALL"""
_HELD = """SELECT kind, value, entity, record_id, amount, runs, last_seen, last_run, reason
           FROM finding_history WHERE realm_id = ?"""


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(["kind", "value", "entity", "record_id"], nulls_last=True)


@pytest.fixture
def world(tmp_path: Path, backend: str, request: pytest.FixtureRequest):
    w = World(tmp_path, database_url=request.getfixturevalue("pg_url") if backend == "postgresql" else None)
    yield w
    w.close()


def _snapshot(sku: str, amount: str = "12.50") -> dict:
    snap = tiny_snapshot()
    snap["bill_lines"][0]["item_sku"] = sku  # an item QuickBooks lacks: BILL-1 waits on its mapping
    snap["bill_lines"][0]["unit_price"] = amount
    return snap


def test_the_history_is_the_fold_of_every_runs_findings(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks whose failures come, change money, move to another value and go: what the checks fold in run by run
    is what every run's findings give."""
    monkeypatch.setattr(readiness, "KEEP_RUNS", 1000)
    steps = [("WID-220", "12.50"), ("WID-220", "99.00"), ("WID-330", "99.00"), ("WID-100", "99.00"), ("WID-220", "1")]
    for sku, price in steps:
        world.ingest(_snapshot(sku, price))
        world.advance(minutes=5)
        run_check(world.store, REALM, now=world.now)
        held = _sorted(world.store.frame(_HELD, [REALM]))
        assert held.height, "a value waits on its mapping"
        assert_frame_equal(held, _sorted(world.store.frame(_EVERY_RUN, [REALM])), check_dtypes=False)
    runs = dict(world.store.rows("SELECT value, runs FROM finding_history WHERE kind = 'item' AND entity = 'bill'"))
    assert (runs["WID-220"], runs["WID-330"]) == (3, 1)


def test_only_the_last_runs_keep_their_findings_and_offenders_still_count_every_run(world: World) -> None:
    world.ingest(_snapshot("WID-220"))
    checks = readiness.KEEP_RUNS + 3
    for _ in range(checks):
        world.advance(minutes=5)
        run_check(world.store, REALM, now=world.now)
    every = [run for (run,) in world.store.rows("SELECT run_id FROM check_runs WHERE realm_id = ? ORDER BY 1", [REALM])]
    kept = world.store.rows("SELECT DISTINCT run_id FROM findings WHERE realm_id = ? ORDER BY 1", [REALM])
    assert [run for (run,) in kept] == every[-readiness.KEEP_RUNS :]
    # a candidate of an early run (this small company has none of its own) goes with that run's findings
    world.store.execute(
        "INSERT INTO duplicate_candidates VALUES (?, ?, 'bill', 'BILL-1', 1, 'Bill', '77', 'doc_number_exists', 1, '')",
        [every[-readiness.KEEP_RUNS], REALM],
    )
    world.advance(minutes=5)
    run_check(world.store, REALM, now=world.now)
    assert not world.store.scalar("SELECT count(*) FROM duplicate_candidates WHERE realm_id = ?", [REALM])
    checks += 1
    offenders = trends.recurring_offenders(world.store, REALM, min_failures=1)
    item = offenders.filter((pl.col("kind") == "item") & (pl.col("value") == "WID-220")).row(0, named=True)
    assert item["runs"] == checks and item["open_now"]
    last = world.store.scalar("SELECT max(run_id) FROM check_runs WHERE realm_id = ?", [REALM])
    assert world.store.scalar("SELECT count(*) FROM findings WHERE run_id = ? AND mapping_value = 'WID-220'", [last]), (
        "the last run's findings, which the pages read, are there"
    )


def test_a_store_from_before_the_history_gets_it_from_the_runs_it_kept(tmp_path: Path) -> None:
    """Migration 18 folds the findings a store already holds, so an upgraded company's offenders keep their counts."""
    from pipelines.store import Store

    world = World(tmp_path)
    for sku in ("WID-220", "WID-330"):
        world.ingest(_snapshot(sku))
        world.advance(minutes=5)
        run_check(world.store, REALM, now=world.now)
    before = _sorted(world.store.frame(_HELD, [REALM]))
    world.store.execute("DROP TABLE finding_history")
    world.store.execute("DELETE FROM schema_version WHERE version = 18")
    path = world.store.path
    world.close()
    with Store(path) as upgraded:
        assert upgraded.schema_version == 18
        assert_frame_equal(_sorted(upgraded.frame(_HELD, [REALM])), before, check_dtypes=False)
