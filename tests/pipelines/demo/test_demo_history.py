"""The demo's history: the real engine over simulated weeks, with the engine's and the sandbox's clocks together."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from cryptography.fernet import Fernet
from fixtures import T0

from pipelines.config import Settings
from pipelines.demo import history as demo_history
from pipelines.demo.company import write_demo
from pipelines.store import Store
from pipelines.views import health, trends
from qbo.sandbox import Sandbox, SandboxClock
from qbo.sandbox.store import read_company, store_from_company
from schemas.awra import CONTRACT

END = (T0 - timedelta(days=6)).replace(hour=17)  # a finished day, dated from the clock
REALM = "9341453050298461"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("history")
    summary = write_demo(tmp / "demo", seed=11, scale=600, as_of=END.date(), fmt="parquet")
    plan = demo_history.plan_history(summary, 2, END, per_week=2, seed=11)
    settings = Settings(
        db_path=tmp / "history.duckdb",
        qbo_base_url="http://sandbox.local",
        secret_key=Fernet.generate_key().decode(),
        secret_key_file=tmp / "secret.key",
    )
    sandbox = Sandbox(clock=SandboxClock(start=plan.start))
    store = Store(settings.db_path)
    result = demo_history.build_history(
        store, sandbox, 2, plan=plan, company_file=summary.company_file, settings=settings, work_dir=tmp / "work"
    )
    exported = demo_history.export_company(sandbox, REALM, tmp / "after.json")
    yield {"plan": plan, "store": store, "sandbox": sandbox, "result": result, "exported": exported, "tmp": tmp}
    store.close()


def test_the_plan_releases_records_as_they_arrive_and_fixes_some_later(built, tmp_path: Path) -> None:
    plan = built["plan"]
    first = plan.snapshot_at(plan.start, tmp_path / "first")
    last = plan.snapshot_at(plan.end, tmp_path / "last")
    for name, table in CONTRACT.items():
        early, late = pl.read_parquet(first / f"{name}.parquet"), pl.read_parquet(last / f"{name}.parquet")
        if table.is_lines:
            continue
        assert set(early[table.record_id]) <= set(late[table.record_id])  # records arrive, none disappear
    bills = pl.read_parquet(last / "bills.parquet")
    assert pl.read_parquet(first / "bills.parquet").height < bills.height
    fixed = plan.fixes["bills"].filter(pl.col("_fixed_at") <= plan.end)["bill_id"].to_list()
    fixed += plan.fixes["invoices"].filter(pl.col("_fixed_at") <= plan.end)["invoice_id"].to_list()
    assert fixed, "some held records are approved or posted by a person during the window"


def test_every_cycle_ran_on_the_engine_clock_with_the_sandbox_clock_beside_it(built) -> None:
    plan, store, sandbox, result = built["plan"], built["store"], built["sandbox"], built["result"]
    assert result.cycles == len(plan.cycles) == 5
    runs = [r[0] for r in store.rows("SELECT started_at FROM sync_runs ORDER BY run_id")]
    # Every cycle sent, but the one that found the connection revoked: it checked, and sent nothing.
    assert set(runs) < set(plan.cycles) and len(runs) == len(plan.cycles) - 1
    ingests = [r[0] for r in store.rows("SELECT started_at FROM ingest_runs ORDER BY run_id")]
    assert ingests == list(plan.cycles)
    assert set(plan.cycles) <= {r[0] for r in store.rows("SELECT started_at FROM check_runs")}
    lag = (sandbox.clock.now() - plan.end).total_seconds()
    assert 0 <= lag < 3600  # the sandbox followed the engine (plus throttle waits and real seconds)
    assert health.as_of(store, REALM) == plan.end


def test_the_history_holds_what_people_and_faults_did(built) -> None:
    store, result = built["store"], built["result"]
    assert store.scalar("SELECT count(*) FROM ingest_runs WHERE new_records > 0") >= 3  # records kept arriving
    maps = store.rows("SELECT actor, reason FROM audit_log WHERE action = 'map'")
    assert maps and all(a == "admin@demo.local" and "weekly mapping review" in r for a, r in maps)
    assert len(result.mappings_fixed) == len(maps)
    statuses = [r[0] for r in store.rows("SELECT status FROM sync_runs ORDER BY run_id")]
    assert statuses[-1] == "done"  # the connection was lost once (that cycle sent nothing), then reconnected
    assert store.scalar("SELECT status FROM qbo_connections") == "connected"
    assert store.scalar("SELECT count(*) FROM exceptions WHERE entity = 'connection' AND status = 'resolved'") >= 1
    assert store.scalar("SELECT count(*) FROM sync_attempts") == sum(result.sent.values()) + store.scalar(
        "SELECT count(*) FROM sync_attempts WHERE operation IN ('lookup', 'replay')"
    )
    # Trends has weeks to show: records blocked on many different days, some of them freed since
    intervals = health.blocked_intervals(store, REALM, "all")
    assert intervals["since"].dt.date().n_unique() >= 5 and intervals["until"].null_count() < intervals.height
    assert trends.first_time_right(store, REALM)["first_attempts"].sum() > 0


def test_the_exported_company_carries_on_where_the_history_stopped(built) -> None:
    store, sandbox = built["store"], built["sandbox"]
    again = store_from_company(read_company(built["exported"]), sandbox.clock.now())
    for entity, qbo_entity, qbo_id in store.rows(
        "SELECT entity, qbo_entity, qbo_id FROM external_refs WHERE linked_by = 'sync'"
    ):
        assert again.get(qbo_entity, qbo_id) is not None, f"{entity} {qbo_entity} {qbo_id} is missing"
    deleted = built["result"].deleted_in_qbo
    for key in deleted:
        qbo_id = key.rsplit(" ", 1)[-1].rstrip(")")
        assert again.is_deleted("Bill", qbo_id)


def test_the_history_arrives_as_deltas_that_add_up_to_the_full_export(built) -> None:
    from pipelines.ingest import ingest_snapshot

    store, plan = built["store"], built["plan"]
    kinds = store.rows("SELECT kind, snapshot_id, base FROM ingest_runs ORDER BY run_id")
    assert kinds[0][0] == "full" and {k for k, _, _ in kinds[1:]} == {"delta"}
    assert all(base == before[1] for before, (_, _, base) in zip(kinds, kinds[1:], strict=False))  # each on the last
    # the full export AWRA would send at the end holds nothing the deltas did not already bring
    full = plan.snapshot_at(plan.end, built["tmp"] / "full-at-end")
    again = ingest_snapshot(store, full, realm_id=REALM, now=plan.end)
    assert (again.status, again.new, again.changed, again.removed) == ("unchanged", 0, 0, 0)
