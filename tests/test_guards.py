"""Guards against hostile and careless input: repeated columns, ragged rows, oversized files and cells, mass removals,
QuickBooks objects deleted, voided or changed after the sync, and text longer than QuickBooks takes."""

from __future__ import annotations

import io
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


def test_a_csv_row_with_more_fields_than_the_header_is_refused_naming_its_row(
    store: Store, snapshot_dir: Path
) -> None:
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
