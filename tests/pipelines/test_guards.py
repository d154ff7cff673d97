"""Guards against hostile and careless input: repeated columns, ragged rows, oversized files and cells, mass removals,
QuickBooks objects deleted, voided or changed after the sync, and text longer than QuickBooks takes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures import REALM, T0, tiny_snapshot, write_snapshot

import pipelines.ingest as awra
from pipelines.ingest import SnapshotError, SnapshotLimits, ingest_snapshot
from pipelines.store import Store


def _refusal(store: Store, folder: Path, **kwargs) -> SnapshotError:
    with pytest.raises(SnapshotError) as info:
        ingest_snapshot(store, folder, realm_id=REALM, now=T0, **kwargs)
    assert "\n" not in str(info.value)
    assert store.scalar("SELECT status FROM ingest_runs ORDER BY run_id DESC LIMIT 1") == "refused"
    assert store.scalar("SELECT count(*) FROM records") == 0  # a first snapshot: nothing of it may land
    return info.value


def _where(err: SnapshotError) -> list[tuple[str, int | None, str | None]]:
    return [(p.file, p.row, p.column) for p in err.problems]


# -- repeated column names (CSV, JSONL, Parquet) --------------------------------------------------------------
def test_a_csv_header_that_names_a_column_twice_is_refused_naming_it(store: Store, snapshot_dir: Path) -> None:
    path = snapshot_dir / "vendors.csv"
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("currency", "name")  # vendor_id,name,name,...: Polars kept the first without a word
    path.write_text("\n".join(lines) + "\n")
    err = _refusal(store, snapshot_dir)
    assert _where(err) == [("vendors.csv", 1, "name")] and "more than once" in str(err)


def test_a_jsonl_object_that_repeats_a_key_is_refused_naming_the_row_and_key(store: Store, tmp_path: Path) -> None:
    folder = write_snapshot(tmp_path / "awra", tiny_snapshot(), "jsonl")
    path = folder / "vendors.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"name":"Bolt & Nut Co"', '"name":"Bolt & Nut Co","name":"Someone Else"')
    path.write_text("\n".join(lines) + "\n")
    err = _refusal(store, folder)
    assert _where(err) == [("vendors.jsonl", 2, "name")] and "more than once" in str(err)


def test_a_parquet_file_that_names_a_column_twice_is_refused_naming_it(store: Store, tmp_path: Path) -> None:
    folder = write_snapshot(tmp_path / "awra", tiny_snapshot(), "parquet")
    table = pq.read_table(folder / "customers.parquet")
    pq.write_table(table.append_column("name", table.column("name")), folder / "customers.parquet")
    err = _refusal(store, folder)
    assert _where(err) == [("customers.parquet", None, "name")]


def test_a_csv_row_with_more_fields_than_the_header_is_refused_naming_its_row(store: Store, snapshot_dir: Path) -> None:
    path = snapshot_dir / "bills.csv"
    lines = path.read_text().splitlines()
    lines[2] += ",surplus"  # the second bill: row 3, the header being row 1
    path.write_text("\n".join(lines) + "\n")
    err = _refusal(store, snapshot_dir)
    assert _where(err) == [("bills.csv", 3, None)] and "header names 12" in str(err)


# -- sizes: files, rows, columns, cells ------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_cell_longer_than_the_limit_is_refused_at_its_file_row_and_column(
    store: Store, tmp_path: Path, fmt: str
) -> None:
    limit = awra.LIMITS.max_cell_chars
    snap = tiny_snapshot()
    snap["vendors"][0]["name"] = "N" * limit  # at the limit: taken
    ingest_snapshot(Store(tmp_path / "ok.duckdb"), write_snapshot(tmp_path / "ok", snap, fmt), realm_id=REALM, now=T0)
    snap["vendors"][1]["name"] = "N" * (limit + 1)
    err = _refusal(store, write_snapshot(tmp_path / "awra", snap, fmt))
    row = 3 if fmt == "csv" else 2
    assert _where(err) == [(f"vendors.{fmt}", row, "name")]
    assert f"holds {limit + 1:,} characters" in str(err)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(
    store: Store, snapshot_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = (snapshot_dir / "bill_lines.csv").stat().st_size
    parsed: list[str] = []
    real = awra._read_csv
    monkeypatch.setattr(awra, "_read_csv", lambda path, *a: parsed.append(path.name) or real(path, *a))
    err = _refusal(store, snapshot_dir, limits=SnapshotLimits(max_file_bytes=size - 1))
    assert ("bill_lines.csv", None, None) in _where(err)
    line = next(str(p) for p in err.problems if p.file == "bill_lines.csv")
    assert line.startswith(f"bill_lines.csv: is {size:,} bytes; a snapshot file may hold at most {size - 1:,}")
    assert "bill_lines.csv" not in parsed and "vendors.csv" in parsed  # refused on its size alone, never parsed


def test_too_many_rows_or_columns_are_refused(store: Store, snapshot_dir: Path) -> None:
    err = _refusal(store, snapshot_dir, limits=SnapshotLimits(max_rows=2))
    assert ("bill_lines.csv", None, None) in _where(err) and "has 3 rows" in str(err)
    err = _refusal(store, snapshot_dir, limits=SnapshotLimits(max_columns=9))
    assert ("bill_lines.csv", 1, None) in _where(err) and ("vendors.csv", 1, None) not in _where(err)


def test_a_parquet_file_whose_text_expands_past_the_limit_is_refused_before_it_is_expanded(
    store: Store, tmp_path: Path
) -> None:
    folder = write_snapshot(tmp_path / "awra", tiny_snapshot(), "parquet")
    # 20,000 rows of one 9,000-character note: a few kilobytes compressed, 180 MB once expanded.
    base = pq.read_table(folder / "vendors.parquet").slice(0, 1)
    rows = pa.concat_tables([base] * 20_000).append_column("note", pa.array(["x" * 9_000] * 20_000))
    rows = rows.set_column(0, "vendor_id", pa.array([f"V-{i}" for i in range(20_000)]))
    pq.write_table(rows, folder / "vendors.parquet", compression="zstd")
    assert (folder / "vendors.parquet").stat().st_size < 1_000_000
    err = _refusal(store, folder, limits=SnapshotLimits(max_file_bytes=50_000_000))
    assert _where(err) == [("vendors.parquet", None, None)] and "expands to" in str(err)


# -- mass removals -----------------------------------------------------------------------------------------------
def _header_only(folder: Path, fmt: str = "csv") -> Path:
    """Every table cut to its header: the export that once emptied the store."""
    return write_snapshot(folder, {}, fmt)


def _checked_tiny(store: Store, tmp_path: Path) -> None:
    """The tiny company ingested and checked, so its records have open exceptions (no QuickBooks mirror yet)."""
    from pipelines.exceptions import refresh_exceptions
    from pipelines.readiness import run_check

    ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
    run_check(store, REALM, now=T0)
    refresh_exceptions(store, REALM, now=T0)
    assert store.scalar("SELECT count(*) FROM exceptions WHERE status = 'open'") > 10


def _state(store: Store) -> dict[str, pl.DataFrame]:
    """Every table a refusal must leave alone (the ingest history aside), sorted."""
    names = [
        r[0]
        for r in store.rows("SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY 1")
        if r[0] not in ("ingest_runs", "ingest_files")
    ]
    return {n: store.frame(f"SELECT * FROM {n} ORDER BY ALL") for n in names}


def test_a_header_only_snapshot_is_refused_naming_each_table_and_nothing_but_the_history_changes(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main
    from pipelines.ingest import MASS_REMOVAL, MassRemovalError

    _checked_tiny(store, tmp_path)
    before = _state(store)
    with pytest.raises(MassRemovalError) as info:
        ingest_snapshot(store, _header_only(tmp_path / "empty"), realm_id=REALM, now=T0)
    text = str(info.value)
    assert text.startswith(MASS_REMOVAL) and "\n" not in text
    for file, live in (("vendors.csv", 2), ("bills.csv", 2), ("bill_lines.csv", 3), ("journal_entries.csv", 1)):
        noun = "lines" if "lines" in file else "live records"
        assert f"{file} would remove {live} of {live} {noun} (100%, the file is empty)" in text, text
    assert '--allow-removal "reason"' in text
    after = _state(store)
    assert all(before[n].equals(after[n]) for n in before), [n for n in before if not before[n].equals(after[n])]
    run = store.rows("SELECT status, error, removed_records FROM ingest_runs ORDER BY run_id DESC LIMIT 1")[0]
    assert run[0] == "refused" and run[1] == text and run[2] == 0
    # the command line answers exit 2 with the same one line, and applies nothing
    store.close()
    capsys.readouterr()
    assert main(["--actor", "admin@demo.local", "--db", str(tmp_path / "store.duckdb"), "ingest",
                 str(tmp_path / "empty")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and MASS_REMOVAL in err and "--allow-removal" in err


def _vendors(n: int) -> list[dict]:
    template = tiny_snapshot()["vendors"][0]
    return [{**template, "vendor_id": f"VEN-{i:03d}", "name": f"Vendor {i}"} for i in range(n)]


@pytest.mark.parametrize(
    ("live", "removed", "refused"),
    [
        (3, 1, False),  # a third of a small table: under the floor of 5
        (4, 3, False),  # three of four: still under the floor
        (10, 2, False),  # 20%: at the share, not past it
        (10, 4, False),  # 40%, but only 4
        (25, 5, False),  # 20% of 25
        (25, 6, True),  # 24% and 6: past both
        (10, 5, True),  # half of the table
        (2, 2, True),  # the table would be empty: always refused
    ],
)
def test_removals_past_the_share_and_the_floor_are_refused_and_others_applied(
    store: Store, tmp_path: Path, live: int, removed: int, refused: bool
) -> None:
    snap = tiny_snapshot()
    snap["vendors"] = _vendors(live)
    for bill in snap["bills"] + snap["purchase_orders"]:
        bill["vendor_id"] = "VEN-000"
    snap["bill_payments"][0]["vendor_id"] = "VEN-000"
    ingest_snapshot(store, write_snapshot(tmp_path / "v1", snap), realm_id=REALM, now=T0)
    snap["vendors"] = snap["vendors"][: live - removed]
    folder = write_snapshot(tmp_path / "v2", snap)
    if refused:
        with pytest.raises(awra.MassRemovalError, match=rf"vendors.csv would remove {removed} of {live} live"):
            ingest_snapshot(store, folder, realm_id=REALM, now=T0)
        assert store.scalar("SELECT count(*) FROM records WHERE removed_at IS NOT NULL") == 0
    else:
        assert ingest_snapshot(store, folder, realm_id=REALM, now=T0).removed == removed


def test_a_record_whose_id_changed_is_not_a_mass_removal(store: Store, tmp_path: Path) -> None:
    ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
    snap = tiny_snapshot()
    snap["journal_entries"][0]["je_id"] = "JE-2"  # the only journal entry, renumbered: 1 of 1 leaves, 1 arrives
    for line in snap["journal_lines"]:
        line["je_id"] = "JE-2"
    result = ingest_snapshot(store, write_snapshot(tmp_path / "v2", snap), realm_id=REALM, now=T0)
    assert (result.removed, result.new) == (1, 1)


def test_a_lines_file_that_arrives_empty_is_a_mass_removal(store: Store, tmp_path: Path) -> None:
    ingest_snapshot(store, write_snapshot(tmp_path / "v1", tiny_snapshot()), realm_id=REALM, now=T0)
    snap = tiny_snapshot()
    snap["bill_lines"] = []
    with pytest.raises(awra.MassRemovalError, match=r"bill_lines.csv would remove 3 of 3 lines \(100%, the file"):
        ingest_snapshot(store, write_snapshot(tmp_path / "v2", snap), realm_id=REALM, now=T0)


def test_a_mass_removal_with_a_reason_is_applied_audited_and_its_exceptions_close_as_left_awra(
    store: Store, tmp_path: Path
) -> None:
    from pipelines.exceptions import refresh_exceptions

    _checked_tiny(store, tmp_path)
    opened = store.scalar("SELECT count(*) FROM exceptions WHERE status = 'open'")
    with pytest.raises(awra.MassRemovalError, match="not blank text"):  # a blank reason is no reason
        ingest_snapshot(store, _header_only(tmp_path / "empty"), realm_id=REALM, now=T0, allow_removal="  ")
    result = ingest_snapshot(
        store, _header_only(tmp_path / "empty"), realm_id=REALM, now=T0, allow_removal="AWRA moved to a new ledger",
        actor="admin@demo.local", actor_role="admin",
    )  # fmt: skip
    assert (result.status, result.removed) == ("applied", 15)
    audit = store.rows("SELECT actor, role, action, reason, after_json FROM audit_log WHERE action = 'allow_removal'")
    assert audit[0][:4] == ("admin@demo.local", "admin", "allow_removal", "AWRA moved to a new ledger")
    assert json.loads(audit[0][4])["vendors"] == {"removed": 2}
    refresh_exceptions(store, REALM, now=T0)
    closed = store.rows("SELECT DISTINCT resolution_code, resolution FROM exceptions WHERE status = 'resolved'")
    assert closed == [("left_awra", "auto: the record left AWRA (it is no longer in the AWRA snapshot)")]
    assert store.scalar("SELECT count(*) FROM exceptions WHERE status = 'resolved'") == opened
    assert not store.rows("SELECT 1 FROM audit_log WHERE reason LIKE '%corrected%'")


def test_one_record_that_left_awra_is_resolved_as_left_not_corrected(store: Store, tmp_path: Path) -> None:
    from pipelines.exceptions import refresh_exceptions

    _checked_tiny(store, tmp_path)
    snap = tiny_snapshot()
    snap["bills"] = snap["bills"][:1]  # BILL-2 (pending, unposted: it has open exceptions) leaves AWRA
    snap["bill_lines"] = [line for line in snap["bill_lines"] if line["bill_id"] == "BILL-1"]
    assert ingest_snapshot(store, write_snapshot(tmp_path / "v2", snap), realm_id=REALM, now=T0).removed == 1
    refresh_exceptions(store, REALM, now=T0)
    gone = store.rows("SELECT DISTINCT resolution FROM exceptions WHERE record_id = 'BILL-2'")
    assert gone == [("auto: the record left AWRA (it is no longer in the AWRA snapshot)",)]


def test_a_refused_mass_removal_holds_one_owned_exception_until_a_snapshot_lands(store: Store, tmp_path: Path) -> None:
    from pipelines.exceptions import refresh_exceptions

    _checked_tiny(store, tmp_path)
    for _ in range(2):  # the scheduler tries the same folder again: one exception, seen twice
        with pytest.raises(awra.MassRemovalError):
            ingest_snapshot(store, _header_only(tmp_path / "empty"), realm_id=REALM, now=T0)
        refresh_exceptions(store, REALM, now=T0)
    row = store.rows(
        "SELECT entity, record_id, dimension, reason, owner_role, occurrences, detail FROM exceptions "
        "WHERE reason = 'source_data.mass_removal' AND status = 'open'"
    )
    assert [r[:6] for r in row] == [("snapshot", REALM, "source_data", "source_data.mass_removal", "admin", 2)]
    assert row[0][6].startswith(awra.MASS_REMOVAL)
    # a refusal for bad input since does not end it: the feed is still stopped
    bad = write_snapshot(tmp_path / "bad", tiny_snapshot())
    (bad / "bills.csv").write_text((bad / "bills.csv").read_text().replace("30.50", "3.005"))
    with pytest.raises(SnapshotError):
        ingest_snapshot(store, bad, realm_id=REALM, now=T0)
    refresh_exceptions(store, REALM, now=T0)
    assert store.scalar("SELECT status FROM exceptions WHERE reason = 'source_data.mass_removal'") == "open"
    # a snapshot that lands (here the same company again, unchanged) ends it
    ingest_snapshot(store, write_snapshot(tmp_path / "v3", tiny_snapshot()), realm_id=REALM, now=T0)
    refresh_exceptions(store, REALM, now=T0)
    assert store.rows("SELECT status, resolution FROM exceptions WHERE reason = 'source_data.mass_removal'") == [
        ("resolved", "auto: a later AWRA snapshot was applied")
    ]


# -- QuickBooks objects deleted, voided or changed after the sync ------------------------------------------------
@pytest.fixture
def synced(tmp_path: Path):
    """The tiny company synced whole into the sandbox, the clocks then moved on an hour."""
    from datetime import timedelta

    from world import World

    w = World(tmp_path)
    w.cycle()
    assert w.store.scalar("SELECT count(*) FROM records WHERE state = 'synced' AND entity <> 'item'") == 12
    w.now += timedelta(hours=1)
    w.sandbox.clock.advance(3600)
    yield w
    w.store.close()


def _qbo_id(w, key: str) -> str:
    entity, record_id = key.split(":")
    return w.store.scalar("SELECT qbo_id FROM external_refs WHERE entity = ? AND record_id = ?", [entity, record_id])


def _open(w, key: str) -> list[tuple]:
    entity, record_id = key.split(":")
    return w.store.rows(
        "SELECT dimension, reason, owner_role, detail FROM exceptions WHERE entity = ? AND record_id = ? "
        "AND status <> 'resolved' ORDER BY reason",
        [entity, record_id],
    )


def test_a_synced_record_is_not_flagged_when_only_a_payment_moved_its_sync_token(synced) -> None:
    # BP-1 paid BILL-1 and PAY-1 paid INV-1: QuickBooks moved both documents' SyncTokens, their totals stand.
    synced.cycle()
    tokens = synced.store.rows(
        "SELECT x.sync_token, o.sync_token FROM external_refs x JOIN qbo_objects o ON o.entity = x.qbo_entity "
        "AND o.qbo_id = x.qbo_id WHERE x.record_id IN ('BILL-1', 'INV-1')"
    )
    assert all(ours != theirs for ours, theirs in tokens)
    assert synced.store.scalar("SELECT count(*) FROM findings WHERE check_name = 'in_quickbooks'") == 0
    assert synced.state("bill:BILL-1") == synced.state("invoice:INV-1") == "synced"


def test_a_synced_bill_deleted_in_quickbooks_gets_an_owned_exception_and_is_never_held_silently(
    synced, tmp_path: Path
) -> None:
    synced.sandbox.user_delete(REALM, "Bill", _qbo_id(synced, "bill:BILL-1"))
    synced.cycle()  # the pull sees it gone; the check flags the record
    assert synced.state("bill:BILL-1") == "blocked"
    (exc,) = _open(synced, "bill:BILL-1")
    assert exc[:3] == ("provider_rejection", "provider_rejection.deleted_in_qbo", "finance")
    assert f"QuickBooks bill Id {_qbo_id(synced, 'bill:BILL-1')} was deleted there" in exc[3]
    # AWRA changes the bill afterwards: it is not made ready, so no sync holds it without a word
    snap = tiny_snapshot()
    snap["bills"][0]["owner"] = "someone@else.example"
    ingest_snapshot(synced.store, write_snapshot(tmp_path / "v2", snap), realm_id=REALM, now=synced.now)
    result = synced.cycle()
    assert synced.state("bill:BILL-1") == "blocked" and result.sync.held == 0
    assert [e[1] for e in _open(synced, "bill:BILL-1")] == ["provider_rejection.deleted_in_qbo"]
    # excluding it (the deletion was meant) closes the exception, and it stays closed
    from world import FINANCE

    excluded = synced.commands.exclude(
        synced.caller(FINANCE), ["bill:BILL-1"], reason="deleted on purpose in QuickBooks"
    )
    assert excluded.ok, excluded.message
    synced.cycle()
    assert synced.state("bill:BILL-1") == "excluded" and _open(synced, "bill:BILL-1") == []


def test_a_payment_of_a_deleted_invoice_waits_with_an_exception_instead_of_being_held(synced, tmp_path: Path) -> None:
    synced.sandbox.user_delete(REALM, "Invoice", _qbo_id(synced, "invoice:INV-1"))
    snap = tiny_snapshot()
    snap["payments"].append({**snap["payments"][0], "payment_id": "PAY-2", "payment_number": "P-2"})
    ingest_snapshot(synced.store, write_snapshot(tmp_path / "v2", snap), realm_id=REALM, now=synced.now)
    result = synced.cycle()
    assert result.sync.held == 0 and synced.state("payment:PAY-2") == "not_ready"
    assert [e[1] for e in _open(synced, "payment:PAY-2")] == ["source_data.dependency_not_ready"]
    assert "invoice INV-1 is not ready" in _open(synced, "payment:PAY-2")[0][3]


def test_a_synced_invoice_voided_in_quickbooks_gets_an_owned_exception(synced) -> None:
    from qbo.batch import BatchItem

    qbo_id = _qbo_id(synced, "invoice:INV-1")
    token = next(o["SyncToken"] for o in synced.sandbox.entities(REALM, "Invoice") if o["Id"] == qbo_id)
    with synced.client() as client:  # as a QuickBooks user voiding it would
        done = client.batch([BatchItem("v1", "update", "Invoice", {"Id": qbo_id, "SyncToken": token}, None, "void")],
                            request_id="void-inv-1")  # fmt: skip
    assert done["v1"].ok
    synced.cycle()
    assert synced.state("invoice:INV-1") == "blocked"
    (exc,) = _open(synced, "invoice:INV-1")
    assert exc[1] == "provider_rejection.voided_in_qbo" and "AWRA still has 150.00 on it, posted" in exc[3]


def test_a_total_changed_in_quickbooks_gets_an_owned_exception_that_closes_once_they_agree(synced) -> None:
    qbo_id = _qbo_id(synced, "payment:PAY-1")
    synced.sandbox.user_patch(REALM, "Payment", qbo_id, {"TotalAmt": 140.0})
    synced.cycle()
    assert synced.state("payment:PAY-1") == "blocked"
    (exc,) = _open(synced, "payment:PAY-1")
    assert exc[:3] == ("provider_rejection", "provider_rejection.changed_in_qbo", "finance")
    assert exc[3] == f"QuickBooks payment Id {qbo_id} now totals 140.00; the AWRA version it was synced from (v1) " \
                     "totals 150.00"  # fmt: skip
    synced.sandbox.user_patch(REALM, "Payment", qbo_id, {"TotalAmt": 150.0})  # put right in QuickBooks
    synced.cycle()
    assert synced.state("payment:PAY-1") == "synced" and _open(synced, "payment:PAY-1") == []
    resolution = synced.store.scalar("SELECT resolution FROM exceptions WHERE record_id = 'PAY-1'")
    assert resolution == "auto: the record synced"


def test_every_qbo_drift_reason_has_its_catalogue_words() -> None:
    from pipelines.catalogue import catalogue
    from pipelines.readiness import DRIFT_REASONS

    rows = catalogue().filter(pl.col("reason").is_in([*DRIFT_REASONS, "source_data.mass_removal"]))
    assert rows.height == 4
    for row in rows.iter_rows(named=True):
        assert row["explanation"] and row["fix"] and row["owner_role"] in ("finance", "admin")


# -- text longer than QuickBooks takes ---------------------------------------------------------------------------
def _long_texts(snap: dict, extra: int) -> None:
    """Each text the sync sends in a limited QuickBooks field, at its limit plus `extra` characters."""
    snap["vendors"][0]["name"] = "V" * (500 + extra)  # DisplayName
    snap["bills"][0]["bill_number"] = "B" * (21 + extra)  # DocNumber
    snap["journal_entries"][0]["je_number"] = "J" * (21 + extra)  # DocNumber
    snap["payments"][0]["payment_number"] = "P" * (21 + extra)  # PaymentRefNum
    snap["invoice_lines"][0]["description"] = "D" * (4000 + extra)  # Line.Description


@pytest.mark.parametrize("extra", [0, 1])
def test_text_longer_than_quickbooks_takes_is_found_at_readiness_before_any_send(
    store: Store, tmp_path: Path, extra: int
) -> None:
    from fixtures import load_company, tiny_company

    from pipelines.exceptions import refresh_exceptions
    from pipelines.readiness import run_check

    snap = tiny_snapshot()
    _long_texts(snap, extra)
    ingest_snapshot(store, write_snapshot(tmp_path / "awra", snap), realm_id=REALM, now=T0)
    load_company(store, tiny_company())
    run_check(store, REALM, now=T0)
    refresh_exceptions(store, REALM, now=T0)
    found = dict(
        store.rows("SELECT entity || ':' || record_id, detail FROM findings WHERE reason = 'source_data.text_too_long'")
    )
    if not extra:
        assert found == {}
        return
    assert found == {
        "vendor:VEN-1": "the name has 501 characters; QuickBooks takes at most 500 in DisplayName",
        "bill:BILL-1": "the bill number has 22 characters; QuickBooks takes at most 21 in DocNumber",
        "journal_entry:JE-1": "the journal entry number has 22 characters; QuickBooks takes at most 21 in DocNumber",
        "payment:PAY-1": "the payment number has 22 characters; QuickBooks takes at most 21 in PaymentRefNum",
        "invoice:INV-1": "line 1: the description has 4001 characters; QuickBooks takes at most 4000 in Description",
    }
    states = dict(store.rows("SELECT record_id, state FROM records WHERE record_id IN ('VEN-1', 'BILL-1', 'INV-1')"))
    assert set(states.values()) == {"not_ready"}  # nothing of them is sent
    owners = store.rows("SELECT DISTINCT owner_role FROM exceptions WHERE reason = 'source_data.text_too_long'")
    assert owners == [("finance",)]
