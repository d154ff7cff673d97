"""The store: migrations up from the first schema, refusal of newer files, append-only audit, busy file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from fixtures import REALM, T0

from pipelines.cli import main
from pipelines.ingest import ingest_snapshot
from pipelines.store import MIGRATIONS, Migration, Store, StoreBusyError, StoreTooNewError

ROOT = Path(__file__).resolve().parents[2]


def _first_version_file(path: Path) -> None:
    """A store as the first schema version wrote it: its tables, with a record and an ingest run in them."""
    with Store(path, migrations=MIGRATIONS[:1]) as old:
        assert old.schema_version == 1
        old.execute(
            "INSERT INTO records VALUES (?, 'bill', 'BILL-1', 1, 'abc', now(), now(), NULL, 'not_ready')", [REALM]
        )
        run = old.scalar("SELECT nextval('ingest_run_seq')")
        old.execute(
            "INSERT INTO ingest_runs (run_id, realm_id, source, started_at, status) VALUES (?, ?, 'x', now(), "
            "'applied')",
            [run, REALM],
        )
        old.execute(
            "INSERT INTO ingest_files (run_id, realm_id, table_name, file) VALUES (?, ?, 'bills', 'bills.csv')",
            [run, REALM],
        )


def test_a_file_created_by_the_first_schema_version_is_upgraded_and_keeps_its_data(
    tmp_path: Path, snapshot_dir: Path
) -> None:
    db = tmp_path / "old.duckdb"
    _first_version_file(db)
    later = Migration(MIGRATIONS[-1].version + 1, "test: a note column", "ALTER TABLE records ADD COLUMN note VARCHAR")
    with Store(db, migrations=[*MIGRATIONS, later]) as new:
        assert new.schema_version == later.version
        assert new.rows("SELECT record_id, note FROM records") == [("BILL-1", None)]
        versions = [r[0] for r in new.rows("SELECT version FROM schema_version ORDER BY 1")]
        assert versions == list(range(1, later.version + 1))
    _first_version_file(tmp_path / "first.duckdb")
    with Store(tmp_path / "first.duckdb") as current:  # the shipped migrations upgrade it all the way
        assert current.schema_version == MIGRATIONS[-1].version
        result = ingest_snapshot(current, snapshot_dir, realm_id=REALM, now=T0)  # and today's code works on it
        # BILL-1 was already there with other content: it gets version 2, the rest are new
        assert (result.new, result.changed) == (14, 1) and current.scalar("SELECT count(*) FROM records") == 15


def test_a_newer_file_is_refused_clearly(tmp_path: Path) -> None:
    db = tmp_path / "new.duckdb"
    future = Migration(MIGRATIONS[-1].version + 5, "from the future", "CREATE TABLE future (x INTEGER)")
    Store(db, migrations=[*MIGRATIONS, future]).close()
    with pytest.raises(StoreTooNewError, match="newer than this app knows"):
        Store(db)


def test_the_audit_log_refuses_update_and_delete_in_sql(store: Store) -> None:
    store.execute(
        "INSERT INTO audit_log (realm_id, acted_at, actor, role, action, target, reason) "
        "VALUES (?, now(), ?, ?, ?, ?, ?)",
        [REALM, "admin@demo.local", "admin", "map", "item:WID-220", "mapped to Widgets"],
    )
    with pytest.raises(duckdb.Error, match="append-only"):
        store.execute("UPDATE audit_log SET reason = 'tampered'")
    with pytest.raises(duckdb.Error, match="append-only"):
        store.execute("DELETE FROM audit_log")
    assert store.rows("SELECT reason FROM audit_log") == [("mapped to Widgets",)]


def test_every_table_carries_realm_id(store: Store) -> None:
    tables = [r[0] for r in store.rows("SELECT table_name FROM information_schema.tables")]
    without = [
        t
        for t in tables
        if t not in ("schema_version", "audit_guard")
        and not store.scalar(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = 'realm_id'",
            [t],
        )
    ]
    assert without == []


def test_a_store_held_by_another_process_gives_one_clear_line(tmp_path: Path, capsys) -> None:
    db = tmp_path / "held.duckdb"
    Store(db).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,sys,time; c=duckdb.connect({str(db)!r}); print('ok', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreBusyError, match="open in another process"):
            Store(db)
        assert main(["--db", str(db), "status"]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
