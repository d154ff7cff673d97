"""AWRA snapshot ingest: formats, versions, removals, refusals that name file/row/column, crash safety."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from fixtures import REALM, T0, dump_store, rows_validated, tiny_snapshot, write_snapshot

from pipelines.cli import main
from pipelines.ingest import SnapshotError, ingest_snapshot
from pipelines.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _assert_same(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equals(b[name]), name


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_every_format_loads_to_identical_tables(tmp_path: Path, fmt: str) -> None:
    stores = []
    for f in ("csv", fmt):
        folder = write_snapshot(tmp_path / f, tiny_snapshot(), f)
        store = Store(tmp_path / f"{f}.duckdb")
        ingest_snapshot(store, folder, realm_id=REALM, now=T0)
        stores.append(dump_store(store))
        store.close()
    _assert_same(*stores)


def test_amounts_are_stored_exactly(store: Store, snapshot_dir: Path) -> None:
    ingest_snapshot(store, snapshot_dir, realm_id=REALM, now=T0)
    total, qty = store.rows(
        "SELECT b.total::VARCHAR, l.qty::VARCHAR FROM awra_bills b JOIN awra_bill_lines l USING (bill_id) "
        "WHERE bill_id = 'BILL-1' AND line_no = 1"
    )[0]
    assert (total, qty) == ("30.50", "2.0000")


def test_reingest_of_the_same_snapshot_changes_nothing(store: Store, snapshot_dir: Path) -> None:
    first = ingest_snapshot(store, snapshot_dir, realm_id=REALM, now=T0)
    before = dump_store(store)
    again = ingest_snapshot(store, snapshot_dir, realm_id=REALM, now=T0)
    assert first.new == 15 and first.status == "applied"
    assert (again.status, again.new, again.changed, again.removed) == ("unchanged", 0, 0, 0)
    _assert_same(before, dump_store(store))


def test_same_content_in_another_format_is_not_a_change(store: Store, tmp_path: Path) -> None:
    ingest_snapshot(store, write_snapshot(tmp_path / "a", tiny_snapshot(), "csv"), realm_id=REALM, now=T0)
    snap = tiny_snapshot()
    snap["bills"][0]["total"] = "30.5"  # same amount, other spelling
    result = ingest_snapshot(store, write_snapshot(tmp_path / "b", snap, "parquet"), realm_id=REALM, now=T0)
    assert result.status == "unchanged"


def test_a_changed_record_gets_version_two_and_the_old_version_stays(store: Store, tmp_path: Path) -> None:
    ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
    snap = tiny_snapshot()
    snap["bill_lines"][1]["amount"] = "11.00"  # a line change is a change of its bill
    snap["bills"][0]["total"] = "31.50"
    result = ingest_snapshot(store, write_snapshot(tmp_path / "v2", snap), realm_id=REALM, now=T0)
    assert (result.changed, result.new) == (1, 0)
    assert store.rows("SELECT current_version FROM records WHERE record_id = 'BILL-1'") == [(2,)]
    totals = store.rows("SELECT version, total::VARCHAR FROM awra_bills WHERE bill_id = 'BILL-1' ORDER BY 1")
    assert totals == [(1, "30.50"), (2, "31.50")]
    assert store.scalar("SELECT count(*) FROM awra_bill_lines WHERE bill_id = 'BILL-1'") == 4
    assert store.scalar("SELECT count(*) FROM record_versions WHERE record_id = 'BILL-1'") == 2
    # an untouched record keeps version 1
    assert store.rows("SELECT current_version FROM records WHERE record_id = 'BILL-2'") == [(1,)]


def test_extra_columns_are_kept_and_do_not_make_a_new_version(store: Store, tmp_path: Path) -> None:
    ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
    folder = write_snapshot(tmp_path / "v2", tiny_snapshot())
    vendors = pl.read_csv(folder / "vendors.csv", infer_schema=False).with_columns(pl.lit("x").alias("crm_id"))
    vendors.write_csv(folder / "vendors.csv")
    result = ingest_snapshot(store, folder, realm_id=REALM, now=T0)
    assert result.status == "unchanged"


def test_a_record_missing_from_a_newer_snapshot_is_marked_removed_not_deleted(store: Store, tmp_path: Path) -> None:
    ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
    snap = tiny_snapshot()
    snap["vendors"] = snap["vendors"][:1]
    result = ingest_snapshot(store, write_snapshot(tmp_path / "v2", snap), realm_id=REALM, now=T0)
    assert result.removed == 1
    assert store.scalar("SELECT removed_at IS NOT NULL FROM records WHERE record_id = 'VEN-2'") is True
    assert store.scalar("SELECT count(*) FROM awra_vendors WHERE vendor_id = 'VEN-2'") == 1
    back = ingest_snapshot(store, write_snapshot(tmp_path / "v3", tiny_snapshot()), realm_id=REALM, now=T0)
    assert (back.restored, back.new) == (1, 0)
    assert store.scalar("SELECT removed_at IS NULL FROM records WHERE record_id = 'VEN-2'") is True


def _mutate_csv(folder: Path, table: str, row: int, column: str, value: str | None) -> None:
    frame = pl.read_csv(folder / f"{table}.csv", infer_schema=False)
    frame = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )
    frame.write_csv(folder / f"{table}.csv")


def _bad_snapshot(kind: str, folder: Path) -> None:
    """Make one kind of bad input in a valid CSV snapshot folder."""
    if kind == "missing column":
        pl.read_csv(folder / "bills.csv", infer_schema=False).drop("total").write_csv(folder / "bills.csv")
    elif kind == "wrong type":
        _mutate_csv(folder, "bills", 1, "total", "five dollars")
    elif kind == "bad enum":
        _mutate_csv(folder, "invoices", 0, "approval_status", "approvd")
    elif kind == "duplicate id":
        _mutate_csv(folder, "vendors", 1, "vendor_id", "VEN-1")
    elif kind == "bad decimal":
        _mutate_csv(folder, "bills", 1, "total", "3.005")
    elif kind == "bad date":
        _mutate_csv(folder, "bills", 1, "txn_date", "2026-02-30")
    elif kind == "bad encoding":
        data = (folder / "customers.csv").read_bytes()
        (folder / "customers.csv").write_bytes(data.replace(b"Northwind", b"North\xffwind"))
    elif kind == "empty file":
        (folder / "payments.csv").write_bytes(b"")
    elif kind == "missing file":
        (folder / "journal_lines.csv").unlink()
    elif kind == "orphan line":
        _mutate_csv(folder, "bill_lines", 2, "bill_id", "BILL-404")
    else:
        raise AssertionError(kind)


BAD_INPUTS = {
    # kind: (file, row, column, words the message must contain)
    "missing column": ("bills.csv", 1, "total", "missing"),
    "wrong type": ("bills.csv", 3, "total", "'five dollars'"),
    "bad enum": ("invoices.csv", 2, "approval_status", "'approvd' must be one of"),
    "duplicate id": ("vendors.csv", 2, "vendor_id", "duplicate"),
    "bad decimal": ("bills.csv", 3, "total", "'3.005'"),
    "bad date": ("bills.csv", 3, "txn_date", "calendar date"),
    "bad encoding": ("customers.csv", 2, None, "UTF-8"),
    "empty file": ("payments.csv", None, None, "empty"),
    "missing file": ("journal_lines.csv", None, None, "missing"),
    "orphan line": ("bill_lines.csv", 4, "bill_id", "'BILL-404' has no row in bills"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_is_refused_whole_with_file_row_column_and_exit_2(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "store.duckdb"
    assert (
        main(
            [
                "--actor",
                "admin@demo.local",
                "--db",
                str(db),
                "ingest",
                str(write_snapshot(tmp_path / "good", tiny_snapshot())),
            ]
        )
        == 0
    )
    with Store(db) as store:
        before = dump_store(store)
    snap = tiny_snapshot()
    snap["bills"][0]["total"] = "99.00"  # the bad snapshot also carries a real change, which must not land
    folder = write_snapshot(tmp_path / "bad", snap)
    _bad_snapshot(kind, folder)
    capsys.readouterr()

    code = main(["--actor", "admin@demo.local", "--db", str(db), "ingest", str(folder)])

    err = capsys.readouterr().err.strip()
    file, row, column, words = BAD_INPUTS[kind]
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert file in err and words in err, err
    if row is not None:
        assert f"row {row}" in err, err
    if column is not None:
        assert f"column {column}" in err, err
    with Store(db) as store:
        _assert_same(before, dump_store(store))
        history = store.rows("SELECT status, error FROM ingest_runs ORDER BY run_id")
    assert [h[0] for h in history] == ["applied", "refused"]
    assert file in history[1][1]


def test_all_problems_are_gathered_but_one_line_is_shown(store: Store, snapshot_dir: Path) -> None:
    _bad_snapshot("bad decimal", snapshot_dir)
    _bad_snapshot("bad enum", snapshot_dir)
    with pytest.raises(SnapshotError) as info:
        ingest_snapshot(store, snapshot_dir, realm_id=REALM, now=T0)
    assert len(info.value.problems) == 2
    assert "(and 1 more problem)" in str(info.value)
    files = store.rows("SELECT table_name, rejected FROM ingest_files WHERE rejected > 0 ORDER BY 1")
    assert files == [("bills", 1), ("invoices", 1)]


def test_jsonl_money_keeps_every_digit(store: Store, tmp_path: Path) -> None:
    folder = write_snapshot(tmp_path / "j", tiny_snapshot(), "jsonl")
    text = (folder / "bills.jsonl").read_text().replace('"total":"30.50"', '"total":12345678901234.99')
    (folder / "bills.jsonl").write_text(text)
    ingest_snapshot(store, folder, realm_id=REALM, now=T0)
    assert store.scalar("SELECT total::VARCHAR FROM awra_bills WHERE bill_id = 'BILL-1'") == "12345678901234.99"


def test_float_money_in_parquet_is_refused(store: Store, tmp_path: Path) -> None:
    folder = write_snapshot(tmp_path / "p", tiny_snapshot(), "parquet")
    bills = pl.read_parquet(folder / "bills.parquet").with_columns(pl.col("total").cast(pl.Float64))
    bills.write_parquet(folder / "bills.parquet")
    with pytest.raises(SnapshotError, match=r"bills.parquet column total: is stored as a floating-point"):
        ingest_snapshot(store, folder, realm_id=REALM, now=T0)


def test_two_companies_keep_separate_records(store: Store, snapshot_dir: Path) -> None:
    ingest_snapshot(store, snapshot_dir, realm_id="A", now=T0)
    second = ingest_snapshot(store, snapshot_dir, realm_id="B", now=T0)
    assert second.new == 15
    assert store.rows("SELECT realm_id, count(*) FROM records GROUP BY 1 ORDER BY 1") == [
        ("A", 15),
        ("B", 15),
    ]


@pytest.mark.parametrize("point", ["ingest.staged", "ingest.swap"])
def test_a_crash_between_staging_and_swap_leaves_the_previous_data(tmp_path: Path, point: str) -> None:
    db = tmp_path / "store.duckdb"
    with Store(db) as store:
        ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
        before = dump_store(store)
    snap = tiny_snapshot()
    snap["bills"][0]["total"] = "99.00"
    snap["vendors"] = snap["vendors"][:1]
    folder = write_snapshot(tmp_path / "v2", snap)
    env = {**os.environ, "SYNCHEALTH_CRASH_AT": point, "SYNCHEALTH_REALM_ID": REALM}
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "--actor", "admin@demo.local", "--db", str(db), "ingest", str(folder)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 70, proc.stderr.decode()  # died at the crash point, no cleanup
    with Store(db) as store:
        _assert_same(before, dump_store(store))
        result = ingest_snapshot(store, folder, realm_id=REALM, now=T0)  # the next run finishes the job
        assert (result.changed, result.removed) == (1, 1)


def test_cli_ingest_and_status_json(tmp_path: Path, snapshot_dir: Path, capsys) -> None:
    db = str(tmp_path / "cli.duckdb")
    assert main(["--actor", "admin@demo.local", "--db", db, "ingest", str(snapshot_dir)]) == 0
    capsys.readouterr()
    assert main(["status", "--json", "--db", db]) == 0
    import json

    status = json.loads(capsys.readouterr().out)
    assert status["records"]["by_entity"]["bill"] == 2
    assert status["records"]["versions"] == 15
    assert status["records"]["by_state"] == {"not_ready": 15}
    assert {"records", "exceptions", "connection"} <= status.keys()


def test_console_script_runs(tmp_path: Path, snapshot_dir: Path) -> None:
    exe = Path(sys.executable).with_name("synchealth")
    proc = subprocess.run(
        [str(exe), "--actor", "admin@demo.local", "--db", str(tmp_path / "s.duckdb"), "ingest", str(snapshot_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "applied: 15 new" in proc.stdout


def test_mutating_helpers_do_not_leak_between_tests() -> None:
    # tiny_snapshot() must hand out a fresh copy each time, or one test's edit would poison the next
    a = tiny_snapshot()
    b = copy.deepcopy(a)
    a["bills"][0]["total"] = "0.00"
    assert tiny_snapshot() == b


def test_an_entity_whose_files_did_not_change_is_not_read_again(store: Store, tmp_path: Path, monkeypatch) -> None:
    import pipelines.ingest as awra

    ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
    snap = tiny_snapshot()
    snap["vendors"][0]["name"] = "Acme Supplies Ltd"
    folder = write_snapshot(tmp_path / "v2", snap)
    read: list[str] = []
    real = awra._read_file
    monkeypatch.setattr(awra, "_read_file", lambda table, path, *a: read.append(table.name) or real(table, path, *a))
    result = ingest_snapshot(store, folder, realm_id=REALM, now=T0)
    assert read == ["vendors"]  # only the vendor file differs from the last applied snapshot
    assert (result.changed, result.removed, result.rows["bill_lines"]) == (1, 0, 3)
    read.clear()
    assert ingest_snapshot(store, folder, realm_id=REALM, now=T0).status == "unchanged" and read == []


def test_a_reingest_validates_and_stages_only_the_records_whose_text_changed(
    store: Store, tmp_path: Path, monkeypatch
) -> None:
    ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
    snap = tiny_snapshot()
    snap["bills"][1]["owner"] = "someone@else.example"  # BILL-2: its header row changed
    snap["bill_lines"][0]["description"] = "Blue widgets"  # BILL-1: one of its lines changed
    snap["vendors"][1]["name"] = "Beta Corp 2"
    seen = rows_validated(monkeypatch)
    result = ingest_snapshot(store, write_snapshot(tmp_path / "v2", snap), realm_id=REALM, now=T0)
    assert seen["bills"] == 2 and seen["vendors"] == 1
    assert seen["bill_lines"] == sum(1 for line in snap["bill_lines"] if line["bill_id"] in ("BILL-1", "BILL-2"))
    assert (result.changed, result.new, result.removed) == (3, 0, 0)
    assert result.rows["bills"] == len(snap["bills"])  # the run still counts every row of the file
    versions = dict(store.rows("SELECT record_id, current_version FROM records WHERE entity IN ('bill', 'vendor')"))
    assert versions == {"BILL-1": 2, "BILL-2": 2, "VEN-1": 1, "VEN-2": 2}


def test_a_bad_value_in_a_changed_row_is_reported_at_its_row_in_the_file(store: Store, tmp_path: Path) -> None:
    ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
    before = dump_store(store)
    snap = tiny_snapshot()
    snap["bills"][1]["total"] = "12.345"  # the second data row: row 3 of bills.csv, after its header
    with pytest.raises(SnapshotError) as err:
        ingest_snapshot(store, write_snapshot(tmp_path / "v2", snap), realm_id=REALM, now=T0)
    assert str(err.value).startswith("bills.csv row 3 column total:")
    _assert_same(before, dump_store(store))


def test_a_duplicate_of_an_unchanged_record_is_refused(store: Store, tmp_path: Path) -> None:
    ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
    snap = tiny_snapshot()
    snap["vendors"].append(dict(snap["vendors"][0]))  # an exact copy of a row already applied
    with pytest.raises(SnapshotError, match=r"vendors.csv row \d+ column vendor_id: duplicate vendor_id"):
        ingest_snapshot(store, write_snapshot(tmp_path / "v2", snap), realm_id=REALM, now=T0)


def test_new_text_for_the_same_values_is_no_new_version_and_is_skipped_next_time(
    store: Store, tmp_path: Path, monkeypatch
) -> None:
    ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
    snap = tiny_snapshot()
    snap["bills"][0]["total"] = "30.5"  # 30.50 written another way
    folder = write_snapshot(tmp_path / "v2", snap)
    assert ingest_snapshot(store, folder, realm_id=REALM, now=T0).status == "unchanged"
    assert store.scalar("SELECT current_version FROM records WHERE record_id = 'BILL-1'") == 1
    (folder / "bills.csv").write_text((folder / "bills.csv").read_text() + "\n")  # new bytes, same rows
    seen = rows_validated(monkeypatch)
    assert ingest_snapshot(store, folder, realm_id=REALM, now=T0).status == "unchanged"
    assert seen["bills"] == 0 and seen["bill_lines"] == 0


def test_a_jsonl_file_without_lines_is_a_table_without_records(store: Store, tmp_path: Path) -> None:
    snap = tiny_snapshot()
    snap["payments"] = []
    folder = write_snapshot(tmp_path / "j", snap, "jsonl")
    assert (folder / "payments.jsonl").read_bytes() == b""  # JSON Lines has no header to write
    result = ingest_snapshot(store, folder, realm_id=REALM, now=T0)
    assert result.rows["payments"] == 0 and result.new == 14
