"""On the demo company, every seeded problem is found under its reason, and clean records have no finding."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fixtures import T0

from pipelines.demo.company import write_demo
from pipelines.ingest import ingest_snapshot
from pipelines.pull import load_company_file
from pipelines.readiness import run_check
from pipelines.store import Store

AS_OF = T0.date()


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("demo")
    summary = write_demo(tmp / "demo", seed=7, scale=4000, as_of=AS_OF)
    store = Store(tmp / "demo.duckdb")
    company = json.loads(summary.company_file.read_text())
    ingest_snapshot(store, summary.snapshot_dir, realm_id=company["realm_id"], now=T0)
    load_company_file(store, company, T0 + timedelta(hours=3))
    run_check(store, company["realm_id"], now=T0 + timedelta(hours=3))
    found: dict[str, set[str]] = {}
    for entity, record_id, reason in store.rows(
        "SELECT entity, record_id, reason FROM findings WHERE run_id = (SELECT max(run_id) FROM check_runs)"
    ):
        found.setdefault(f"{entity}:{record_id}", set()).add(reason)
    yield summary, found, store
    store.close()


def test_every_seeded_problem_is_found_under_its_reason(checked) -> None:
    summary, found, _ = checked
    assert summary.problems, "the demo seeded nothing"
    for reason, keys in summary.problems.items():
        missed = [k for k in keys if reason not in found.get(k, set())]
        assert not missed, (reason, len(missed), missed[:5])


def test_clean_records_have_no_finding(checked) -> None:
    summary, found, _ = checked
    seeded = {k for keys in summary.problems.values() for k in keys}
    # a record that only waits on a seeded record (its vendor, its invoice) shows that dependency, nothing else
    surprises = {k: r for k, r in found.items() if k not in seeded and r != {"source_data.dependency_not_ready"}}
    # accounts themselves carry their own mapping gap (the demo lists only the records that use them)
    surprises = {k: r for k, r in surprises.items() if not k.startswith("account:")}
    assert surprises == {}


def test_older_clean_records_are_linked_by_their_marker_not_resent(checked) -> None:
    summary, _, store = checked
    linked = dict(store.rows("SELECT entity, count(*) FROM external_refs WHERE linked_by = 'marker' GROUP BY 1"))
    assert linked == {k: v for k, v in summary.presynced.items() if v}
    ready = store.scalar("SELECT count(*) FROM records WHERE state = 'ready'")
    assert 0 < ready < sum(summary.counts.values())
