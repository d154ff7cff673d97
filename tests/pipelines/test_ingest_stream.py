"""A first ingest of Parquet files read in batches: the same tables as a whole read, and every refusal still names the
file's own row, whichever batch it falls in, with nothing stored changed."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
from fixtures import REALM, T0, dump_store, rows_validated, tiny_snapshot, write_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pipelines.ingest as awra
from pipelines.ingest import SnapshotError, ingest_snapshot
from pipelines.store import Store, _size

Snapshot = dict[str, list[dict[str, str | None]]]


def _where(err: SnapshotError) -> list[tuple[str, int | None, str | None]]:
    return [(p.file, p.row, p.column) for p in err.problems]


def _more_bills(n: int) -> Snapshot:
    """The tiny snapshot with n more bills, each with two lines (so a batch of a few rows ends mid-file)."""
    snap = tiny_snapshot()
    bill, line = snap["bills"][0], snap["bill_lines"][0]
    for i in range(n):
        bid = f"BILL-X{i:03d}"
        snap["bills"].append(bill | {"bill_id": bid, "bill_number": f"X-{i}"})
        snap["bill_lines"] += [line | {"bill_id": bid, "line_no": str(k)} for k in (1, 2)]
    return snap


@pytest.fixture
def batches_of(monkeypatch):
    def set_rows(n: int) -> None:
        monkeypatch.setattr(awra, "BATCH_ROWS", n)

    return set_rows


def _streamed(monkeypatch) -> list[str]:
    """The tables the next ingest reads in batches."""
    seen: list[str] = []
    real = awra._stream_file

    def spy(cur, table, *args):
        seen.append(table.name)
        return real(cur, table, *args)

    monkeypatch.setattr(awra, "_stream_file", spy)
    return seen


def test_a_first_parquet_ingest_in_batches_stores_what_a_whole_read_stores(
    tmp_path: Path, batches_of, monkeypatch
) -> None:
    snap = _more_bills(7)
    whole = Store(tmp_path / "csv.duckdb")
    ingest_snapshot(whole, write_snapshot(tmp_path / "csv", snap, "csv"), realm_id=REALM, now=T0)
    batches_of(3)
    seen = _streamed(monkeypatch)
    batched = Store(tmp_path / "parquet.duckdb")
    result = ingest_snapshot(batched, write_snapshot(tmp_path / "pq", snap, "parquet"), realm_id=REALM, now=T0)
    assert "bills" in seen and "bill_lines" in seen
    assert result.rows["bill_lines"] == len(snap["bill_lines"]) and result.new == whole.scalar(
        "SELECT count(*) FROM records"
    )
    a, b = dump_store(whole), dump_store(batched)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equals(b[name]), name
    whole.close()
    batched.close()


def test_after_a_batched_first_ingest_a_reingest_still_reads_only_the_records_whose_text_changed(
    store: Store, tmp_path: Path, batches_of, monkeypatch
) -> None:
    # The raw-text hashes a batched read keeps are those a whole read computes: else every record looks changed.
    batches_of(2)
    snap = _more_bills(5)
    ingest_snapshot(store, write_snapshot(tmp_path / "v1", snap, "parquet"), realm_id=REALM, now=T0)
    snap = copy.deepcopy(snap)
    snap["bills"][3]["owner"] = "someone@else.example"
    seen = rows_validated(monkeypatch)
    result = ingest_snapshot(store, write_snapshot(tmp_path / "v2", snap, "parquet"), realm_id=REALM, now=T0)
    assert seen["bills"] == 1 and seen["bill_lines"] == 2
    assert (result.changed, result.new, result.removed) == (1, 0, 0)


def test_a_bad_value_past_the_first_batch_is_named_at_its_row_in_the_file(
    store: Store, tmp_path: Path, batches_of
) -> None:
    batches_of(2)
    snap = _more_bills(6)
    snap["bills"][6]["total"] = "12,50"  # the 7th data row: the 4th batch of two
    snap["bill_lines"][9]["line_no"] = "x"
    folder = write_snapshot(tmp_path / "awra", snap, "parquet")
    with pytest.raises(SnapshotError) as err:
        ingest_snapshot(store, folder, realm_id=REALM, now=T0)
    assert ("bills.parquet", 7, "total") in _where(err.value)
    assert ("bill_lines.parquet", 10, "line_no") in _where(err.value)
    assert store.scalar("SELECT count(*) FROM records") == 0
    assert store.rows("SELECT status FROM ingest_runs") == [("refused",)]
    rejected = dict(store.rows("SELECT table_name, rejected FROM ingest_files WHERE rejected > 0"))
    assert rejected == {"bills": 1, "bill_lines": 1}


def test_a_key_repeated_in_two_batches_is_refused_naming_both_rows(store: Store, tmp_path: Path, batches_of) -> None:
    batches_of(2)
    snap = _more_bills(6)
    snap["bills"][7]["bill_id"] = snap["bills"][1]["bill_id"]  # rows 2 and 8: the first and fourth batches
    folder = write_snapshot(tmp_path / "awra", snap, "parquet")
    with pytest.raises(SnapshotError, match="duplicate bill_id") as err:
        ingest_snapshot(store, folder, realm_id=REALM, now=T0)
    assert _where(err.value) == [("bills.parquet", 2, "bill_id"), ("bills.parquet", 8, "bill_id")]
    assert store.scalar("SELECT count(*) FROM records") == 0


def test_a_line_key_repeated_in_two_batches_is_refused_naming_both_rows(
    store: Store, tmp_path: Path, batches_of
) -> None:
    batches_of(3)
    snap = _more_bills(4)
    snap["bill_lines"][9] = snap["bill_lines"][3] | {"description": "again"}  # same bill_id + line_no
    folder = write_snapshot(tmp_path / "awra", snap, "parquet")
    with pytest.raises(SnapshotError) as err:
        ingest_snapshot(store, folder, realm_id=REALM, now=T0)
    assert _where(err.value) == [
        ("bill_lines.parquet", 4, "bill_id + line_no"),
        ("bill_lines.parquet", 10, "bill_id + line_no"),
    ]


def test_a_line_whose_bill_is_not_in_the_snapshot_is_named_past_the_first_batch(
    store: Store, tmp_path: Path, batches_of
) -> None:
    batches_of(2)
    snap = _more_bills(5)
    snap["bill_lines"][8]["bill_id"] = "BILL-NOWHERE"
    folder = write_snapshot(tmp_path / "awra", snap, "parquet")
    with pytest.raises(SnapshotError, match="'BILL-NOWHERE' has no row in bills") as err:
        ingest_snapshot(store, folder, realm_id=REALM, now=T0)
    assert _where(err.value) == [("bill_lines.parquet", 9, "bill_id")]
    assert store.scalar("SELECT count(*) FROM records") == 0


def test_the_cli_refuses_a_bad_row_past_the_first_batch_in_one_line_with_exit_2(
    tmp_path: Path, batches_of, capsys
) -> None:
    from pipelines.cli import main

    batches_of(2)
    snap = _more_bills(4)
    snap["bills"][5]["approval_status"] = "maybe"
    folder = write_snapshot(tmp_path / "awra", snap, "parquet")
    code = main(["--actor", "admin@demo.local", "--db", str(tmp_path / "s.duckdb"), "ingest", str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and "bills.parquet row 6 column approval_status" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_both_stores_refuse_a_duplicate_across_batches_and_load_a_clean_file(any_store: Store, tmp_path, batches_of):
    batches_of(2)
    snap = _more_bills(4)
    bad = copy.deepcopy(snap)
    bad["bills"][5]["bill_id"] = bad["bills"][0]["bill_id"]
    with pytest.raises(SnapshotError) as err:
        ingest_snapshot(any_store, write_snapshot(tmp_path / "bad", bad, "parquet"), realm_id=REALM, now=T0)
    assert _where(err.value) == [("bills.parquet", 1, "bill_id"), ("bills.parquet", 6, "bill_id")]
    assert any_store.scalar("SELECT count(*) FROM records") == 0
    result = ingest_snapshot(any_store, write_snapshot(tmp_path / "good", snap, "parquet"), realm_id=REALM, now=T0)
    assert result.rows["bills"] == len(snap["bills"]) and any_store.scalar(
        "SELECT count(*) FROM awra_bill_lines"
    ) == len(snap["bill_lines"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.integers(1, 12), bad=st.integers(0, 17), what=st.sampled_from(["total", "dup", "orphan"]))
def test_any_batch_size_names_the_same_row_as_a_whole_read(batches_of, rows: int, bad: int, what: str) -> None:
    snap = _more_bills(8)  # 10 bills, 19 lines
    if what == "total":
        snap["bills"][bad % 10]["total"] = "n/a"
    elif what == "dup":
        snap["bills"][bad % 10]["bill_id"] = snap["bills"][(bad + 3) % 10]["bill_id"]
    else:
        snap["bill_lines"][bad]["bill_id"] = "BILL-NOWHERE"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        whole = _refusal(folder / "csv.duckdb", write_snapshot(folder / "csv", snap, "csv"))
        batches_of(rows)
        batched = _refusal(folder / "pq.duckdb", write_snapshot(folder / "pq", snap, "parquet"))
    # CSV counts its header as row 1; Parquet's first data row is row 1.
    assert [(f.rsplit(".")[0], r, c) for f, r, c in batched] == [
        (f.rsplit(".")[0], None if r is None else r - 1, c) for f, r, c in whole
    ]


def _refusal(db: Path, folder: Path) -> list[tuple[str, int | None, str | None]]:
    store = Store(db)
    try:
        with pytest.raises(SnapshotError) as err:
            ingest_snapshot(store, folder, realm_id=REALM, now=T0)
        assert store.scalar("SELECT count(*) FROM records") == 0
        return sorted(_where(err.value), key=lambda p: (p[0], p[1] or 0))
    finally:
        store.close()


def _memory_limit(store: Store) -> str:
    return str(store.scalar("SELECT current_setting('memory_limit')"))


def test_an_ingest_works_within_its_memory_bound_and_gives_the_store_its_own_back(
    tmp_path: Path, monkeypatch, batches_of
) -> None:
    """The first ingest's staging is held to INGEST_MEMORY (spilling past it), so a company twice as large does not
    take twice the memory: under a tight bound it stores what it stores unbounded, and the pages' queries after it
    have the store's own limit again, also when an ingest is refused."""
    batches_of(64)
    snap = _more_bills(300)
    free = Store(tmp_path / "free.duckdb")
    ingest_snapshot(free, write_snapshot(tmp_path / "a", snap, fmt="parquet"), realm_id=REALM, now=T0)
    monkeypatch.setattr(awra, "INGEST_MEMORY", "24MB")
    tight = Store(tmp_path / "tight.duckdb")
    own = _memory_limit(tight)
    during: list[str] = []
    ingest_snapshot(
        tight,
        write_snapshot(tmp_path / "b", snap, fmt="parquet"),
        realm_id=REALM,
        now=T0,
        progress=lambda _f, _l: during.append(_memory_limit(tight)),
    )
    assert set(during) == {"22.8 MiB"} and own != "22.8 MiB"
    assert _memory_limit(tight) == own
    stored, unbounded = dump_store(tight), dump_store(free)
    assert all(stored[name].equals(unbounded[name]) for name in unbounded)
    bad = copy.deepcopy(snap)
    bad["bills"][200]["total"] = "twelve"
    with pytest.raises(SnapshotError):
        ingest_snapshot(tight, write_snapshot(tmp_path / "c", bad, fmt="parquet"), realm_id=REALM, now=T0)
    assert _memory_limit(tight) == own
    free.close()
    tight.close()


@pytest.mark.parametrize("size", ["1GB", "953.6 MiB", "512MB"])
def test_a_memory_size_is_taken_as_written(size: str) -> None:
    assert _size(size) == size


@pytest.mark.parametrize("size", ["", "1GB'; DROP TABLE records; --", "lots", "1 G B"])
def test_anything_but_a_memory_size_is_refused_before_it_reaches_sql(size: str) -> None:
    with pytest.raises(ValueError, match="not a memory size"):
        _size(size)


def test_the_memory_bound_holds_until_the_last_of_two_threads_is_done(tmp_path: Path) -> None:
    """DuckDB's limit is the database's: an ingest that ends while another is still staging leaves it bounded."""
    import threading

    store = Store(tmp_path / "two.duckdb")
    own = _memory_limit(store)
    inside, release = threading.Event(), threading.Event()

    def second() -> None:
        with store.memory_bounded("24MB"):
            inside.set()
            release.wait(10)

    with store.memory_bounded("24MB"):
        worker = threading.Thread(target=second)
        worker.start()
        assert inside.wait(10)
    assert _memory_limit(store) == "22.8 MiB", "the other thread is still inside"
    release.set()
    worker.join(10)
    assert _memory_limit(store) == own
    store.close()
